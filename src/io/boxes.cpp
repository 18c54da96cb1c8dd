#include "cnnviz/io/boxes.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "cnnviz/io/label_map.h"

namespace cnnviz {

namespace {

// Black or white, whichever reads better on `c`.
cv::Scalar text_colour(const cv::Vec3b& c) {
  const double luma = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
  return luma > 140 ? cv::Scalar(0, 0, 0) : cv::Scalar(255, 255, 255);
}

void draw_one(cv::Mat& out, const LabelledBox& b, int thickness, double font_scale) {
  const cv::Vec3b c = class_colour(b.colour);
  const cv::Scalar colour(c[0], c[1], c[2]);
  const cv::Point p1(static_cast<int>(std::lround(b.x1)), static_cast<int>(std::lround(b.y1)));
  const cv::Point p2(static_cast<int>(std::lround(b.x2)), static_cast<int>(std::lround(b.y2)));
  cv::rectangle(out, p1, p2, colour, thickness, cv::LINE_AA);
  if (b.text.empty()) return;
  int baseline = 0;
  const cv::Size size = cv::getTextSize(b.text, cv::FONT_HERSHEY_SIMPLEX, font_scale,
                                        std::max(1, thickness / 2), &baseline);
  const int band = size.height + baseline + 2 * thickness;
  const int top = p1.y - band >= 0 ? p1.y - band : std::min(p1.y, out.rows - band);
  const cv::Rect label(std::max(0, p1.x - thickness / 2), std::max(0, top),
                       size.width + 2 * thickness, band);
  cv::rectangle(out, label & cv::Rect(0, 0, out.cols, out.rows), colour, cv::FILLED);
  cv::putText(out, b.text, cv::Point(label.x + thickness, label.y + thickness + size.height),
              cv::FONT_HERSHEY_SIMPLEX, font_scale, text_colour(c), std::max(1, thickness / 2),
              cv::LINE_AA);
}

}  // namespace

static int line_thickness(const cv::Mat& image) {
  return std::max(1, static_cast<int>(std::lround(std::min(image.cols, image.rows) / 300.0)));
}

void draw_outline(cv::Mat& rgb, const cv::Mat& mask, int64_t colour) {
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(mask.clone(), contours, cv::RETR_LIST, cv::CHAIN_APPROX_SIMPLE);
  const cv::Vec3b c = class_colour(colour);
  // Crisp: the region's edges follow its pixels, and the colour stays the class's.
  cv::drawContours(rgb, contours, -1, cv::Scalar(c[0], c[1], c[2]), line_thickness(rgb),
                   cv::LINE_8);
}

cv::Mat draw_boxes(const cv::Mat& rgb, const std::vector<LabelledBox>& boxes) {
  cv::Mat out = rgb.clone();
  const int side = std::min(out.cols, out.rows);
  const int thickness = line_thickness(out);
  const double font_scale = std::max(0.3, side / 900.0);
  for (auto it = boxes.rbegin(); it != boxes.rend(); ++it) draw_one(out, *it, thickness, font_scale);
  return out;
}

}  // namespace cnnviz
