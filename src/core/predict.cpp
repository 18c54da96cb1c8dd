#include "cnnviz/core/predict.h"

#include <ATen/ATen.h>

#include <string>

#include "cnnviz/core/error.h"

namespace cnnviz {

std::vector<std::vector<Prediction>> top_k(const at::Tensor& logits, int k) {
  if (logits.dim() != 2) {
    throw Error(ErrorCode::kRuntime,
                "model output has " + std::to_string(logits.dim()) + " dimensions, expected 2");
  }
  const int64_t classes = logits.size(1);
  if (k < 1 || k > classes) {
    throw Error(ErrorCode::kUsage, "-k " + std::to_string(k) + ": must be between 1 and " +
                                       std::to_string(classes) + " (the model's classes)");
  }
  // Softmax in double so that probabilities of tiny classes keep their order.
  at::Tensor probs = at::softmax(logits.to(at::kDouble), 1).contiguous();
  // A stable descending sort keeps the lower index first among equal values.
  at::Tensor order = std::get<1>(probs.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
  auto p = probs.accessor<double, 2>();
  auto o = order.accessor<int64_t, 2>();
  std::vector<std::vector<Prediction>> result(static_cast<size_t>(logits.size(0)));
  for (int64_t n = 0; n < logits.size(0); ++n) {
    for (int i = 0; i < k; ++i) {
      int64_t c = o[n][i];
      result[n].push_back({c, p[n][c]});
    }
  }
  return result;
}

}  // namespace cnnviz
