// From an RGB image to the network's input tensor, as torchvision's
// Resize(resize) + CenterCrop(crop) + ToTensor + Normalize do on a PIL image.
#ifndef CNNVIZ_IO_PREPROCESS_H_
#define CNNVIZ_IO_PREPROCESS_H_

#include <ATen/core/Tensor.h>

#include <opencv2/core/mat.hpp>

#include "cnnviz/core/model.h"

namespace cnnviz {

// Where the network's input lies in the source image: the source is
// resized to resized_w x resized_h, then the width x height rectangle at
// (left, top) of the resized image is kept: the centre crop x crop square,
// or the whole resized image for a model without a crop (crop 0). A
// letterbox's rectangle is larger than the resized image (left and top
// negative): the rest is grey padding.
struct CropBox {
  int src_w = 0, src_h = 0;
  int resized_w = 0, resized_h = 0;
  int left = 0, top = 0;
  int width = 0, height = 0;
};

// The shorter side becomes p.resize and the longer int(p.resize * long / short)
// (torchvision's rule); the crop offsets are round((resized - crop) / 2) with
// round-half-to-even, as Python's round(); with p.crop 0 the box is the whole
// resized image. With p.letterbox, the longer side becomes p.resize and the
// shorter floor(short * resize / long + 0.5), at least 1, centred on a
// resize x resize square with (resize - resized) / 2 (rounded down) before
// it. With p.max_size (a torchvision detector), the whole image scaled by
// min(resize / short, max_size / long), each side floored, in torchvision
// 0.14's float32 arithmetic. Throws Error(kInput) for an empty
// image or one so elongated that its resized longer side passes 2^30 pixels
// (4,194,304:1 at a shorter side of 256).
CropBox crop_box(int src_w, int src_h, const Preprocessing& p);

// rgb: H x W CV_8UC3, RGB. Returns [p.channels,height,width] float32 (the
// crop_box's; crop x crop with a crop; a letterbox pads with grey 114),
// normalized (1 channel: the luma, luma_601()). Resizing is Pillow's
// antialiased bilinear, bit for bit (see resize.h).
at::Tensor preprocess(const cv::Mat& rgb, const Preprocessing& p);

// The RGB image the network sees of `rgb` (8-bit, box.width x box.height):
// resized and cropped, or letterboxed, as `box` (crop_box) says.
cv::Mat network_view(const cv::Mat& rgb, const CropBox& box);

// The ITU-R 601 luma of an RGB image as PIL's convert("L") computes it:
// (19595 R + 38470 G + 7471 B + 2^15) >> 16, CV_8UC1.
cv::Mat luma_601(const cv::Mat& rgb);

// True when every pixel of the RGB image has R == G == B (a grey image, as
// decoding replicates grey sources to three channels).
bool is_grey(const cv::Mat& rgb);

}  // namespace cnnviz

#endif  // CNNVIZ_IO_PREPROCESS_H_
