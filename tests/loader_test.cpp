#include "run/loader.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "test_util.h"

namespace cnnviz {
namespace {

class LoaderTest : public ::testing::Test {
 protected:
  // Images whose single colour encodes their position, with every third one
  // unreadable.
  void SetUp() override {
    for (int i = 0; i < 23; ++i) {
      std::string path = dir_.file("img" + std::to_string(i) + ".png");
      if (i % 3 == 2) {
        test::write_text(path, "broken");
      } else {
        ASSERT_TRUE(cv::imwrite(path, cv::Mat(40 + i, 50, CV_8UC3, cv::Scalar(0, 0, 10 * i))));
      }
      paths_.push_back(path);
    }
  }

  test::TempDir dir_;
  std::vector<std::string> paths_;
};

TEST_F(LoaderTest, DeliversEveryImageInOrderWithErrorsInPlace) {
  for (int workers : {1, 3}) {
    for (size_t batch_size : {1u, 4u, 32u}) {
      SCOPED_TRACE("workers " + std::to_string(workers) + " batch " + std::to_string(batch_size));
      LoaderOptions options;
      options.batch_size = batch_size;
      options.workers = workers;
      BatchLoader loader(paths_, Preprocessing(), options);
      size_t seen = 0;
      for (auto batch = loader.next(); !batch.empty(); batch = loader.next()) {
        EXPECT_LE(batch.size(), batch_size);
        for (const LoadedImage& img : batch) {
          ASSERT_EQ(img.index, seen);
          EXPECT_EQ(img.path, paths_[seen]);
          if (seen % 3 == 2) {
            ASSERT_TRUE(img.error.has_value());
            EXPECT_EQ(img.error->code(), ErrorCode::kInput);
            EXPECT_FALSE(img.input.defined());
          } else {
            ASSERT_FALSE(img.error.has_value()) << img.error->what();
            ASSERT_EQ(img.input.sizes(), at::IntArrayRef({3, 224, 224}));
            const float red = (10.0f * seen / 255.0f - 0.485f) / 0.229f;
            EXPECT_NEAR(img.input[0][0][0].item<float>(), red, 1e-5);
            EXPECT_EQ(img.box.src_h, 40 + static_cast<int>(seen));
          }
          ++seen;
        }
      }
      EXPECT_EQ(seen, paths_.size());
      EXPECT_TRUE(loader.next().empty());
    }
  }
}

TEST_F(LoaderTest, KeepsTheDecodedImageOnRequest) {
  LoaderOptions options;
  options.keep_rgb = true;
  BatchLoader loader({paths_[1]}, Preprocessing(), options);
  auto batch = loader.next();
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].rgb.rows, 41);
  EXPECT_EQ(batch[0].rgb.at<cv::Vec3b>(0, 0), cv::Vec3b(10, 0, 0));
}

TEST_F(LoaderTest, StoppingEarlyJoinsCleanly) {
  LoaderOptions options;
  options.batch_size = 2;
  BatchLoader loader(paths_, Preprocessing(), options);
  EXPECT_EQ(loader.next().size(), 2u);
  // The destructor runs with workers waiting on the prefetch window.
}

TEST(LoaderEmptyTest, NoPathsMeansNoBatches) {
  BatchLoader loader({}, Preprocessing(), LoaderOptions());
  EXPECT_TRUE(loader.next().empty());
}

}  // namespace
}  // namespace cnnviz
