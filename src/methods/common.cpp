#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <algorithm>
#include <cmath>

#include "cnnviz/core/error.h"
#include "cnnviz/core/feature_map.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz::method_util {

at::Tensor feature_map(Capture& capture, size_t i) {
  return to_feature_map(capture.activation(i), capture.layers()[i],
                        capture.engine().model().info().name);
}

at::Tensor feature_gradient(Capture& capture, size_t i) {
  return to_feature_map(capture.layer_gradient(i), capture.layers()[i],
                        capture.engine().model().info().name);
}

at::Tensor gradcam(Capture& capture, size_t i) {
  const at::Tensor a = feature_map(capture, i);
  at::Tensor weights = feature_gradient(capture, i).mean({2, 3}, /*keepdim=*/true);
  return at::relu((weights * a).sum(1));
}

at::Tensor input_gradients(Capture& capture, const at::Tensor& inputs, int64_t copies,
                           Backprop mode) {
  const int64_t m = inputs.size(0);
  const int64_t chunk = std::max(1, capture.params().sample_batch);
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < m; start += chunk) {
    const int64_t end = std::min(m, start + chunk);
    std::vector<int64_t> rows, classes;
    for (int64_t r = start; r < end; ++r) {
      rows.push_back(r / copies);
      classes.push_back(capture.classes()[static_cast<size_t>(r / copies)]);
    }
    Pass sub = capture.pass().nested(inputs.slice(0, start, end), rows);
    parts.push_back(sub.backward(classes, mode, capture.params().score.value_or(Score{})));
  }
  return at::cat(parts);
}

}  // namespace cnnviz::method_util
