// Gradient x input (Shrikumar et al. 2016, "Not Just a Black Box"; Ancona
// et al. 2018 compare it with the others): x * d y_c / d x, element-wise, on
// the normalized input tensor x, with the true (plain) gradient. For a
// network that is linear in x it is each pixel's exact contribution to y_c.
#include <ATen/ATen.h>

#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> gradient_input(Capture& capture) {
  return {{"", capture.input() * capture.input_gradient(Backprop::kPlain)}};
}

}  // namespace cnnviz::methods
