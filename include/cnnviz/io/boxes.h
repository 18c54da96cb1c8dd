// Boxes drawn over an image: a detector's detections, or a target's box.
#ifndef CNNVIZ_IO_BOXES_H_
#define CNNVIZ_IO_BOXES_H_

#include <cstdint>
#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

namespace cnnviz {

struct LabelledBox {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;  // corners, in the image's pixels
  int64_t colour = 0;                     // a class: its palette colour (label_map.h)
  std::string text;                       // written above the box ("dog 0.91")
};

// A copy of `rgb` (CV_8UC3, RGB) with each box's outline in its colour, its
// text on a band of that colour above it (inside the image when the box
// touches the top), lines and text scaled to the image's size. The boxes are
// drawn in order, so the first lies on top.
cv::Mat draw_boxes(const cv::Mat& rgb, const std::vector<LabelledBox>& boxes);

// Draws into `rgb` (CV_8UC3, RGB) the outline of the region of `mask`
// (CV_8UC1 of rgb's size, nonzero inside: a segmenter's class) in class
// `colour`'s palette colour (exactly: not antialiased), its line scaled to
// the image as draw_boxes's.
void draw_outline(cv::Mat& rgb, const cv::Mat& mask, int64_t colour);

}  // namespace cnnviz

#endif  // CNNVIZ_IO_BOXES_H_
