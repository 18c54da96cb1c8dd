// Tests with the real ImageNet weights of squeezenet1_1 from shared/models
// (exported by the ctest fixture fixture.export_pretrained). They skip, saying
// why, when shared/ is absent.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cnnviz/image.h"
#include "cnnviz/model.h"
#include "cnnviz/predict.h"
#include "cnnviz/preprocess.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

class PretrainedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shared_ = test::shared_dir();
    if (shared_.empty()) GTEST_SKIP() << "shared/ not found beside the repository: skipped";
    model_path_ = test::test_models_dir() + "/pretrained/squeezenet1_1.pt";
    ASSERT_TRUE(fs::exists(model_path_))
        << model_path_ << " missing although shared/ exists: run through ctest";
  }

  std::vector<Prediction> classify(const Model& model, const std::string& image, int k) {
    at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
    return top_k(model.logits(x), k)[0];
  }

  std::string shared_, model_path_;
};

TEST_F(PretrainedTest, SnakeIsAKingSnake) {
  Model model = Model::load(model_path_);
  EXPECT_EQ(model.info().weights_kind, WeightsKind::kFile);
  std::vector<Prediction> top = classify(model, shared_ + "/images/snake.png", 1);
  EXPECT_EQ(top[0].index, 56);
  EXPECT_EQ(model.info().label(top[0].index), "king snake");
  EXPECT_GT(top[0].probability, 0.5);
}

// Top-5 classes identical and probabilities within 0.01 of torchvision's on
// every shared image.
TEST_F(PretrainedTest, TopFiveMatchesTorchvision) {
  std::vector<std::string> images;
  for (const auto& e : fs::directory_iterator(shared_ + "/images")) images.push_back(e.path());
  std::sort(images.begin(), images.end());
  std::vector<std::string> argv = {test::python(),
                                   test::source_dir() + "/tests/reference/classify_ref.py",
                                   model_path_, "-k", "5"};
  argv.insert(argv.end(), images.begin(), images.end());
  test::RunResult r = test::run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json ref = nlohmann::json::parse(r.out);
  ASSERT_EQ(ref["results"].size(), images.size());

  Model model = Model::load(model_path_);
  for (size_t i = 0; i < images.size(); ++i) {
    SCOPED_TRACE(images[i]);
    std::vector<Prediction> got = classify(model, images[i], 5);
    const nlohmann::json& want = ref["results"][i]["predictions"];
    ASSERT_EQ(want.size(), 5u);
    for (size_t k = 0; k < 5; ++k) {
      EXPECT_EQ(got[k].index, want[k]["index"].get<int64_t>()) << "rank " << k + 1;
      EXPECT_NEAR(got[k].probability, want[k]["probability"].get<double>(), 0.01);
    }
  }
}

}  // namespace
}  // namespace cnnviz
