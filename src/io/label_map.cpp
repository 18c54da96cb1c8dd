#include "cnnviz/io/label_map.h"

#include <algorithm>
#include <cmath>

#include "cnnviz/core/error.h"

namespace cnnviz {

cv::Vec3b class_colour(int64_t k) {
  int r = 0, g = 0, b = 0;
  uint64_t c = static_cast<uint64_t>(std::max<int64_t>(0, k));
  for (int bit = 7; bit >= 0; --bit) {
    r |= static_cast<int>(c & 1) << bit;
    g |= static_cast<int>((c >> 1) & 1) << bit;
    b |= static_cast<int>((c >> 2) & 1) << bit;
    c >>= 3;
  }
  return cv::Vec3b(static_cast<uint8_t>(r), static_cast<uint8_t>(g), static_cast<uint8_t>(b));
}

cv::Mat resize_labels(const cv::Mat& labels, int width, int height) {
  if (labels.type() != CV_32SC1 || labels.empty() || width < 1 || height < 1) {
    throw Error(ErrorCode::kRuntime, "resize_labels: expected a non-empty CV_32SC1 map");
  }
  const int64_t w = labels.cols, h = labels.rows;
  std::vector<int> xs(static_cast<size_t>(width));
  for (int x = 0; x < width; ++x) {
    xs[static_cast<size_t>(x)] = static_cast<int>((2 * int64_t{x} + 1) * w / (2 * int64_t{width}));
  }
  cv::Mat out(height, width, CV_32SC1);
  for (int y = 0; y < height; ++y) {
    const auto sy = static_cast<int>((2 * int64_t{y} + 1) * h / (2 * int64_t{height}));
    const int32_t* in = labels.ptr<int32_t>(sy);
    int32_t* o = out.ptr<int32_t>(y);
    for (int x = 0; x < width; ++x) o[x] = in[xs[static_cast<size_t>(x)]];
  }
  return out;
}

cv::Mat colour_labels(const cv::Mat& labels) {
  cv::Mat out(labels.rows, labels.cols, CV_8UC3);
  for (int y = 0; y < labels.rows; ++y) {
    const int32_t* in = labels.ptr<int32_t>(y);
    cv::Vec3b* o = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < labels.cols; ++x) o[x] = class_colour(in[x]);
  }
  return out;
}

cv::Mat overlay_labels(const cv::Mat& rgb, const cv::Mat& labels, const std::vector<bool>& painted,
                       double alpha) {
  if (rgb.type() != CV_8UC3 || rgb.size() != labels.size()) {
    throw Error(ErrorCode::kRuntime, "overlay_labels: the image and the labels differ in size");
  }
  cv::Mat out = rgb.clone();
  const auto a = static_cast<float>(alpha);
  for (int y = 0; y < labels.rows; ++y) {
    const int32_t* in = labels.ptr<int32_t>(y);
    cv::Vec3b* o = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < labels.cols; ++x) {
      const auto k = static_cast<size_t>(in[x]);
      if (k >= painted.size() || !painted[k]) continue;
      const cv::Vec3b c = class_colour(in[x]);
      for (int ch = 0; ch < 3; ++ch) {
        o[x][ch] = cv::saturate_cast<uint8_t>(std::lround(a * c[ch] + (1.0f - a) * o[x][ch]));
      }
    }
  }
  return out;
}

}  // namespace cnnviz
