#include "cnnviz/image.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "test_util.h"

namespace cnnviz {
namespace {

class ImageTest : public ::testing::Test {
 protected:
  test::TempDir dir_;
};

TEST_F(ImageTest, ConvertsBgrToRgb) {
  cv::Mat bgr(4, 6, CV_8UC3, cv::Scalar(10, 20, 30));  // B=10 G=20 R=30
  ASSERT_TRUE(cv::imwrite(dir_.file("c.png"), bgr));
  cv::Mat rgb = read_image_rgb(dir_.file("c.png"));
  ASSERT_EQ(rgb.type(), CV_8UC3);
  EXPECT_EQ(rgb.rows, 4);
  EXPECT_EQ(rgb.cols, 6);
  EXPECT_EQ(rgb.at<cv::Vec3b>(2, 3), cv::Vec3b(30, 20, 10));
}

TEST_F(ImageTest, ReplicatesGrayscale) {
  cv::Mat gray(3, 3, CV_8UC1, cv::Scalar(77));
  ASSERT_TRUE(cv::imwrite(dir_.file("g.png"), gray));
  cv::Mat rgb = read_image_rgb(dir_.file("g.png"));
  EXPECT_EQ(rgb.at<cv::Vec3b>(1, 1), cv::Vec3b(77, 77, 77));
}

TEST_F(ImageTest, DropsAlphaWithoutCompositing) {
  cv::Mat bgra(2, 2, CV_8UC4, cv::Scalar(1, 2, 3, 0));  // fully transparent
  ASSERT_TRUE(cv::imwrite(dir_.file("a.png"), bgra));
  cv::Mat rgb = read_image_rgb(dir_.file("a.png"));
  EXPECT_EQ(rgb.at<cv::Vec3b>(0, 0), cv::Vec3b(3, 2, 1));
}

TEST_F(ImageTest, ScalesSixteenBitSamples) {
  cv::Mat deep(2, 2, CV_16UC3, cv::Scalar(0, 257 * 100, 65535));
  ASSERT_TRUE(cv::imwrite(dir_.file("d.png"), deep));
  cv::Mat rgb = read_image_rgb(dir_.file("d.png"));
  EXPECT_EQ(rgb.at<cv::Vec3b>(0, 0), cv::Vec3b(255, 100, 0));
}

TEST_F(ImageTest, ReadsJpeg) {
  cv::Mat bgr(16, 16, CV_8UC3, cv::Scalar(200, 100, 50));
  ASSERT_TRUE(cv::imwrite(dir_.file("p.jpg"), bgr));
  cv::Mat rgb = read_image_rgb(dir_.file("p.jpg"));
  cv::Vec3b px = rgb.at<cv::Vec3b>(8, 8);
  EXPECT_NEAR(px[0], 50, 3);
  EXPECT_NEAR(px[2], 200, 3);
}

TEST_F(ImageTest, RejectsTruncatedJpeg) {
  cv::Mat noise(64, 64, CV_8UC3);
  cv::randu(noise, 0, 255);
  ASSERT_TRUE(cv::imwrite(dir_.file("full.jpg"), noise));
  std::string bytes = test::read_text(dir_.file("full.jpg"));
  test::write_text(dir_.file("cut.jpg"), bytes.substr(0, bytes.size() / 2));
  test::expect_error([&] { read_image_rgb(dir_.file("cut.jpg")); }, ErrorCode::kInput,
                     "image '" + dir_.file("cut.jpg") + "': truncated JPEG");
}

TEST_F(ImageTest, RejectsTruncatedPng) {
  cv::Mat noise(64, 64, CV_8UC3);
  cv::randu(noise, 0, 255);
  ASSERT_TRUE(cv::imwrite(dir_.file("full.png"), noise));
  std::string bytes = test::read_text(dir_.file("full.png"));
  test::write_text(dir_.file("cut.png"), bytes.substr(0, bytes.size() / 2));
  test::expect_error([&] { read_image_rgb(dir_.file("cut.png")); }, ErrorCode::kInput,
                     "corrupt or truncated");
}

TEST_F(ImageTest, RejectsFilesThatAreNoImages) {
  test::write_text(dir_.file("empty.png"), "");
  test::expect_error([&] { read_image_rgb(dir_.file("empty.png")); }, ErrorCode::kInput,
                     "empty file");
  test::write_text(dir_.file("text.png"), "hello, I am not a picture\n");
  test::expect_error([&] { read_image_rgb(dir_.file("text.png")); }, ErrorCode::kInput,
                     "not an image");
  test::expect_error([&] { read_image_rgb(dir_.file("missing.jpg")); }, ErrorCode::kInput,
                     "image '" + dir_.file("missing.jpg") + "': not found");
  test::expect_error([&] { read_image_rgb(dir_.path()); }, ErrorCode::kInput, "is a directory");
}

TEST_F(ImageTest, RejectsUnreadableFile) {
  if (geteuid() == 0) GTEST_SKIP() << "running as root: file permissions do not apply";
  cv::Mat px(2, 2, CV_8UC3, cv::Scalar(1, 2, 3));
  ASSERT_TRUE(cv::imwrite(dir_.file("locked.png"), px));
  std::filesystem::permissions(dir_.file("locked.png"), std::filesystem::perms::none);
  test::expect_error([&] { read_image_rgb(dir_.file("locked.png")); }, ErrorCode::kInput,
                     "Permission denied");
}

}  // namespace
}  // namespace cnnviz
