#include "cnnviz/core/predict.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "test_util.h"

namespace cnnviz {
namespace {

TEST(PredictTest, RanksBySoftmaxProbability) {
  at::Tensor logits = at::tensor({1.0f, 3.0f, 2.0f, 0.0f, 3.0f, 2.0f}).view({2, 3});
  auto top = top_k(logits, 3);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0][0].index, 1);
  EXPECT_EQ(top[0][1].index, 2);
  EXPECT_EQ(top[0][2].index, 0);
  const double z = std::exp(1.0) + std::exp(3.0) + std::exp(2.0);
  EXPECT_NEAR(top[0][0].probability, std::exp(3.0) / z, 1e-12);
  double sum = 0;
  for (const auto& p : top[0]) sum += p.probability;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_EQ(top[1][0].index, 1);
}

TEST(PredictTest, TiesKeepTheLowerIndexFirst) {
  auto top = top_k(at::zeros({1, 5}), 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(top[0][i].index, i);
}

TEST(PredictTest, RejectsKOutsideTheClassCount) {
  at::Tensor logits = at::zeros({1, 10});
  test::expect_error([&] { top_k(logits, 0); }, ErrorCode::kUsage, "-k 0");
  test::expect_error([&] { top_k(logits, 11); }, ErrorCode::kUsage, "between 1 and 10");
  EXPECT_EQ(top_k(logits, 10)[0].size(), 10u);
}

}  // namespace
}  // namespace cnnviz
