// Process-wide LibTorch settings.
#ifndef CNNVIZ_CORE_RUNTIME_H_
#define CNNVIZ_CORE_RUNTIME_H_

#include <c10/core/Device.h>

#include <cstdint>
#include <ostream>
#include <string>

namespace cnnviz {

// Sets LibTorch's intra-op thread count, and the BLAS's: `threads` when > 0,
// else every core this process may run on. LibTorch would otherwise start
// with one thread on small machines. Returns the count in force afterwards.
int set_threads(int threads);

// Cores this process may run on (honours taskset and cgroup cpusets), at
// least 1.
int available_cores();

// LibTorch's intra-op thread count now in force.
int current_threads();

// Makes the C library keep freed memory for reuse rather than hand it back
// to the kernel. LibTorch's CPU allocator takes every tensor from malloc, and
// glibc serves blocks over its mmap threshold (at most 32 MiB) with a fresh
// mapping that it unmaps on free, so without this every large activation of
// every batch costs a page fault per 4 KiB touched: a third of squeezenet's
// forward time at batch 16 on the 2-core development machine. Peak memory is
// unchanged (freed blocks are reused by the next batch); callers that want
// memory back between batches call malloc_trim. Does nothing without glibc
// or with CNNVIZ_SYSTEM_MALLOC=1 in the environment (to measure the
// difference); returns whether it changed anything.
bool reuse_freed_memory();

// The device named by `name`: "cpu", "cuda", "cuda:N", or "auto" (CUDA when
// LibTorch has it and a GPU is present, else the CPU). Throws
// Error(kUnsupported) for CUDA when it is not available, saying why, and
// Error(kUsage) for other names.
at::Device resolve_device(const std::string& name);

// Test seam: after set_simulated_memory_limit(N) (N >= 0),
// simulate_out_of_memory() throws OutOfMemory for batches of more than N
// images, as a GPU that ran out of memory would; how the tests exercise the
// retry with smaller batches on machines without a GPU. Nothing happens
// unless a front end set a limit (the CLI does for its tests: src/cli/main.cpp).
void set_simulated_memory_limit(int64_t images);
void simulate_out_of_memory(int64_t batch_size);

// Routes LibTorch's warnings (TORCH_WARN, and warnings.warn compiled into a
// TorchScript model) to `err` as one line each, "cnnviz: warning: ...",
// once per distinct message, instead of glog's multi-line output. Drops the
// notes of torchvision's scripted GoogLeNet and Inception3 that they "always
// return a tuple": cnnviz takes the logits from the tuple's first element.
// Call once, before any model runs; `err` must outlive the process's use of
// LibTorch.
void route_torch_warnings(std::ostream& err);

// Loads torchvision's compiled operators (torchvision::nms, roi_align, with
// their autograd), which LibTorch lacks and torchvision's two-stage
// detectors call, from python3-torchvision's library: $CNNVIZ_TORCHVISION_OPS
// when set, else the first of /usr/lib/python3/dist-packages/torchvision/_C*.so
// and /usr/local/lib/python3*/dist-packages/torchvision/_C*.so. Returns
// whether they are loaded (at most one attempt per process); `tried`, when
// given, gets what was tried and why it failed.
bool load_torchvision_ops(std::string* tried = nullptr);

// True when this LibTorch was built with CUDA (whether or not a GPU is
// present).
bool cuda_built();

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_RUNTIME_H_
