// Layer-CAM (Jiang et al. 2021, "LayerCAM: Exploring Hierarchical Class
// Activation Maps for Localization"): every position gets its own weight,
// map = relu(sum_k relu(g_k) * A_k), which stays faithful at shallow
// layers where Grad-CAM's averaged weights blur.
//
// Fused: with more than one layer, one more map, "fused", at the input's
// resolution: each layer's map is upsampled (bilinear), divided by its
// maximum (an all-zero map stays zero) and the element-wise maximum is taken
// across layers. (The paper also compresses shallow layers' maps with
// tanh(2 M / max M) before fusing; cnnviz does not.)
#include <ATen/ATen.h>

#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> layercam(Capture& capture) {
  std::vector<MethodMap> maps;
  for (size_t i = 0; i < capture.layers().size(); ++i) {
    const at::Tensor a = method_util::feature_map(capture, i);
    maps.push_back({capture.layers()[i],
                    at::relu((at::relu(method_util::feature_gradient(capture, i)) * a).sum(1))});
  }
  if (maps.size() > 1) {
    const at::Tensor x = capture.input();
    at::Tensor fused;
    for (const MethodMap& m : maps) {
      at::Tensor up = upsample(m.value, x.size(2), x.size(3));
      at::Tensor peak = up.amax({1, 2}, /*keepdim=*/true);
      up = at::where(peak > 0, up / peak.clamp_min(1e-30), at::zeros_like(up));
      fused = fused.defined() ? at::maximum(fused, up) : up;
    }
    maps.push_back({"fused", fused});
  }
  return maps;
}

}  // namespace cnnviz::methods
