// Deconvnet (Zeiler & Fergus 2014, "Visualizing and Understanding
// Convolutional Networks"), in the gradient formulation of Springenberg et
// al. 2015: d y_c / d x where every ReLU's backward is max(g, 0), ignoring
// the forward input. Max pooling routes the gradient through the forward
// argmax ("switches"), as in the paper. Zeiler & Fergus project single
// activations; here the target is the class score, like the other methods.
#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> deconvnet(Capture& capture) {
  return {{"", capture.input_gradient(Backprop::kDeconv)}};
}

}  // namespace cnnviz::methods
