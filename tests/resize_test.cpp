#include "cnnviz/io/resize.h"

#include <gtest/gtest.h>

#include <opencv2/core.hpp>

#include "test_util.h"

namespace cnnviz {
namespace {

cv::Mat noise(int rows, int cols, int type) {
  cv::Mat m(rows, cols, type);
  cv::randu(m, 0, 256);
  return m;
}

bool same(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

TEST(ResizeTest, ConstantImagesStayConstant) {
  cv::Mat flat(97, 131, CV_8UC3, cv::Scalar(3, 128, 255));
  cv::Mat small = resize_bilinear_pil(flat, 40, 23);
  EXPECT_TRUE(same(small, cv::Mat(23, 40, CV_8UC3, cv::Scalar(3, 128, 255))));
  cv::Mat big = resize_bilinear_pil(flat, 300, 200);
  EXPECT_TRUE(same(big, cv::Mat(200, 300, CV_8UC3, cv::Scalar(3, 128, 255))));
}

TEST(ResizeTest, SameSizeIsACopy) {
  cv::Mat m = noise(20, 30, CV_8UC3);
  EXPECT_TRUE(same(resize_bilinear_pil(m, 30, 20), m));
}

TEST(ResizeTest, RegionOfInterestEqualsCropOfTheFullResult) {
  cv::Mat m = noise(301, 517, CV_8UC3);
  cv::Mat full = resize_bilinear_pil(m, 384, 224);
  cv::Rect roi(80, 0, 224, 224);
  EXPECT_TRUE(same(resize_bilinear_pil(m, 384, 224, roi), full(roi)));
  cv::Mat tall = resize_bilinear_pil(m.t(), 224, 384);
  cv::Rect mid(0, 80, 224, 224);
  EXPECT_TRUE(same(resize_bilinear_pil(m.t(), 224, 384, mid), tall(mid)));
}

TEST(ResizeTest, HalvingAveragesNeighbourhoods) {
  // Downscaling by 2 widens the triangle to 4 taps, weights 1,3,3,1 / 8 over
  // input pixels 2x-1 .. 2x+2. On the ramp v = 8i the interior outputs are
  // (8(2x-1) + 3*8(2x) + 3*8(2x+1) + 8(2x+2)) / 8 = 16x + 4.
  cv::Mat ramp(1, 8, CV_8UC1);
  for (int x = 0; x < 8; ++x) ramp.at<uint8_t>(0, x) = static_cast<uint8_t>(8 * x);
  cv::Mat half = resize_bilinear_pil(ramp, 4, 1);
  EXPECT_EQ(half.at<uint8_t>(0, 1), 20);
  EXPECT_EQ(half.at<uint8_t>(0, 2), 36);
}

TEST(ResizeTest, RejectsBadArguments) {
  test::expect_error([] { resize_bilinear_pil(cv::Mat(), 4, 4); }, ErrorCode::kRuntime, "resize");
  cv::Mat m = noise(10, 10, CV_8UC1);
  test::expect_error([&] { resize_bilinear_pil(m, 5, 5, cv::Rect(3, 3, 5, 5)); },
                     ErrorCode::kRuntime, "outside");
}

}  // namespace
}  // namespace cnnviz
