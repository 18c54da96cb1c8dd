// DeepLIFT with the rescale rule (Shrikumar, Greenside and Kundaje 2017,
// "Learning Important Features Through Propagating Activation
// Differences"): the contribution of each input to score(x) - score(x'),
// the difference from a reference input x' (--baseline: black, blurred or
// mean, as for Integrated Gradients).
//
// One forward pass of [x; x'] and one backward: every ReLU and ReLU6 passes
// the multiplier dy / dx of its pair of rows (the rescale rule), every
// max-pooling the rule that keeps summation to delta (each window's change
// assigned to the maxima of the input and of the reference, as Captum's
// DeepLift does), and everything else its gradient (the linear rule:
// convolutions, linear layers, batch norm in eval mode, average pooling,
// additions, concatenations). The map is (x - x') times the multipliers at
// the input, [N,3,H,W], and sums to score(x) - score(x') (summation to
// delta) on networks of those operations. Other activations (SiLU, GELU,
// sigmoid gates) keep their gradient, which breaks the exact sum; the run
// names them.
#include <ATen/ATen.h>

#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

at::Tensor deeplift_references(const at::Tensor& images, const MethodParams& params) {
  return method_util::reference_image(images, params.baseline, params, "--baseline");
}

std::vector<MethodMap> deeplift(Capture& capture) {
  const at::Tensor both = capture.input();  // [2N,...]: the images, then their references
  const int64_t n = both.size(0) / 2;
  std::vector<int64_t> classes = capture.classes();
  classes.resize(static_cast<size_t>(2 * n), kNoTarget);  // the references explain nothing
  const at::Tensor g = capture.pass().backward(classes, Backprop::kRescale,
                                               capture.params().score.value_or(Score{}));
  return {{"", (both.slice(0, 0, n) - both.slice(0, n)) * g.slice(0, 0, n)}};
}

}  // namespace cnnviz::methods
