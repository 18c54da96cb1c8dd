#include "arrays.h"

#include <ATen/ATen.h>

namespace cnnviz {

FloatArray to_float_array(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kFloat).contiguous();
  const float* p = c.data_ptr<float>();
  return {c.sizes().vec(), std::vector<float>(p, p + c.numel())};
}

}  // namespace cnnviz
