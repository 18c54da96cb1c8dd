// Guided Grad-CAM (Selvaraju et al. 2017): the element-wise product of the
// guided-backpropagation gradient [3,H,W] with the Grad-CAM map of layer L,
// normalized to [0,1] per image and upsampled bilinearly to H x W.
//
// All layers share one forward pass, one plain backward (the Grad-CAM
// gradients of every layer) and one guided backward (the guided gradient),
// where the seed tutorial runs two forward+backward passes per layer.
#include <ATen/ATen.h>

#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> guided_gradcam(Capture& capture) {
  at::Tensor guided = capture.input_gradient(Backprop::kGuided);
  const int64_t h = guided.size(2), w = guided.size(3);
  std::vector<MethodMap> maps;
  for (size_t i = 0; i < capture.layers().size(); ++i) {
    at::Tensor cam = normalize_per_image(method_util::gradcam(capture, i));
    maps.push_back({capture.layers()[i], guided * upsample(cam, h, w).unsqueeze(1)});
  }
  return maps;
}

}  // namespace cnnviz::methods
