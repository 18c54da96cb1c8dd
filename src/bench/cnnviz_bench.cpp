// cnnviz_bench: timings of the compute core alone, on synthetic inputs (no
// image files, no OpenCV), so that it builds and runs wherever LibTorch does.
//
//   cnnviz_bench forward -m MODEL.pt [--batch-size B] [--batches K] [--threads T]
//     the frozen inference forward pass, as `cnnviz classify` runs it
//   cnnviz_bench explain -m MODEL.pt [--batch-size B] [--batches K] [--threads T]
//     one capture pass tapping every feature layer + a plain and a guided
//     backward + Grad-CAM and guided Grad-CAM maps: `guided-gradcam --all-layers`
//   cnnviz_bench sampling -m MODEL.pt [--samples S] [--sample-batch B] [--threads T]
//     one image: SmoothGrad with S samples and Integrated Gradients with S
//     steps (the registered methods, batched by B), against one forward +
//     backward of a batch of S images and against S single-image passes.
//     Prints {"smoothgrad_ms", "integrated_gradients_ms", "one_batch_ms",
//     "separate_ms", ...}, best of --batches.
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

#include "cnnviz/engine.h"
#include "cnnviz/error.h"
#include "cnnviz/methods.h"
#include "cnnviz/model.h"
#include "cnnviz/runtime.h"

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

double run_explain(const cnnviz::Engine& engine, const at::Tensor& x) {
  auto t0 = std::chrono::steady_clock::now();
  cnnviz::Pass pass = engine.run(x);
  std::vector<int64_t> classes;
  at::Tensor top = pass.logits().argmax(1);
  for (int64_t i = 0; i < top.size(0); ++i) classes.push_back(top[i].item<int64_t>());
  cnnviz::Capture capture(engine, pass, classes);
  std::vector<cnnviz::MethodMap> maps = cnnviz::find_method("guided-gradcam").compute(capture);
  (void)maps.back().value.sum().item<float>();
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

double run_method(const cnnviz::Engine& engine, const at::Tensor& x, const char* method,
                  const cnnviz::MethodParams& params) {
  auto t0 = std::chrono::steady_clock::now();
  cnnviz::Pass pass = engine.run(x);
  cnnviz::Capture capture(engine, pass, {0}, params);
  (void)cnnviz::find_method(method).compute(capture)[0].value.sum().item<float>();
  sync();
  return ms_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cnnviz_bench: compute-core timings on synthetic inputs", "cnnviz_bench"};
  std::string mode = "forward", model_path;
  int batch = 8, batches = 3, threads = 0, warmup = 1, samples = 50, sample_batch = 16;
  app.add_option("mode", mode, "forward, explain or sampling")
      ->check(CLI::IsMember({"forward", "explain", "sampling"}))
      ->capture_default_str();
  app.add_option("-m,--model", model_path, "TorchScript model file")->required();
  app.add_option("--batch-size", batch, "Images per batch")->check(CLI::Range(1, 4096));
  app.add_option("--batches", batches, "Timed batches")->check(CLI::Range(1, 1000));
  app.add_option("--threads", threads, "LibTorch threads (default: every core)");
  std::string device = "cpu";
  app.add_option("--device", device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  app.add_option("--warmup", warmup, "Untimed batches first")->check(CLI::Range(0, 100));
  app.add_option("--samples", samples, "sampling: noise samples and IG steps")
      ->check(CLI::Range(1, 4096));
  app.add_option("--sample-batch", sample_batch, "sampling: images per pass")
      ->check(CLI::Range(1, 4096));
  bool cudnn_benchmark = false;
  app.add_flag("--cudnn-benchmark", cudnn_benchmark, "CUDA: let cuDNN pick algorithms by timing");
  CLI11_PARSE(app, argc, argv);
  try {
    const bool reuse = cnnviz::reuse_freed_memory();
    const at::Device dev = cnnviz::resolve_device(device);
    g_sync_cuda = dev.is_cuda();
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setBenchmarkCuDNN(cudnn_benchmark);
    cnnviz::Model model = cnnviz::Model::load(model_path, dev);
    const int used_threads = cnnviz::set_threads(threads);
    const int crop = model.info().preprocess.crop;
    at::manual_seed(0);
    at::Tensor x = at::randn({batch, 3, crop, crop}).to(dev);
    std::vector<double> ms;
    if (mode == "sampling") {
      cnnviz::Engine engine(model, {});
      cnnviz::MethodParams params;
      params.samples = params.steps = samples;
      params.sample_batch = sample_batch;
      const at::Tensor one = x.slice(0, 0, 1);
      const at::Tensor many = one.expand({samples, 3, crop, crop}).contiguous();
      auto best = [&](const std::function<double()>& f) {
        for (int i = 0; i < warmup; ++i) f();
        double b = 1e300;
        for (int i = 0; i < batches; ++i) b = std::min(b, f());
        return b;
      };
      const double smooth = best([&] { return run_method(engine, one, "smoothgrad", params); });
      const double ig =
          best([&] { return run_method(engine, one, "integrated-gradients", params); });
      const double batched = best([&] { return run_backward(engine, many); });
      const double separate = best([&] {
        double total = 0;
        for (int i = 0; i < samples; ++i) total += run_backward(engine, one);
        return total;
      });
      nlohmann::ordered_json out = {{"mode", mode},
                                    {"model", model.info().name},
                                    {"samples", samples},
                                    {"sample_batch", sample_batch},
                                    {"threads", used_threads},
                                    {"smoothgrad_ms", smooth},
                                    {"integrated_gradients_ms", ig},
                                    {"one_batch_ms", batched},
                                    {"separate_ms", separate},
                                    {"smoothgrad_vs_one_batch", smooth / batched},
                                    {"separate_vs_smoothgrad", separate / smooth}};
      std::cout << out.dump() << "\n";
      return 0;
    }
    if (mode == "forward") {
      for (int i = 0; i < warmup; ++i) run_forward(model, x);
      for (int i = 0; i < batches; ++i) ms.push_back(run_forward(model, x));
    } else {
      // Every feature stage, as --all-layers takes them.
      std::vector<std::string> layers = model.info().feature_layers;
      if (layers.empty()) layers = cnnviz::feature_stages(cnnviz::Engine::describe(model).layers);
      cnnviz::Engine engine(model, layers);
      for (int i = 0; i < warmup; ++i) run_explain(engine, x);
      for (int i = 0; i < batches; ++i) ms.push_back(run_explain(engine, x));
    }
    nlohmann::ordered_json out = {
        {"mode", mode},
        {"model", model.info().name},
        {"device", dev.str()},
        {"cudnn_benchmark", cudnn_benchmark},
        {"malloc", reuse ? "reuse" : "system"},
        {"batch_size", batch},
        {"batches", batches},
        {"threads", used_threads},
        {"ms_per_batch", ms},
        {"best_ms_per_image", *std::min_element(ms.begin(), ms.end()) / batch},
        {"total_ms_per_image", std::accumulate(ms.begin(), ms.end(), 0.0) / (batch * batches)}};
    std::cout << out.dump() << "\n";
  } catch (const cnnviz::Error& e) {
    std::cerr << "cnnviz_bench: " << e.what() << "\n";
    return e.exit_code();
  }
  return 0;
}
