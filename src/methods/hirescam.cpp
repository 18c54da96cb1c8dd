// HiResCAM (Draelos and Carin 2020, "Use HiResCAM instead of Grad-CAM for
// faithful explanations"): map = relu(sum_k g_k * A_k), the element-wise
// product of the plain gradient and the layer output summed over channels,
// without Grad-CAM's spatial averaging of the gradient. With a head of
// global average pooling and one linear layer it equals CAM times 1/(h w).
#include <ATen/ATen.h>

#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> hirescam(Capture& capture) {
  std::vector<MethodMap> maps;
  for (size_t i = 0; i < capture.layers().size(); ++i) {
    const at::Tensor a = method_util::feature_map(capture, i);
    maps.push_back(
        {capture.layers()[i], at::relu((method_util::feature_gradient(capture, i) * a).sum(1))});
  }
  return maps;
}

}  // namespace cnnviz::methods
