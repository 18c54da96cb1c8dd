// cnnviz_bench: timings of the compute core alone, on synthetic inputs (no
// image files, no OpenCV), so that it builds and runs wherever LibTorch does.
//
//   cnnviz_bench forward -m MODEL.pt [--batch-size B] [--batches K] [--threads T]
//     the frozen inference forward pass, as `cnnviz classify` runs it
//   cnnviz_bench explain -m MODEL.pt [--batch-size B] [--batches K] [--threads T]
//     one capture pass tapping every feature layer + a plain and a guided
//     backward + Grad-CAM and guided Grad-CAM maps: `guided-gradcam --all-layers`
//
// Prints one JSON line: {"mode", "model", "batch_size", "batches", "threads",
// "ms_per_batch": [...], "best_ms_per_image", "total_ms_per_image"}, after
// --warmup untimed batches (default 1; 0 times a cold process, as a cnnviz
// run over that many batches is).
#include <ATen/ATen.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "cnnviz/engine.h"
#include "cnnviz/error.h"
#include "cnnviz/methods.h"
#include "cnnviz/model.h"
#include "cnnviz/runtime.h"

namespace {

double run_forward(const cnnviz::Model& model, const at::Tensor& x) {
  auto t0 = std::chrono::steady_clock::now();
  at::Tensor logits = model.logits(x);
  (void)logits.sum().item<float>();
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
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cnnviz_bench: compute-core timings on synthetic inputs", "cnnviz_bench"};
  std::string mode = "forward", model_path;
  int batch = 8, batches = 3, threads = 0, warmup = 1;
  app.add_option("mode", mode, "forward or explain")
      ->check(CLI::IsMember({"forward", "explain"}))
      ->capture_default_str();
  app.add_option("-m,--model", model_path, "TorchScript model file")->required();
  app.add_option("--batch-size", batch, "Images per batch")->check(CLI::Range(1, 4096));
  app.add_option("--batches", batches, "Timed batches")->check(CLI::Range(1, 1000));
  app.add_option("--threads", threads, "LibTorch threads (default: every core)");
  app.add_option("--warmup", warmup, "Untimed batches first")->check(CLI::Range(0, 100));
  CLI11_PARSE(app, argc, argv);
  try {
    cnnviz::Model model = cnnviz::Model::load(model_path);
    const int used_threads = cnnviz::set_threads(threads);
    const int crop = model.info().preprocess.crop;
    at::manual_seed(0);
    at::Tensor x = at::randn({batch, 3, crop, crop});
    std::vector<double> ms;
    if (mode == "forward") {
      for (int i = 0; i < warmup; ++i) run_forward(model, x);
      for (int i = 0; i < batches; ++i) ms.push_back(run_forward(model, x));
    } else {
      std::vector<std::string> layers = model.info().feature_layers;
      if (layers.empty()) layers.push_back(model.info().gradcam_layer);
      cnnviz::Engine engine(model, layers);
      for (int i = 0; i < warmup; ++i) run_explain(engine, x);
      for (int i = 0; i < batches; ++i) ms.push_back(run_explain(engine, x));
    }
    nlohmann::ordered_json out = {
        {"mode", mode},
        {"model", model.info().name},
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
