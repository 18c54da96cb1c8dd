// CAM, class activation mapping (Zhou et al. 2016, "Learning Deep Features
// for Discriminative Localization"): for a network whose head is global
// average pooling of a feature map A followed by a linear classifier,
// M_c(x, y) = sum_k w_ck A_k(x, y), whose spatial mean is the logit y_c minus
// the bias. The bias is left out, as in the paper.
//
// The head is recognised from the graph, not from per-architecture code: A
// is the input of the last global average pooling (Engine's
// kGlobalPoolInput). When A has one channel per class (SqueezeNet, NiN: the
// classifier is a 1x1 convolution before the pooling), M_c is channel c of A.
// Otherwise the head must be linear after the pooling, which shows as a
// spatially constant gradient d y_c / d A_k = w_ck / (h w); cnnviz checks that
// and reads the weights from it. Anything else (VGG and AlexNet pool to 7x7
// and 6x6, not 1x1) is refused with a pointer to Grad-CAM.
#include <ATen/ATen.h>

#include "cnnviz/core/error.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> cam(Capture& capture) {
  std::optional<size_t> i = capture.layer_index(kGlobalPoolInput);
  if (!i) throw Error(ErrorCode::kRuntime, "cam: the engine was built without the pooling tap");
  const at::Tensor& a = capture.activation(*i);
  if (a.dim() != 4) {
    throw Error(ErrorCode::kUnsupported,
                "cam: the global pooling's input is not a 4-D feature map");
  }
  const int64_t classes = capture.logits().size(1);
  if (a.size(1) == classes) {
    // The class channels themselves (SqueezeNet); a rank without a target
    // reads channel 0 and is not written.
    std::vector<int64_t> cls = capture.classes();
    for (int64_t& k : cls) k = std::max<int64_t>(k, 0);
    at::Tensor index = at::tensor(cls, at::kLong).view({-1, 1, 1, 1}).to(a.device());
    at::Tensor map = a.gather(1, index.expand({-1, 1, a.size(2), a.size(3)})).squeeze(1);
    const bool negate = capture.params().score && capture.params().score->counterfactual;
    return {{kGlobalPoolInput, negate ? -map : map}};
  }
  at::Tensor g = capture.layer_gradient(*i);
  at::Tensor mean = g.mean({2, 3}, /*keepdim=*/true);
  const double spread = (g - mean).abs().max().item<double>();
  const double scale = g.abs().max().item<double>();
  if (spread > 1e-4 * scale) {
    throw Error(ErrorCode::kUnsupported,
                "cam: the classifier after global average pooling is not linear (CAM needs "
                "pooling followed by a linear layer; use gradcam)");
  }
  at::Tensor weights = mean * static_cast<double>(a.size(2) * a.size(3));  // w_ck
  return {{kGlobalPoolInput, (weights * a).sum(1)}};
}

}  // namespace cnnviz::methods
