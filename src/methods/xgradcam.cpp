// XGrad-CAM (Fu et al. 2020, "Axiom-based Grad-CAM"): the channel weights
// that satisfy the sensitivity and conservation axioms,
//   w_k = sum_ab (A_k(a, b) / sum_ab A_k) * d y_c / d A_k(a, b),
// (1e-7 added to the denominator), map = relu(sum_k w_k A_k).
#include <ATen/ATen.h>

#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> xgradcam(Capture& capture) {
  std::vector<MethodMap> maps;
  for (size_t i = 0; i < capture.layers().size(); ++i) {
    const at::Tensor a = method_util::feature_map(capture, i);
    const at::Tensor g = method_util::feature_gradient(capture, i);
    const at::Tensor w =
        (g * a / (a.sum({2, 3}, /*keepdim=*/true) + 1e-7)).sum({2, 3}, /*keepdim=*/true);
    maps.push_back({capture.layers()[i], at::relu((w * a).sum(1))});
  }
  return maps;
}

}  // namespace cnnviz::methods
