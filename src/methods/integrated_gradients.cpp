// Integrated Gradients (Sundararajan et al. 2017, "Axiomatic Attribution for
// Deep Networks"): IG(x) = (x - x') * integral_0^1 d y_c / d x at
// x' + a (x - x') da, approximated by the right Riemann sum over m steps,
// (x - x') * (1/m) sum_{k=1..m} G(x' + (k/m)(x - x')), with plain ReLUs.
// Completeness: sum IG ~= y_c(x) - y_c(x'), exactly in the limit m -> inf.
//
// Baselines x': "black", the black image normalized as the model's input
// (per channel (0 - mean) / std; not the zero tensor, which is the mean
// colour), "blurred", a Gaussian blur of the input (Sturmfels et al. 2020,
// "Visualizing the Impact of Feature Attribution Baselines"), or "mean",
// the zero tensor (the normalization's mean colour). The m
// interpolated images go through the network in batches of --sample-batch.
#include <ATen/ATen.h>

#include "cnnviz/core/error.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz {

namespace method_util {

at::Tensor integrated_gradients(Capture& capture, const at::Tensor& baseline, int steps) {
  const at::Tensor x = capture.input();
  // k / m in float64, then rounded once to float32.
  at::Tensor alphas =
      (at::arange(1, steps + 1, at::kDouble) / steps).to(x.options()).view({1, steps, 1, 1, 1});
  at::Tensor path = baseline.unsqueeze(1) + alphas * (x - baseline).unsqueeze(1);  // [N,m,3,H,W]
  at::Tensor grads = input_gradients(capture, path.flatten(0, 1), steps, Backprop::kPlain);
  return (x - baseline) * grads.view(path.sizes()).mean(1);
}

at::Tensor reference_image(const at::Tensor& x, const std::string& name, const MethodParams& params,
                           const std::string& option) {
  if (name == "black") return black_baseline(x, params.mean, params.std);
  if (name == "mean") return at::zeros_like(x);
  if (name == "blurred" || name == "blur") return gaussian_blur(x, params.blur_sigma);
  throw Error(ErrorCode::kUsage, option + " '" + name + "': must be black, " +
                                     (option == "--fill" ? "blur" : "blurred") + " or mean");
}

at::Tensor black_baseline(const at::Tensor& x, const std::array<float, 3>& mean,
                          const std::array<float, 3>& std) {
  // As preprocessing normalizes a black pixel: (0 - mean) / std in float32.
  // One entry per input channel (a grey model's input has one).
  const int64_t c = x.size(1);
  at::Tensor m = at::tensor(std::vector<float>(mean.begin(), mean.begin() + c)).view({1, c, 1, 1});
  at::Tensor s = at::tensor(std::vector<float>(std.begin(), std.begin() + c)).view({1, c, 1, 1});
  return ((0 - m) / s).to(x.options()).expand_as(x).contiguous();
}

}  // namespace method_util

namespace methods {

std::vector<MethodMap> integrated_gradients(Capture& capture) {
  const MethodParams& p = capture.params();
  if (p.steps < 1) throw Error(ErrorCode::kUsage, "--steps: must be at least 1");
  const at::Tensor x = capture.input();
  const at::Tensor baseline = method_util::reference_image(x, p.baseline, p, "--baseline");
  return {{"", method_util::integrated_gradients(capture, baseline, p.steps)}};
}

}  // namespace methods

}  // namespace cnnviz
