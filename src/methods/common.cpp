#include <ATen/ATen.h>

#include "cnnviz/error.h"
#include "cnnviz/methods.h"

namespace cnnviz::method_util {

namespace {

std::string shape_string(at::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

}  // namespace

at::Tensor gradcam(Capture& capture, size_t i) {
  const at::Tensor& a = capture.activation(i);
  if (a.dim() != 4) {
    throw Error(ErrorCode::kUnsupported,
                "layer '" + capture.layers()[i] + "' outputs " + shape_string(a.sizes()) +
                    ", not a 4-D feature map (pick a convolutional layer)");
  }
  at::Tensor weights = capture.layer_gradient(i).mean({2, 3}, /*keepdim=*/true);
  return at::relu((weights * a).sum(1));
}

at::Tensor normalize_per_image(const at::Tensor& maps) {
  at::Tensor flat = maps.flatten(1);
  at::Tensor lo = std::get<0>(flat.min(1, true));
  at::Tensor hi = std::get<0>(flat.max(1, true));
  at::Tensor range = hi - lo;
  // A constant map carries no location: zeros, never NaN.
  at::Tensor out = at::where(range > 0, (flat - lo) / range.clamp_min(1e-30), at::zeros_like(flat));
  return out.view(maps.sizes());
}

at::Tensor upsample(const at::Tensor& maps, int64_t height, int64_t width) {
  return at::upsample_bilinear2d(maps.unsqueeze(1), {height, width}, /*align_corners=*/false)
      .squeeze(1);
}

}  // namespace cnnviz::method_util
