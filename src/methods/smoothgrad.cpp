// SmoothGrad (Smilkov et al. 2017, "SmoothGrad: removing noise by adding
// noise"): (1/n) sum_{i=1..n} G(x + e_i), e_i ~ N(0, sigma^2), where G is
// the vanilla gradient (saliency) or guided backpropagation, and
// sigma = noise * (max(x) - min(x)) over the image's normalized tensor (the
// paper's "noise level", 10-20% recommended; default 15%, n = 50).
//
// The noise comes from a seeded generator, one draw of n patterns per call
// shared by every image, so a map does not depend on the batch it was
// computed in. The n noisy copies go through the network in batches of
// --sample-batch, not one pass each.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "cnnviz/core/error.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz {

namespace method_util {

at::Tensor smooth_gradient(Capture& capture, const at::Tensor& noise, Backprop mode) {
  const at::Tensor x = capture.input();
  const int64_t n = x.size(0), samples = noise.size(0);
  at::Tensor range = (x.amax({1, 2, 3}) - x.amin({1, 2, 3})).view({n, 1, 1, 1, 1});
  at::Tensor noisy = x.unsqueeze(1) + noise.unsqueeze(0) * range;  // [N,S,3,H,W]
  at::Tensor grads =
      input_gradients(capture, noisy.flatten(0, 1), samples, mode);
  return grads.view(noisy.sizes()).mean(1);
}

}  // namespace method_util

namespace methods {

std::vector<MethodMap> smoothgrad(Capture& capture) {
  const MethodParams& p = capture.params();
  Backprop mode;
  if (p.smooth_of == "saliency") {
    mode = Backprop::kPlain;
  } else if (p.smooth_of == "guided-backprop") {
    mode = Backprop::kGuided;
  } else {
    throw Error(ErrorCode::kUsage,
                "--of '" + p.smooth_of + "': must be saliency or guided-backprop");
  }
  if (p.samples < 1) throw Error(ErrorCode::kUsage, "--samples: must be at least 1");
  if (!(p.noise >= 0)) throw Error(ErrorCode::kUsage, "--noise: must not be negative");
  const at::Tensor x = capture.input();
  auto generator = at::make_generator<at::CPUGeneratorImpl>(p.seed);
  // Drawn on the CPU whatever the device, so that a seed gives the same
  // noise everywhere.
  at::Tensor noise = at::randn({p.samples, x.size(1), x.size(2), x.size(3)}, generator,
                               x.options().device(at::kCPU)) *
                     p.noise;
  noise = noise.to(x.device());
  return {{"", method_util::smooth_gradient(capture, noise, mode)}};
}

}  // namespace methods

}  // namespace cnnviz
