// Grad-CAM (Selvaraju et al. 2017): at layer L with output A (K channels),
// relu(sum_k w_k A_k) with w_k the spatial mean of d y_c / d A_k.
//
// Where cnnviz differs from the Python tools: A is the module's true output
// (hooks in eager PyTorch see it after a following in-place ReLU has
// overwritten it, so pytorch-cnn-visualizations and Captum report post-ReLU
// maps for convolutions); every requested layer comes from the same forward
// and backward pass (not one pass per layer); the raw map is returned at the
// layer's resolution, unnormalized (no accumulator starting at 1, no uint8
// quantization before resizing).
#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> gradcam(Capture& capture) {
  std::vector<MethodMap> maps;
  for (size_t i = 0; i < capture.layers().size(); ++i) {
    maps.push_back({capture.layers()[i], method_util::gradcam(capture, i)});
  }
  return maps;
}

}  // namespace cnnviz::methods
