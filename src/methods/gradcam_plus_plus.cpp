// Grad-CAM++ (Chattopadhay et al. 2018): at layer output A with plain
// gradient g = d y_c / d A, per channel k and position (a, b)
//   alpha = g^2 / (2 g^2 + S_k g^3),   S_k = sum_ab A_k(a, b),
// (the paper's closed form for an exponential output; alpha = 0 where
// g = 0, and 1e-7 added to the denominator as the reference implementations
// do), w_k = sum_ab alpha * relu(g), map = relu(sum_k w_k A_k).
#include <ATen/ATen.h>

#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> gradcam_plus_plus(Capture& capture) {
  std::vector<MethodMap> maps;
  for (size_t i = 0; i < capture.layers().size(); ++i) {
    // In float64: g^2 and g^3 of small gradients meet the 1e-7 in the
    // denominator, where float32 loses the weights' leading digits.
    const at::Tensor a = method_util::feature_map(capture, i).to(at::kDouble);
    const at::Tensor g = method_util::feature_gradient(capture, i).to(at::kDouble);
    const at::Tensor g2 = g * g;
    const at::Tensor sum_a = a.sum({2, 3}, /*keepdim=*/true);
    at::Tensor alpha = g2 / (2 * g2 + sum_a * g2 * g + 1e-7);
    alpha = at::where(g != 0, alpha, at::zeros_like(alpha));
    const at::Tensor w = (alpha * at::relu(g)).sum({2, 3}, /*keepdim=*/true);
    maps.push_back({capture.layers()[i], at::relu((w * a).sum(1)).to(at::kFloat)});
  }
  return maps;
}

}  // namespace cnnviz::methods
