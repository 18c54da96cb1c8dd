// Pillow-exact bilinear resizing of 8-bit images.
#ifndef CNNVIZ_IO_RESIZE_H_
#define CNNVIZ_IO_RESIZE_H_

#include <opencv2/core/mat.hpp>
#include <opencv2/core/types.hpp>

namespace cnnviz {

// Resizes `src` (8-bit, 1 to 4 channels) to out_w x out_h exactly as Pillow's
// Image.resize((out_w, out_h), Image.BILINEAR) does, which is what
// torchvision's Resize does to PIL images: a separable triangle filter whose
// support widens with the downscale factor (antialiasing), coefficients in
// 22-bit fixed point, a horizontal pass and then a vertical pass, each rounded
// and clamped to 8 bits. Only the pixels inside `roi` (in output coordinates;
// default: all) are computed and returned, so resize-then-crop costs only the
// crop. Throws Error(kRuntime) for unsupported input or a roi outside the output.
cv::Mat resize_bilinear_pil(const cv::Mat& src, int out_w, int out_h, cv::Rect roi = cv::Rect());

}  // namespace cnnviz

#endif  // CNNVIZ_IO_RESIZE_H_
