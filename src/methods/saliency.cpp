// Saliency: the vanilla gradient of the class score with respect to the
// input pixels, d y_c / d x (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside
// Convolutional Networks"). The paper shows max_c |grad| over channels; cnnviz
// keeps the signed 3-channel gradient and renders it like guided backprop
// (all/pos/neg, colour and grey), as the seed tutorial does.
#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> saliency(Capture& capture) {
  return {{"", capture.input_gradient(Backprop::kPlain)}};
}

}  // namespace cnnviz::methods
