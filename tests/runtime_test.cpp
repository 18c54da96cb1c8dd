#include "cnnviz/core/runtime.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <dlfcn.h>
#include <sys/resource.h>

namespace cnnviz {
namespace {

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// The page faults of one "batch": the forward pass of a small CNN at batch
// 16 on 224x224 inputs, whose first activation (51 MiB) is over the largest
// block glibc ever serves from its heap by default (32 MiB).
long faults_of_a_batch() {
  const long before = minor_faults();
  at::Tensor y = at::conv2d(at::ones({16, 3, 224, 224}), at::full({16, 3, 3, 3}, 0.01), {}, 1, 1);
  y = at::max_pool2d(at::relu(y), 2);
  y = at::conv2d(y, at::full({32, 16, 3, 3}, 0.01), {}, 1, 1);
  y = at::max_pool2d(at::relu(y), 2);
  EXPECT_GT(y.sum().item<float>(), 0.0f);
  return minor_faults() - before;
}

// One test, because reuse_freed_memory() cannot be undone in a process: the
// control runs first, with malloc as it starts. (ctest runs each test in a
// process of its own.)
TEST(RuntimeTest, ABatchReusesThePreviousBatchsMemory) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "reuse_freed_memory() tunes glibc's malloc only";
#endif
  const long first_activation_pages = 16L * 16 * 224 * 224 * 4 / 4096;

  faults_of_a_batch();
  const long as_started = faults_of_a_batch();
  // glibc maps the large activations afresh each time and faults them in.
  EXPECT_GT(as_started, first_activation_pages);

  if (!reuse_freed_memory()) GTEST_SKIP() << "CNNVIZ_SYSTEM_MALLOC is set";
  faults_of_a_batch();
  const long reused = faults_of_a_batch();
  EXPECT_LT(reused, as_started / 4) << "as started: " << as_started << " page faults";
}

// --threads governs the BLAS's threads as well as LibTorch's (an OpenBLAS
// with its own pthreads pool would otherwise keep every core).
TEST(RuntimeTest, ThreadsGovernTheBlasToo) {
  auto get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (get == nullptr) GTEST_SKIP() << "the loaded BLAS is not OpenBLAS";
  EXPECT_EQ(set_threads(1), 1);
  EXPECT_EQ(get(), 1);
  EXPECT_EQ(set_threads(2), 2);
  EXPECT_EQ(get(), 2);
}

}  // namespace
}  // namespace cnnviz
