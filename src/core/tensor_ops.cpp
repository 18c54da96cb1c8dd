#include "cnnviz/core/tensor_ops.h"

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <cmath>
#include <string>
#include <vector>

#include "cnnviz/core/error.h"

namespace cnnviz {

at::Tensor normalize_per_image(const at::Tensor& maps) {
  at::Tensor flat = maps.flatten(1);
  at::Tensor lo = std::get<0>(flat.min(1, true));
  at::Tensor hi = std::get<0>(flat.max(1, true));
  at::Tensor range = hi - lo;
  // A constant map carries no location: zeros, never NaN.
  at::Tensor out = at::where(range > 0, (flat - lo) / range.clamp_min(1e-30), at::zeros_like(flat));
  return out.view(maps.sizes());
}

at::Tensor gaussian_blur(const at::Tensor& x, double sigma) {
  if (!(sigma > 0)) throw Error(ErrorCode::kUsage, "blur sigma: must be positive");
  const int64_t r = static_cast<int64_t>(std::ceil(3 * sigma));
  if (r >= x.size(2) || r >= x.size(3)) {
    throw Error(ErrorCode::kUsage, "blur sigma " + std::to_string(sigma) + ": too large for a " +
                                       std::to_string(x.size(3)) + "x" + std::to_string(x.size(2)) +
                                       " input");
  }
  at::Tensor i = at::arange(-r, r + 1, x.options());
  at::Tensor k = at::exp(-(i * i) / (2 * sigma * sigma));
  k = k / k.sum();
  const int64_t c = x.size(1);
  at::Tensor padded = at::reflection_pad2d(x, {r, r, r, r});
  const c10::optional<at::Tensor> no_bias;
  const std::vector<int64_t> one{1, 1}, zero{0, 0};
  at::Tensor h =
      at::conv2d(padded, k.view({1, 1, 1, -1}).repeat({c, 1, 1, 1}), no_bias, one, zero, one, c);
  return at::conv2d(h, k.view({1, 1, -1, 1}).repeat({c, 1, 1, 1}), no_bias, one, zero, one, c);
}

at::Tensor upsample(const at::Tensor& maps, int64_t height, int64_t width) {
  return at::upsample_bilinear2d(maps.unsqueeze(1), {height, width}, /*align_corners=*/false)
      .squeeze(1);
}

}  // namespace cnnviz
