// Tensor helpers shared by the methods and the faithfulness metrics: map
// normalization, Gaussian blur and bilinear upsampling. LibTorch only.
#ifndef CNNVIZ_CORE_TENSOR_OPS_H_
#define CNNVIZ_CORE_TENSOR_OPS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace cnnviz {

// Per-image min-max normalization of [N,h,w] to [0,1]; an image whose map is
// constant becomes all zeros (never NaN).
at::Tensor normalize_per_image(const at::Tensor& maps);

// Gaussian blur of [N,C,H,W], per channel: 1-D kernel exp(-i^2 / 2 sigma^2)
// for |i| <= ceil(3 sigma), normalized; reflected borders; horizontal, then
// vertical. Throws Error(kUsage) for sigma <= 0 or a kernel wider than the
// input.
at::Tensor gaussian_blur(const at::Tensor& x, double sigma);

// Bilinear resize of [N,h,w] to [N,H,W] (half-pixel centres, as OpenCV's
// INTER_LINEAR and pytorch-grad-cam's cv2.resize).
at::Tensor upsample(const at::Tensor& maps, int64_t height, int64_t width);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_TENSOR_OPS_H_
