// cnnviz_bench: timings of the compute core alone, on synthetic inputs (no
// image files, no OpenCV), so that it builds and runs wherever LibTorch does.
//
//   cnnviz_bench forward -m MODEL.pt [--batch-size B] [--batches K] [--threads T]
//     the frozen inference forward pass, as `cnnviz classify` runs it
//   cnnviz_bench explain -m MODEL.pt --method M [--batch-size B] [--batches K] [--threads T]
//     method M at every feature stage as `cnnviz M --all-layers` computes it
//     (compute_maps: one capture pass, its backward passes, the maps on the CPU);
//     scripts/bench.py runs guided-gradcam
//   cnnviz_bench fwdbwd -m MODEL [--batch-size B] [--batches K] [--threads T]
//     one forward and one plain backward to the input through the engine
//     (no stages instrumented): the floor every gradient method pays
//   cnnviz_bench sampling -m MODEL.pt [--samples S] [--sample-batch B] [--threads T]
//     one image: every method that runs passes of its own per sample or step
//     (the registry's nested_passes: SmoothGrad with S samples, Integrated
//     Gradients with S steps, batched by B), against one forward + backward
//     of a batch of S images and against S single-image passes. Prints
//     {"smoothgrad_ms", "integrated_gradients_ms", "one_batch_ms",
//     "separate_ms", "<method>_vs_one_batch", "separate_vs_<method>"}, best
//     of --batches.
//   cnnviz_bench gemm [--gemm-size N] [--batches K] [--threads T]
//     one N x N float32 matrix product through LibTorch and its BLAS:
//     {"blas", "best_ms", "gflops"} (2 N^3 operations), best of --batches.
//
// --device cpu|cuda|auto (default cpu) runs it there (TF32 off; each timing
// ends with a device synchronization). --cudnn-benchmark lets cuDNN time its
// convolution algorithms for each shape and keep the fastest (PyTorch's
// torch.backends.cudnn.benchmark); off by default, as in PyTorch.
// CNNVIZ_SYSTEM_MALLOC=1 in the environment leaves glibc's malloc as it
// starts, as in cnnviz itself, to measure what cnnviz::reuse_freed_memory saves.
//
// Prints one JSON line: {"mode", "model", "batch_size", "batches", "threads",
// "ms_per_batch": [...], "best_ms_per_image", "total_ms_per_image"}, after
// --warmup untimed batches (default 1; 0 times a cold process, as a cnnviz
// run over that many batches is).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <torch/cuda.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "cnnviz/core/blas.h"
#include "cnnviz/core/engine.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/methods/compute.h"
#include "cnnviz/methods/layers.h"
#include "cnnviz/methods/methods.h"

