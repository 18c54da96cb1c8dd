// Occlusion (Zeiler and Fergus 2014, "Visualizing and Understanding
// Convolutional Networks", section 4.2): cover a window of the input and
// watch the score fall. Square windows of --window pixels slide over the
// input with --stride; where the last step would leave a strip of the
// bottom or right border uncovered, one more row (column) of windows is
// placed flush with that border, so every pixel is covered. The covered
// pixels take the fill: "mean" (0 in the normalized input: the
// normalization's mean colour), "black" ((0 - mean) / std) or "blur" (a
// Gaussian blur of the input, --blur-sigma).
//
// map[p] = mean over the windows covering p of score(x) - score(x with the
// window filled): a signed [N,H,W] map at the input's resolution, positive
// where covering lowers the score. Both scores come from the model's frozen
// inference module (no autograd), the occluded copies in batches of
// --sample-batch; the sums accumulate batch by batch, so memory does not grow
// with the number of windows.
#include <ATen/ATen.h>

#include <string>

#include "cnnviz/core/error.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

namespace {

// Top (left) edges of the windows along one side.
std::vector<int64_t> window_starts(int64_t size, int64_t window, int64_t stride) {
  std::vector<int64_t> starts;
  for (int64_t p = 0; p + window <= size; p += stride) starts.push_back(p);
  if (starts.empty() || starts.back() + window < size) starts.push_back(size - window);
  return starts;
}

}  // namespace

void check_occlusion(const MethodParams& p, int64_t height, int64_t width) {
  const int64_t side = std::min(height, width);
  if (p.window < 1 || p.window > side) {
    throw Error(ErrorCode::kUsage, "--window " + std::to_string(p.window) + ": must be from 1 to " +
                                       std::to_string(side) + " (the model's input is " +
                                       std::to_string(width) + "x" + std::to_string(height) + ")");
  }
  if (p.stride < 1 || p.stride > p.window) {
    throw Error(ErrorCode::kUsage, "--stride " + std::to_string(p.stride) +
                                       ": must be from 1 to the window (" +
                                       std::to_string(p.window) + "), or pixels go uncovered");
  }
}

std::vector<MethodMap> occlusion(Capture& capture) {
  const MethodParams& p = capture.params();
  const at::Tensor x = capture.input().to(at::kCPU);
  const int64_t n = x.size(0), height = x.size(2), width = x.size(3);
  check_occlusion(p, height, width);
  const at::Tensor fill = method_util::reference_image(x, p.fill, p, "--fill");
  const std::vector<int64_t> ys = window_starts(height, p.window, p.stride);
  const std::vector<int64_t> xs = window_starts(width, p.window, p.stride);
  std::vector<std::pair<int64_t, int64_t>> windows;
  for (int64_t y : ys) {
    for (int64_t x0 : xs) windows.emplace_back(y, x0);
  }
  const int64_t w = p.window;
  at::Tensor count = at::zeros({height, width});
  for (const auto& [y, x0] : windows) count.slice(0, y, y + w).slice(1, x0, x0 + w) += 1;

  const Score score = p.score.value_or(Score{});
  const int64_t chunk = std::max(1, p.sample_batch);
  std::vector<at::Tensor> maps;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t cls = capture.classes()[static_cast<size_t>(j)];
    const at::Tensor image = x.slice(0, j, j + 1);
    const double base = capture.variant_scores(j, image, cls, score)[0].item<double>();
    at::Tensor sum = at::zeros({height, width}, at::kDouble);
    for (size_t start = 0; start < windows.size(); start += static_cast<size_t>(chunk)) {
      const size_t end = std::min(windows.size(), start + static_cast<size_t>(chunk));
      at::Tensor batch = image.repeat({static_cast<int64_t>(end - start), 1, 1, 1});
      for (size_t k = start; k < end; ++k) {
        const auto [y, x0] = windows[k];
        batch[static_cast<int64_t>(k - start)]
            .slice(1, y, y + w)
            .slice(2, x0, x0 + w)
            .copy_(fill[j].slice(1, y, y + w).slice(2, x0, x0 + w));
      }
      const at::Tensor scores = capture.variant_scores(j, batch, cls, score).to(at::kDouble);
      for (size_t k = start; k < end; ++k) {
        const auto [y, x0] = windows[k];
        sum.slice(0, y, y + w).slice(1, x0, x0 + w) +=
            base - scores[static_cast<int64_t>(k - start)].item<double>();
      }
    }
    maps.push_back((sum / count).to(at::kFloat));
  }
  return {{"", at::stack(maps).to(capture.input().device())}};
}

}  // namespace cnnviz::methods
