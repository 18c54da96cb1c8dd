// The PNG encoder (ISA-L deflate): lossless for every size and channel
// order, valid for libpng (OpenCV's decoder checks every CRC), and about
// as small as OpenCV's own encoder.
#include "cnnviz/io/png.h"

#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "test_util.h"

namespace cnnviz {
namespace {

cv::Mat decode(const std::vector<uint8_t>& bytes) {
  return cv::imdecode(bytes, cv::IMREAD_UNCHANGED);
}

bool same(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

TEST(PngTest, RoundTripsEverySizeAndChannelOrder) {
  cv::RNG rng(7);
  // 1x1, odd widths, a single row and column, and more rows than one
  // compression chunk holds (the stream is fed in pieces).
  for (cv::Size size : {cv::Size(1, 1), cv::Size(3, 1), cv::Size(1, 5), cv::Size(17, 13),
                        cv::Size(224, 224), cv::Size(1000, 700), cv::Size(4099, 70)}) {
    for (int channels : {1, 3}) {
      SCOPED_TRACE(std::to_string(size.width) + "x" + std::to_string(size.height) + "x" +
                   std::to_string(channels));
      cv::Mat img(size, CV_8UC(channels));
      rng.fill(img, cv::RNG::UNIFORM, 0, 256);
      if (channels == 1) {
        EXPECT_TRUE(same(decode(encode_png(img, PixelOrder::kRgb)), img));
        continue;
      }
      // BGR in, BGR out of OpenCV's decoder; RGB in, the same pixels swapped.
      EXPECT_TRUE(same(decode(encode_png(img, PixelOrder::kBgr)), img));
      cv::Mat rgb;
      cv::cvtColor(img, rgb, cv::COLOR_BGR2RGB);
      EXPECT_TRUE(same(decode(encode_png(rgb, PixelOrder::kRgb)), img));
    }
  }
}

TEST(PngTest, EncodesViewsOfLargerImages) {
  cv::Mat big(50, 80, CV_8UC3);
  cv::randu(big, 0, 255);
  const cv::Mat roi = big(cv::Rect(7, 5, 31, 20));  // not continuous in memory
  ASSERT_FALSE(roi.isContinuous());
  EXPECT_TRUE(same(decode(encode_png(roi, PixelOrder::kBgr)), roi));
}

// Up filtering everywhere (where libpng picks a filter per row) costs some
// size on smooth synthetic images and none on photos: the bound is loose for
// the synthetic overlay, tight for the shared photo's.
TEST(PngTest, AboutAsSmallAsOpenCVsEncoder) {
  auto overlay_of = [](const cv::Mat& photo) {
    cv::Mat ramp(photo.rows, photo.cols, CV_8UC1), heat, overlay;
    for (int y = 0; y < ramp.rows; ++y) {
      for (int x = 0; x < ramp.cols; ++x) {
        ramp.at<uint8_t>(y, x) = static_cast<uint8_t>((x + y) * 255 / (ramp.rows + ramp.cols));
      }
    }
    cv::applyColorMap(ramp, heat, cv::COLORMAP_JET);
    cv::addWeighted(heat, 0.5, photo, 0.5, 0, overlay);
    return overlay;
  };
  auto ratio = [](const cv::Mat& image) {
    std::vector<uint8_t> theirs;
    EXPECT_TRUE(cv::imencode(".png", image, theirs));
    return static_cast<double>(encode_png(image, PixelOrder::kBgr).size()) / theirs.size();
  };
  cv::Mat noise(400, 600, CV_8UC3), blurred;
  cv::randu(noise, 0, 255);
  cv::GaussianBlur(noise, blurred, cv::Size(0, 0), 3);
  EXPECT_LT(ratio(overlay_of(blurred)), 1.25);
  const std::string shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "no ../shared: the photo's bound is not checked";
  const cv::Mat photo = cv::imread(shared + "/images/cat.jpg");
  ASSERT_FALSE(photo.empty());
  EXPECT_LT(ratio(overlay_of(photo)), 1.05);
}

TEST(PngTest, RejectsWhatPngCannotHold) {
  test::expect_error([] { encode_png(cv::Mat(4, 4, CV_32FC1), PixelOrder::kRgb); },
                     ErrorCode::kRuntime, "8-bit");
  test::expect_error([] { encode_png(cv::Mat(4, 4, CV_8UC4), PixelOrder::kRgb); },
                     ErrorCode::kRuntime, "8-bit");
  test::expect_error([] { encode_png(cv::Mat(), PixelOrder::kRgb); }, ErrorCode::kRuntime, "8-bit");
  test::TempDir dir;
  test::expect_error(
      [&] { write_png(dir.file("missing/x.png"), cv::Mat(2, 2, CV_8UC1), PixelOrder::kRgb); },
      ErrorCode::kOutput, "missing/x.png");
}

}  // namespace
}  // namespace cnnviz
