#include "cnnviz/core/runtime.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <dlfcn.h>
#include <glob.h>
#include <sched.h>

#include <atomic>

#include "cnnviz/core/blas.h"
#include "cnnviz/core/error.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <c10/util/Exception.h>
#include <torch/cuda.h>

#include <climits>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace cnnviz {

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

int set_threads(int threads) {
  at::set_num_threads(threads > 0 ? threads : available_cores());
  set_blas_threads(at::get_num_threads());
  return at::get_num_threads();
}

int current_threads() { return at::get_num_threads(); }

namespace {

class WarningRouter : public c10::WarningHandler {
 public:
  explicit WarningRouter(std::ostream& err) : err_(err) {}

  void process(const c10::SourceLocation&, const std::string& msg, bool) override {
    if (msg.find("always returns") != std::string::npos &&
        msg.find("Scripted") != std::string::npos) {
      return;
    }
    // LibTorch's own kernels reusing their output buffers inside a model's
    // graph (torchvision's segmenters' upsampling in 1.13): nothing a user
    // can act on.
    if (msg.rfind("An output with one or more elements was resized", 0) == 0) return;
    std::string line = msg.substr(0, msg.find('\n'));
    std::lock_guard<std::mutex> hold(mutex_);
    if (!seen_.insert(line).second) return;
    err_ << "cnnviz: warning: " << line << "\n";
  }

 private:
  std::ostream& err_;
  std::mutex mutex_;
  std::set<std::string> seen_;
};

}  // namespace

void route_torch_warnings(std::ostream& err) {
  static WarningRouter* router = new WarningRouter(err);  // lives as long as the process
  c10::Warning::set_warning_handler(router);
}

bool reuse_freed_memory() {
#if defined(__GLIBC__)
  const char* system = std::getenv("CNNVIZ_SYSTEM_MALLOC");
  if (system && *system && std::string(system) != "0") return false;
  // Serve every block from the heap, never from a mapping of its own, and
  // never shrink the heap on free: the next batch asks for the same sizes.
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
  return false;
#endif
}

namespace {

// The candidates for torchvision's operator library, in order.
std::vector<std::string> torchvision_ops_candidates() {
  const char* env = std::getenv("CNNVIZ_TORCHVISION_OPS");
  if (env != nullptr && *env != '\0') return {env};
  std::vector<std::string> found;
  for (const char* pattern : {"/usr/lib/python3/dist-packages/torchvision/_C*.so",
                              "/usr/local/lib/python3*/dist-packages/torchvision/_C*.so"}) {
    glob_t g{};
    if (glob(pattern, 0, nullptr, &g) == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) found.emplace_back(g.gl_pathv[i]);
    }
    globfree(&g);
  }
  return found;
}

}  // namespace

bool load_torchvision_ops(std::string* tried) {
  static std::mutex mutex;
  static int state = -1;  // -1: not tried; 0: failed; 1: loaded
  static std::string attempts;
  std::lock_guard<std::mutex> lock(mutex);
  if (state < 0) {
    state = 0;
    for (const std::string& path : torchvision_ops_candidates()) {
      // Global: the operators register themselves with LibTorch's dispatcher
      // when the library's static initializers run.
      std::string why;
      if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
        const char* error = dlerror();
        why = error ? error : "cannot load";
      } else if (!c10::Dispatcher::singleton().findSchema({"torchvision::nms", ""})) {
        // Loaded, but its operators went to another LibTorch than this one.
        why = "loaded, but it registered no torchvision::nms here (built for another LibTorch?)";
      } else {
        state = 1;
        break;
      }
      attempts += (attempts.empty() ? "" : "; ") + path + ": " + why;
    }
    if (state == 0 && attempts.empty()) attempts = "no torchvision/_C*.so found";
  }
  if (tried != nullptr) *tried = attempts;
  return state == 1;
}

bool cuda_built() { return at::hasCUDA(); }

namespace {
std::atomic<int64_t> simulated_memory_limit{-1};
}  // namespace

void set_simulated_memory_limit(int64_t images) { simulated_memory_limit = images; }

void simulate_out_of_memory(int64_t batch_size) {
  const int64_t limit = simulated_memory_limit;
  if (limit >= 0 && batch_size > limit) {
    throw OutOfMemory("out of memory (simulated: a limit of " + std::to_string(limit) +
                      " images) for a batch of " + std::to_string(batch_size));
  }
}

at::Device resolve_device(const std::string& name) {
  if (name == "cpu") return at::Device(at::kCPU);
  const bool available = torch::cuda::is_available();
  if (name == "auto") return available ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (!available) {
      throw Error(ErrorCode::kUnsupported,
                  "--device " + name + ": CUDA is not available (" +
                      (cuda_built() ? std::string("no GPU found")
                                    : std::string("this LibTorch is built without CUDA; see "
                                                  "docs/models.md, 'GPU'")) +
                      "); use --device cpu or auto");
    }
    int index = 0;
    if (name.size() > 5) {
      const std::string digits = name.substr(5);
      if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
          digits.size() > 3) {
        throw Error(ErrorCode::kUsage, "--device " + name + ": expected cuda:N");
      }
      index = std::stoi(digits);
    }
    const int count = static_cast<int>(torch::cuda::device_count());
    if (index >= count) {
      throw Error(ErrorCode::kUnsupported,
                  "--device " + name + ": only " + std::to_string(count) + " GPU(s) present");
    }
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw Error(ErrorCode::kUsage, "--device '" + name + "': expected cpu, cuda, cuda:N or auto");
}

}  // namespace cnnviz
