#include "cnnviz/core/blas.h"

#include <ATen/Version.h>
#include <dlfcn.h>
#include <link.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "cnnviz/core/model.h"

namespace cnnviz {

namespace {

namespace fs = std::filesystem;

// The object that provides the single-precision matrix product: the one
// LibTorch's calls reach, whatever else is loaded (with the reference
// libblas.so.3 first, OpenBLAS still comes in behind Debian's liblapack.so.3).
std::string blas_object() {
  void* gemm = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info where{};
  if (!gemm || !dladdr(gemm, &where) || !where.dli_fname) return "";
  char resolved[PATH_MAX];
  return realpath(where.dli_fname, resolved) ? std::string(resolved) : where.dli_fname;
}

// The object's own symbol (or its dependencies'), not the process's first.
void* object_symbol(const std::string& path, const char* name) {
  if (path.empty()) return nullptr;
  void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  if (!handle) return nullptr;
  void* sym = dlsym(handle, name);
  dlclose(handle);
  return sym;
}

template <typename F>
F symbol(const std::string& path, const char* name) {
  return reinterpret_cast<F>(object_symbol(path, name));
}

// OpenBLAS says which kernels it chose for this CPU and how it threads.
std::string openblas_name(const std::string& path) {
  auto config = symbol<char* (*)()>(path, "openblas_get_config");
  auto parallel = symbol<int (*)()>(path, "openblas_get_parallel");
  auto core = symbol<char* (*)()>(path, "openblas_get_corename");
  std::string version = config ? config() : "OpenBLAS";
  // "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64": the
  // first two words, then the threading and the kernels in use.
  const size_t second = version.find(' ', version.find(' ') + 1);
  if (second != std::string::npos) version.resize(second);
  const int mode = parallel ? parallel() : -1;
  const char* threads = mode == 0 ? "single-threaded" : mode == 1 ? "pthreads" : "OpenMP";
  std::string name = version + " (" + threads;
  if (core) name += std::string(", ") + core() + " kernels";
  return name + ")";
}

// LibTorch's build configuration line "BLAS_INFO=mkl," names a BLAS it
// carries inside.
std::string built_in_blas() {
  const std::string config = at::show_config();
  const std::string key = "BLAS_INFO=";
  const size_t at = config.find(key);
  if (at == std::string::npos) return "";
  const size_t end = config.find_first_of(", \n", at);
  return config.substr(at + key.size(), end - at - key.size());
}

BlasInfo find_blas() {
  BlasInfo b;
  b.path = blas_object();
  if (symbol<void*>(b.path, "openblas_get_config")) {
    b.name = openblas_name(b.path);
  } else if (auto blis = symbol<const char* (*)()>(b.path, "bli_info_get_version_str")) {
    b.name = std::string("BLIS ") + blis();
  } else if (auto mkl = symbol<void (*)(char*, int)>(b.path, "MKL_Get_Version_String")) {
    char text[256] = {};
    mkl(text, sizeof text - 1);
    b.name = text;
  } else if (!b.path.empty() && fs::path(b.path).parent_path().filename() == "blas") {
    // Debian's netlib reference implementation lives in .../blas/.
    b.name = "reference BLAS (netlib)";
    b.reference = true;
  } else if ((b.path.empty() || fs::path(b.path).filename().string().rfind("libtorch", 0) == 0) &&
             !built_in_blas().empty()) {
    b.name = "built into LibTorch (" + built_in_blas() + ")";
    b.path.clear();
  } else {
    b.name = "unknown BLAS";
  }
  return b;
}

bool multiplies_matrices(const torch::jit::Block* block) {
  static const std::set<std::string> kinds = {
      "aten::linear", "aten::matmul",   "aten::mm",     "aten::bmm",
      "aten::addmm",  "aten::baddbmm",  "aten::addbmm", "aten::einsum",
      "aten::mv",     "aten::bilinear", "aten::addmv",  "aten::_native_multi_head_attention"};
  for (const torch::jit::Node* node : block->nodes()) {
    if (kinds.count(node->kind().toQualString())) return true;
    for (const torch::jit::Block* inner : node->blocks()) {
      if (multiplies_matrices(inner)) return true;
    }
  }
  return false;
}

}  // namespace

const BlasInfo& loaded_blas() {
  static const BlasInfo info = find_blas();
  return info;
}

void set_blas_threads(int threads) {
  const std::string& path = loaded_blas().path;
  if (auto set = symbol<void (*)(int)>(path, "openblas_set_num_threads")) set(threads);
}

bool has_matrix_products(const Model& model) {
  std::shared_ptr<torch::jit::Graph> graph = model.module().get_method("forward").graph()->copy();
  torch::jit::Inline(*graph);
  return multiplies_matrices(graph->block());
}

}  // namespace cnnviz
