// RISE (Petsiuk, Das and Saenko 2018, "RISE: Randomized Input Sampling for
// Explanation of Black-box Models"): the saliency of a pixel is the expected
// score of the input under random masks that keep it.
//
// Each of --masks masks is a --grid s x s grid of cells, each kept (1) with
// probability --p, else 0; it is upsampled (bilinear, half-pixel centres) to
// (s + 1) C x (s + 1) C pixels, C = ceil(max(H, W) / s), and cropped to
// H x W at a random shift (dy, dx), each in [0, C): soft edges at random
// offsets. saliency = 1 / (N p) sum_i score(x * M_i) M_i, [N,H,W] at the
// input's resolution. As in the authors' code the mask multiplies the
// normalized input (a masked pixel takes the normalization's mean colour)
// and the score is the masked image's softmax probability (--score picks
// another).
//
// The masks come from --seed with the CPU generator, in this order: the
// cells, rand([N, s, s]) < p; then the shifts, randint(0, C, [N, 2]) as
// (dy, dx). The same seed gives the same masks on every device and for every
// image. They are upsampled --sample-batch at a time and run through the
// model's frozen inference module (no autograd); memory does not grow with N.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "cnnviz/core/error.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz {

namespace method_util {

RandomMasks::RandomMasks(const MethodParams& p, int64_t height, int64_t width)
    : height_(height), width_(width) {
  if (p.masks < 1) throw Error(ErrorCode::kUsage, "--masks: must be at least 1");
  if (p.grid < 1) throw Error(ErrorCode::kUsage, "--grid: must be at least 1");
  if (!(p.keep > 0 && p.keep <= 1)) throw Error(ErrorCode::kUsage, "--p: must be in (0, 1]");
  const int64_t s = p.grid;
  const int64_t cell = (std::max(height, width) + s - 1) / s;
  up_ = (s + 1) * cell;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(p.seed);
  cells_ = (at::rand({p.masks, s, s}, generator, at::kFloat) < p.keep).to(at::kFloat);
  shifts_ = at::randint(0, cell, {p.masks, 2}, generator, at::kLong);
}

at::Tensor RandomMasks::chunk(int64_t start, int64_t end) const {
  const at::Tensor big = at::upsample_bilinear2d(cells_.slice(0, start, end).unsqueeze(1),
                                                 {up_, up_}, /*align_corners=*/false);
  const auto shift = shifts_.accessor<int64_t, 2>();
  std::vector<at::Tensor> cropped;
  for (int64_t i = start; i < end; ++i) {
    cropped.push_back(big[i - start][0]
                          .slice(0, shift[i][0], shift[i][0] + height_)
                          .slice(1, shift[i][1], shift[i][1] + width_));
  }
  return at::stack(cropped);
}

at::Tensor mask_saliency(Capture& capture,
                         const std::function<at::Tensor(int64_t, const at::Tensor&)>& weigh) {
  const MethodParams& p = capture.params();
  const at::Tensor x = capture.input().to(at::kCPU);
  const int64_t n = x.size(0), height = x.size(2), width = x.size(3);
  const RandomMasks random(p, height, width);
  const int64_t chunk = std::max(1, p.sample_batch);
  at::Tensor sums = at::zeros({n, height, width}, at::kDouble);
  for (int64_t start = 0; start < random.count(); start += chunk) {
    const at::Tensor masks = random.chunk(start, std::min(random.count(), start + chunk));  // [c,H,W]
    for (int64_t j = 0; j < n; ++j) {
      if (capture.classes()[static_cast<size_t>(j)] == kNoTarget) continue;
      // In the weights' own precision (RISE's scores float32, D-RISE's float64).
      const at::Tensor w = weigh(j, x[j].unsqueeze(0) * masks.unsqueeze(1));
      sums[j] += (w.view({-1, 1, 1}) * masks.to(w.scalar_type())).sum(0).to(at::kDouble);
    }
  }
  const at::Tensor saliency = (sums / (static_cast<double>(p.masks) * p.keep)).to(at::kFloat);
  return saliency.to(capture.input().device());
}

}  // namespace method_util

namespace methods {

std::vector<MethodMap> rise(Capture& capture) {
  const Score score = capture.params().score.value_or(Score{ScoreKind::kProbability, false});
  return {{"", method_util::mask_saliency(capture, [&](int64_t j, const at::Tensor& masked) {
             return capture.variant_scores(j, masked, capture.classes()[static_cast<size_t>(j)],
                                           score);
           })}};
}

}  // namespace methods

}  // namespace cnnviz
