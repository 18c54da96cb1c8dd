#include "cnnviz/runtime.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <thread>

namespace cnnviz {

namespace {

// Cores this process may run on (honours taskset/cgroup cpusets), at least 1.
int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

}  // namespace

int set_threads(int threads) {
  at::set_num_threads(threads > 0 ? threads : available_cores());
  return at::get_num_threads();
}

int current_threads() { return at::get_num_threads(); }

}  // namespace cnnviz
