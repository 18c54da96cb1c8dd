// Turning logits into ranked class predictions.
#ifndef CNNVIZ_CORE_PREDICT_H_
#define CNNVIZ_CORE_PREDICT_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace cnnviz {

struct Prediction {
  int64_t index = 0;         // class index
  double probability = 0.0;  // softmax over all classes
};

// logits: [N,C] float. Returns, for each of the N rows, the k classes of
// highest probability in decreasing order (ties: lower index first).
// Throws Error(kUsage) unless 1 <= k <= C.
std::vector<std::vector<Prediction>> top_k(const at::Tensor& logits, int k);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_PREDICT_H_
