// Drawing a segmenter's per-pixel classes: colours, resizing a label map to
// the source image, and overlays. Uses no LibTorch.
#ifndef CNNVIZ_IO_LABEL_MAP_H_
#define CNNVIZ_IO_LABEL_MAP_H_

#include <cstdint>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace cnnviz {

// The colour of class k, RGB: the PASCAL VOC palette, in which the bits of k,
// three at a time from the lowest, fill R, G and B from their high bit down
// (class 1 is (128, 0, 0), class 15 (192, 128, 128)); class 0 is black.
cv::Vec3b class_colour(int64_t k);

// `labels` (CV_32SC1, class indices) at width x height by nearest neighbour
// on pixel centres: output pixel (x, y) takes input pixel
// (floor((2x + 1) w / 2 width), floor((2y + 1) h / 2 height)).
cv::Mat resize_labels(const cv::Mat& labels, int width, int height);

// RGB picture of `labels` (CV_32SC1) in class_colour().
cv::Mat colour_labels(const cv::Mat& labels);

// `rgb` (CV_8UC3, the size of `labels`) with each pixel whose class is
// `painted` blended with its class colour: colour * alpha + rgb * (1 - alpha).
cv::Mat overlay_labels(const cv::Mat& rgb, const cv::Mat& labels, const std::vector<bool>& painted,
                       double alpha);

}  // namespace cnnviz

#endif  // CNNVIZ_IO_LABEL_MAP_H_
