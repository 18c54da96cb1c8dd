// Guided backpropagation (Springenberg et al. 2015, "Striving for
// Simplicity"): d y_c / d x where every ReLU's backward passes a gradient
// only where both the forward input and the incoming gradient are positive:
// max(g, 0) * (x > 0).
//
// Unlike the Python tools (pytorch-cnn-visualizations hooks only the ReLU
// modules directly under `features`), every ReLU is guided: nested in blocks
// (Fire, dense layers, bottlenecks), functional (F.relu in a forward),
// in-place, and in the classifier. Activations that are not ReLUs (ReLU6,
// SiLU, GELU, ...) keep their true gradient and are reported (Engine::report).
#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> guided_backprop(Capture& capture) {
  return {{"", capture.input_gradient(Backprop::kGuided)}};
}

}  // namespace cnnviz::methods