namespace {

bool g_sync_cuda = false;

void sync() {
  if (g_sync_cuda) torch::cuda::synchronize();
}

double run_forward(const cnnviz::Model& model, const at::Tensor& x) {
  auto t0 = std::chrono::steady_clock::now();
  at::Tensor logits = model.logits(x);
  (void)logits.sum().item<float>();
  sync();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// One batch of `method` as a run computes it: capture pass, backward passes,
// maps (for each image's top-1 class), moved to the CPU.
double run_explain(const cnnviz::Engine& engine, const cnnviz::MethodDef& method,
                   const at::Tensor& x, const cnnviz::MethodParams& params) {
  auto t0 = std::chrono::steady_clock::now();
  cnnviz::BatchMaps maps = cnnviz::compute_maps(engine, method, x, cnnviz::top_classes(1), params);
  (void)maps.maps.back().back().value.sum().item<float>();
  sync();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Forward + plain backward of the batch x, to the input.
double run_backward(const cnnviz::Engine& engine, const at::Tensor& x) {
  auto t0 = std::chrono::steady_clock::now();
  cnnviz::Pass pass = engine.run(x);
  (void)pass.backward(std::vector<int64_t>(x.size(0), 0), cnnviz::Backprop::kPlain)
      .sum()
      .item<float>();
  sync();
  return ms_since(t0);
}

struct BenchOptions {
  std::string mode = "forward", model_path, method, device = "cpu";
  int batch = 8, batches = 3, threads = 0, warmup = 1, samples = 50, sample_batch = 16;
  int gemm_size = 2048;
  bool cudnn_benchmark = false;
};

void add_options(CLI::App& app, BenchOptions& o) {
  app.add_option("mode", o.mode, "forward, fwdbwd, explain, sampling or gemm")
      ->check(CLI::IsMember({"forward", "fwdbwd", "explain", "sampling", "gemm"}))
      ->capture_default_str();
  app.add_option("-m,--model", o.model_path, "TorchScript or ONNX model file (all modes but gemm)");
  app.add_option("--gemm-size", o.gemm_size, "gemm: the side of the square matrices")
      ->check(CLI::Range(16, 16384));
  app.add_option("--method", o.method, "explain: the method (every feature stage of its layers)");
  app.add_option("--batch-size", o.batch, "Images per batch")->check(CLI::Range(1, 4096));
  app.add_option("--batches", o.batches, "Timed batches")->check(CLI::Range(1, 1000));
  app.add_option("--threads", o.threads, "LibTorch threads (default: every core)");
  app.add_option("--device", o.device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  app.add_option("--warmup", o.warmup, "Untimed batches first")->check(CLI::Range(0, 100));
  app.add_option("--samples", o.samples, "sampling: noise samples and IG steps")
      ->check(CLI::Range(1, 4096));
  app.add_option("--sample-batch", o.sample_batch, "sampling: images per pass")
      ->check(CLI::Range(1, 4096));
  app.add_flag("--cudnn-benchmark", o.cudnn_benchmark, "CUDA: let cuDNN pick algorithms by timing");
}

// The best of `batches` timings of f, after `warmup` untimed calls.
double best_of(int warmup, int batches, const std::function<double()>& f) {
  for (int i = 0; i < warmup; ++i) f();
  double b = 1e300;
  for (int i = 0; i < batches; ++i) b = std::min(b, f());
  return b;
}

// Mode "sampling": the first image of x through every method that runs
// passes of its own per sample or step, against one batch of S copies and
// against S single-image passes.
nlohmann::ordered_json bench_sampling(const cnnviz::Model& model, const at::Tensor& x,
                                      const BenchOptions& o, int used_threads) {
  cnnviz::Engine engine(model, {});
  cnnviz::MethodParams params;
  params.samples = params.steps = o.samples;
  params.sample_batch = o.sample_batch;
  const at::Tensor one = x.slice(0, 0, 1);
  const at::Tensor many = one.expand({o.samples, one.size(1), x.size(2), x.size(3)}).contiguous();
  std::vector<std::pair<std::string, double>> timed;
  for (const cnnviz::MethodDef& m : cnnviz::method_table()) {
    if (!m.nested_passes) continue;
    cnnviz::Engine engine_m(model, cnnviz::method_layers(model, m, {}));
    timed.emplace_back(m.name, best_of(o.warmup, o.batches,
                                       [&] { return run_explain(engine_m, m, one, params); }));
  }
  const double batched = best_of(o.warmup, o.batches, [&] { return run_backward(engine, many); });
  const double separate = best_of(o.warmup, o.batches, [&] {
    double total = 0;
    for (int i = 0; i < o.samples; ++i) total += run_backward(engine, one);
    return total;
  });
  nlohmann::ordered_json out = {{"mode", o.mode},
                                {"model", model.info().name},
                                {"samples", o.samples},
                                {"sample_batch", o.sample_batch},
                                {"threads", used_threads}};
  auto key = [](std::string name) {
    std::replace(name.begin(), name.end(), '-', '_');
    return name;
  };
  for (const auto& [name, t] : timed) out[key(name) + "_ms"] = t;
  out["one_batch_ms"] = batched;
  out["separate_ms"] = separate;
  for (const auto& [name, t] : timed) {
    out[key(name) + "_vs_one_batch"] = t / batched;
    out["separate_vs_" + key(name)] = separate / t;
  }
  return out;
}

// Mode "gemm": the machine's matrix-product rate through this LibTorch and
// the BLAS it loaded, from one float32 square product (2 n^3 operations),
// best of `batches`: the ceiling for models made of matrix products.
nlohmann::ordered_json bench_gemm(const BenchOptions& o, const at::Device& dev, int threads) {
  at::manual_seed(0);
  const int64_t n = o.gemm_size;
  const at::Tensor a = at::randn({n, n}).to(dev), b = at::randn({n, n}).to(dev);
  const double ms = best_of(o.warmup, o.batches, [&] {
    const auto t0 = std::chrono::steady_clock::now();
    (void)at::mm(a, b).sum().item<float>();
    sync();
    return ms_since(t0);
  });
  return {{"mode", o.mode},
          {"device", dev.str()},
          {"blas", cnnviz::loaded_blas().name},
          {"threads", threads},
          {"size", n},
          {"best_ms", ms},
          {"gflops", 2.0 * n * n * n / (ms * 1e6)}};
}

// Modes "forward", "fwdbwd" and "explain" (every feature stage, as --all-layers takes
// them): each timed batch's ms, after the warm-up batches.
std::vector<double> bench_batches(const cnnviz::Model& model, const at::Tensor& x,
                                  const BenchOptions& o) {
  std::vector<double> ms;
  if (o.mode == "forward") {
    for (int i = 0; i < o.warmup; ++i) run_forward(model, x);
    for (int i = 0; i < o.batches; ++i) ms.push_back(run_forward(model, x));
    return ms;
  }
  if (o.mode == "fwdbwd") {
    const cnnviz::Engine engine(model, {});
    for (int i = 0; i < o.warmup; ++i) run_backward(engine, x);
    for (int i = 0; i < o.batches; ++i) ms.push_back(run_backward(engine, x));
    return ms;
  }
  const cnnviz::MethodDef& m = cnnviz::find_method(o.method);
  cnnviz::LayerRequest all;
  all.all_layers = true;
  cnnviz::Engine engine(model, cnnviz::method_layers(model, m, all), std::nullopt, m.lrp,
                        !m.forward_only());
  cnnviz::MethodParams params;
  for (int i = 0; i < o.warmup; ++i) run_explain(engine, m, x, params);
  for (int i = 0; i < o.batches; ++i) ms.push_back(run_explain(engine, m, x, params));
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cnnviz_bench: compute-core timings on synthetic inputs", "cnnviz_bench"};
  BenchOptions o;
  add_options(app, o);
  CLI11_PARSE(app, argc, argv);
  if (o.mode == "explain" && o.method.empty()) {
    std::cerr << "cnnviz_bench: explain needs --method NAME\n";
    return 2;
  }
  if (o.mode != "gemm" && o.model_path.empty()) {
    std::cerr << "cnnviz_bench: " << o.mode << " needs -m MODEL\n";
    return 2;
  }
  try {
    const bool reuse = cnnviz::reuse_freed_memory();
    const at::Device dev = cnnviz::resolve_device(o.device);
    g_sync_cuda = dev.is_cuda();
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setBenchmarkCuDNN(o.cudnn_benchmark);
    if (o.mode == "gemm") {
      std::cout << bench_gemm(o, dev, cnnviz::set_threads(o.threads)).dump() << "\n";
      return 0;
    }
    cnnviz::Model model = cnnviz::Model::load(o.model_path, dev);
    const int used_threads = cnnviz::set_threads(o.threads);
    const int crop = model.info().preprocess.crop;
    at::manual_seed(0);
    at::Tensor x = at::randn({o.batch, model.info().preprocess.channels, crop, crop}).to(dev);
    if (o.mode == "sampling") {
      std::cout << bench_sampling(model, x, o, used_threads).dump() << "\n";
      return 0;
    }
    const std::vector<double> ms = bench_batches(model, x, o);
    nlohmann::ordered_json out = {
        {"mode", o.mode},
        {"model", model.info().name},
        {"device", dev.str()},
        {"cudnn_benchmark", o.cudnn_benchmark},
        {"malloc", reuse ? "reuse" : "system"},
        {"batch_size", o.batch},
        {"batches", o.batches},
        {"threads", used_threads},
        {"ms_per_batch", ms},
        {"best_ms_per_image", *std::min_element(ms.begin(), ms.end()) / o.batch},
        {"total_ms_per_image", std::accumulate(ms.begin(), ms.end(), 0.0) / (o.batch * o.batches)}};
    std::cout << out.dump() << "\n";
  } catch (const cnnviz::Error& e) {
    std::cerr << "cnnviz_bench: " << e.what() << "\n";
    return e.exit_code();
  }
  return 0;
}
