// Eigen-CAM (Muhammad and Yeasin 2020, "Eigen-CAM: Class Activation Map using
// Principal Components"): class independent, no gradient. With the layer
// output arranged as M = [h*w positions, K channels], the map is the
// projection M v1 on the first right singular vector (the paper's first
// principal component, no centering). A singular vector's sign is
// arbitrary: cnnviz picks the one whose projection sums to >= 0, then
// applies relu like the other CAMs. Computed in float64.
#include <ATen/ATen.h>

#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> eigencam(Capture& capture) {
  std::vector<MethodMap> maps;
  for (size_t i = 0; i < capture.layers().size(); ++i) {
    const at::Tensor a = method_util::feature_map(capture, i);
    const int64_t n = a.size(0), k = a.size(1), h = a.size(2), w = a.size(3);
    std::vector<at::Tensor> per_image;
    for (int64_t j = 0; j < n; ++j) {
      at::Tensor m = a[j].reshape({k, h * w}).t().to(at::kDouble);  // [hw, K]
      at::Tensor vh = std::get<2>(at::linalg_svd(m, /*full_matrices=*/false));
      at::Tensor p = at::matmul(m, vh[0]);
      if (p.sum().item<double>() < 0) p = -p;
      per_image.push_back(at::relu(p).view({h, w}).to(at::kFloat));
    }
    maps.push_back({capture.layers()[i], at::stack(per_image)});
  }
  return maps;
}

}  // namespace cnnviz::methods
