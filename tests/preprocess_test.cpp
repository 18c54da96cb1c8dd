#include "cnnviz/io/preprocess.h"

#include "cnnviz/io/resize.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <opencv2/core.hpp>

#include "test_util.h"

namespace cnnviz {
namespace {

TEST(PreprocessTest, CropBoxFollowsTorchvision) {
  Preprocessing p;  // resize 224, crop 224
  CropBox cat = crop_box(1280, 853, p);
  EXPECT_EQ(cat.resized_w, 336);  // int(224 * 1280 / 853) = int(336.1)
  EXPECT_EQ(cat.resized_h, 224);
  EXPECT_EQ(cat.left, 56);
  EXPECT_EQ(cat.top, 0);
  CropBox tall = crop_box(300, 451, p);
  EXPECT_EQ(tall.resized_w, 224);
  EXPECT_EQ(tall.resized_h, 336);  // int(336.75): truncated, not rounded
  EXPECT_EQ(tall.top, 56);
  EXPECT_EQ(tall.width, 224);
  EXPECT_EQ(tall.height, 224);
}

TEST(PreprocessTest, WithoutACropTheInputIsTheWholeResizedImage) {
  Preprocessing p;
  p.crop = 0;
  const CropBox tall = crop_box(300, 451, p);
  EXPECT_EQ(tall.left, 0);
  EXPECT_EQ(tall.top, 0);
  EXPECT_EQ(tall.width, 224);
  EXPECT_EQ(tall.height, 336);
  cv::Mat rgb(451, 300, CV_8UC3);
  cv::randu(rgb, 0, 255);
  const at::Tensor x = preprocess(rgb, p);
  ASSERT_EQ(x.sizes(), (at::IntArrayRef{3, 336, 224}));
  // Pixel (y, x) of channel 1 is the full resize's, normalized.
  const cv::Mat full = resize_bilinear_pil(rgb, 224, 336);
  for (const auto& [y, xx] : {std::pair{0, 0}, {335, 223}, {170, 99}}) {
    const float want = (full.at<cv::Vec3b>(y, xx)[1] / 255.0f - p.mean[1]) / p.std[1];
    EXPECT_FLOAT_EQ(x[1][y][xx].item<float>(), want) << y << "," << xx;
  }
  EXPECT_EQ(p.square_side(), 224);
}

// A torchvision detector's resize: min(800 / shorter, 1333 / longer), each
// side floored; the sizes torchvision 0.14's
// GeneralizedRCNNTransform gives (853 x 1280 becomes 799 high, not 800).
TEST(PreprocessTest, DetectorResizeFollowsTorchvision) {
  Preprocessing p;
  p.resize = 800;
  p.crop = 0;
  p.max_size = 1333;
  const int cases[][4] = {{640, 480, 1066, 800}, {150, 100, 1200, 800},
                          {1280, 853, 1200, 799}, {2000, 300, 1333, 199}};
  for (const auto& c : cases) {
    const CropBox box = crop_box(c[0], c[1], p);
    EXPECT_EQ(box.width, c[2]) << c[0] << "x" << c[1];
    EXPECT_EQ(box.height, c[3]) << c[0] << "x" << c[1];
    EXPECT_EQ(box.resized_w, box.width);
    EXPECT_EQ(box.left, 0);
  }
}

TEST(PreprocessTest, CropOffsetRoundsHalfToEven) {
  Preprocessing p;
  p.resize = 225;  // (225 - 224) / 2 = 0.5 -> 0
  EXPECT_EQ(crop_box(225, 225, p).left, 0);
  p.resize = 227;  // 1.5 -> 2
  EXPECT_EQ(crop_box(227, 227, p).left, 2);
  p.resize = 256;  // the usual ImageNet recipe: 16
  EXPECT_EQ(crop_box(500, 500, p).top, 16);
}

TEST(PreprocessTest, RejectsEmptyAndExtremeImages) {
  Preprocessing p;
  test::expect_error([&] { crop_box(0, 10, p); }, ErrorCode::kInput, "empty");
  test::expect_error([&] { crop_box(1, 5'000'000, p); }, ErrorCode::kInput,
                     "1x5000000 pixels: too elongated (resized to a shorter side of 224, its "
                     "longer side would be 1120000000 pixels, beyond the fixed limit of "
                     "1073741824)");
  EXPECT_EQ(crop_box(1, 1, p).resized_w, 224);
}

TEST(PreprocessTest, VeryElongatedImagesCostOnlyTheirCrop) {
  // 20000:1, resized to 224 x 4,480,000: only the crop's taps are made.
  Preprocessing p;
  cv::Mat strip(2, 40000, CV_8UC3);
  cv::randu(strip, 0, 255);
  const CropBox box = crop_box(strip.cols, strip.rows, p);
  EXPECT_EQ(box.resized_w, 4'480'000);
  const at::Tensor x = preprocess(strip, p);
  EXPECT_EQ(x.sizes(), (at::IntArrayRef{3, 224, 224}));
  // The crop is the middle of the full resize (computed here on the middle
  // columns of the strip only, which give the same taps).
  const cv::Mat full = resize_bilinear_pil(strip.colRange(19990, 20010), 2240, 224);
  const cv::Mat mine = resize_bilinear_pil(strip, box.resized_w, box.resized_h,
                                           cv::Rect(box.left, box.top, 224, 224));
  EXPECT_EQ(cv::norm(full.colRange(1008, 1232), mine, cv::NORM_INF), 0.0);
}

TEST(PreprocessTest, ConstantImageNormalizesExactly) {
  Preprocessing p;
  cv::Mat rgb(300, 400, CV_8UC3, cv::Scalar(51, 102, 204));
  at::Tensor x = preprocess(rgb, p);
  ASSERT_EQ(x.sizes(), at::IntArrayRef({3, 224, 224}));
  EXPECT_EQ(x.scalar_type(), at::kFloat);
  const float values[3] = {51, 102, 204};
  for (int c = 0; c < 3; ++c) {
    float expected = (values[c] / 255.0f - p.mean[c]) / p.std[c];
    EXPECT_NEAR(x[c].min().item<float>(), expected, 1e-5);
    EXPECT_NEAR(x[c].max().item<float>(), expected, 1e-5);
  }
}

TEST(PreprocessTest, KeepsTheCentreOfTheImage) {
  // Left half black, right half white, 448 x 224: already 224 tall, so no
  // resize happens and the crop keeps columns 112 to 335.
  Preprocessing p;
  cv::Mat rgb(224, 448, CV_8UC3, cv::Scalar(0, 0, 0));
  rgb.colRange(224, 448).setTo(cv::Scalar(255, 255, 255));
  at::Tensor x = preprocess(rgb, p);
  const float black = (0.0f - p.mean[0]) / p.std[0], white = (1.0f - p.mean[0]) / p.std[0];
  EXPECT_NEAR(x[0][100][111].item<float>(), black, 1e-5);
  EXPECT_NEAR(x[0][100][112].item<float>(), white, 1e-5);
}

TEST(PreprocessTest, OutputIsDeterministic) {
  cv::Mat rgb(123, 321, CV_8UC3);
  cv::randu(rgb, 0, 255);
  Preprocessing p;
  EXPECT_TRUE(at::equal(preprocess(rgb, p), preprocess(rgb, p)));
}

}  // namespace
}  // namespace cnnviz
