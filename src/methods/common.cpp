#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <algorithm>
#include <cmath>

#include "cnnviz/error.h"
#include "cnnviz/feature_map.h"
#include "cnnviz/methods.h"

namespace cnnviz::method_util {

at::Tensor feature_map(Capture& capture, size_t i) {
  return to_feature_map(capture.activation(i), capture.layers()[i],
                        capture.engine().model().info().name);
}

at::Tensor feature_gradient(Capture& capture, size_t i) {
  return to_feature_map(capture.layer_gradient(i), capture.layers()[i],
                        capture.engine().model().info().name);
}

at::Tensor gradcam(Capture& capture, size_t i) {
  const at::Tensor a = feature_map(capture, i);
  at::Tensor weights = feature_gradient(capture, i).mean({2, 3}, /*keepdim=*/true);
  return at::relu((weights * a).sum(1));
}

at::Tensor input_gradients(Capture& capture, const at::Tensor& inputs,
                           const std::vector<int64_t>& classes, Backprop mode) {
  const int64_t m = inputs.size(0);
  const int64_t chunk = std::max(1, capture.params().sample_batch);
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < m; start += chunk) {
    const int64_t end = std::min(m, start + chunk);
    Pass sub = capture.pass().nested(inputs.slice(0, start, end));
    parts.push_back(
        sub.backward(std::vector<int64_t>(classes.begin() + start, classes.begin() + end), mode,
                     capture.params().score.value_or(Score{})));
  }
  return at::cat(parts);
}

std::vector<int64_t> repeat_each(const std::vector<int64_t>& classes, int64_t times) {
  std::vector<int64_t> out;
  for (int64_t c : classes) out.insert(out.end(), static_cast<size_t>(times), c);
  return out;
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

}  // namespace cnnviz::method_util
