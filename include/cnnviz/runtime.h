// Process-wide LibTorch settings.
#ifndef CNNVIZ_RUNTIME_H_
#define CNNVIZ_RUNTIME_H_

namespace cnnviz {

// Sets LibTorch's intra-op thread count: `threads` when > 0, else every core
// this process may run on. LibTorch would otherwise start with one thread on
// small machines. Returns the count in force afterwards.
int set_threads(int threads);

// LibTorch's intra-op thread count now in force.
int current_threads();

}  // namespace cnnviz

#endif  // CNNVIZ_RUNTIME_H_
