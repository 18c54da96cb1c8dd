// Maps leaving LibTorch for the writers: a tensor as a FloatArray (io/npy.h),
// which rendering and the .npy writer take. Internal to src/run/.
#ifndef CNNVIZ_SRC_RUN_ARRAYS_H_
#define CNNVIZ_SRC_RUN_ARRAYS_H_

#include <ATen/core/Tensor.h>

#include "cnnviz/io/npy.h"

namespace cnnviz {

// `t` (any device, any floating dtype) as float32 in C order, on the CPU.
FloatArray to_float_array(const at::Tensor& t);

}  // namespace cnnviz

#endif  // CNNVIZ_SRC_RUN_ARRAYS_H_
