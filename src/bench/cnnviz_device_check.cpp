// cnnviz_device_check: every registered method on one device against the
// same method on another (default: CUDA against the CPU), on synthetic
// inputs, for the models given. Core only (no OpenCV, no CLI11), so that it
// builds and runs on a GPU machine that has nothing but a pip PyTorch.
//
//   cnnviz_device_check [--device D] [--against D] [--batch N]
//                       [--dtype float32|float64] [--skip-per-channel] [--size N]
//                       MODEL.pt...
//
// Per model: a seeded random batch of N (default 2) images of the model's crop
// size, target classes = the top-1 on the reference device, layers = the
// default layer and the first feature stage (Score-CAM: the first stage
// only). TF32 is turned off on CUDA.
//
// Two questions, two dtypes:
//  - float64 (model and input converted): is it the same computation?
//    Rounding differences are ~1e-16, too small to flip a ReLU gate or a
//    max-pool choice, so every map must agree to max |a - b| <= 1e-6 * max |b|.
//  - float32 (what cnnviz runs): how close are the maps a user gets? GPU
//    kernels use other algorithms and summation orders; in a network with
//    random weights, a last-bit change of a pre-activation flips a ReLU gate
//    somewhere, and gradients that pass many gates (input gradients, the
//    first stages) move by up to ~1%. The tolerance is relative L2 error
//    <= 2e-2, or, for a map that is ill-conditioned on the reference device
//    itself, <= 4x the change that a 1-ulp change of the input makes there
//    (measured each time, printed as "1-ulp").
// --size N runs N x N inputs instead of the model's crop (ctest's
// CPU-against-CPU runs: the plumbing is the same at a quarter of the work).
// --skip-per-channel leaves out the methods with a forward pass per channel
// (the CPU-against-CPU float64 run in ctest: a third of its time, and the
// float32 run covers them).
// Prints one line per map and exits 1 if any exceeds its tolerance.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <torch/csrc/jit/api/module.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cnnviz/compute.h"
#include "cnnviz/engine.h"
#include "cnnviz/error.h"
#include "cnnviz/layers.h"
#include "cnnviz/methods.h"
#include "cnnviz/model.h"
#include "cnnviz/runtime.h"

namespace {

struct Maps {
  std::vector<cnnviz::MethodMap> maps;
  std::string refused;  // the error, when the method refuses the model
};

Maps compute(const cnnviz::Model& model, const cnnviz::MethodDef& method,
             const std::vector<std::string>& layers, const at::Tensor& x,
             const std::vector<int64_t>& classes) {
  Maps out;
  try {
    cnnviz::LayerRequest request;
    request.layers = layers;
    cnnviz::Engine engine(model, cnnviz::method_layers(model, method, request), std::nullopt,
                          method.lrp);
    cnnviz::MethodParams params;
    params.samples = params.steps = 4;
    params.sample_batch = 8;
    params.masks = 16;                   // RISE
    params.window = params.stride = 56;  // occlusion: 4 x 4 windows
    params.mean = model.info().preprocess.mean;
    params.std = model.info().preprocess.std;
    out.maps =
        cnnviz::compute_maps(engine, method, x, cnnviz::given_classes(classes), params).maps.at(0);
  } catch (const cnnviz::Error& e) {
    if (e.code() != cnnviz::ErrorCode::kUnsupported) throw;
    out.refused = e.what();
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "cuda", against = "cpu";
  int64_t batch = 2;
  std::string dtype = "float32";
  bool skip_per_channel = false;
  int size = 0;  // 0: the model's crop
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--device" || a == "--against" || a == "--batch" || a == "--dtype" ||
         a == "--size") &&
        i + 1 < argc) {
      const std::string v = argv[++i];
      if (a == "--device") device = v;
      if (a == "--against") against = v;
      if (a == "--batch") batch = std::stoll(v);
      if (a == "--dtype") dtype = v;
      if (a == "--size") size = std::stoi(v);
    } else if (a == "--skip-per-channel") {
      skip_per_channel = true;
    } else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: cnnviz_device_check [--device D] [--against D] [--batch N] [--dtype "
          "float32|float64] [--skip-per-channel] [--size N] MODEL.pt...\n");
      return 0;
    } else {
      models.push_back(a);
    }
  }
  if (dtype != "float32" && dtype != "float64") {
    std::fprintf(stderr, "cnnviz_device_check: --dtype %s: must be float32 or float64\n",
                 dtype.c_str());
    return 2;
  }
  const bool f64 = dtype == "float64";
  if (models.empty()) {
    std::fprintf(stderr, "cnnviz_device_check: no model given (--help)\n");
    return 2;
  }
  int failures = 0, checked = 0;
  try {
    const at::Device dev = cnnviz::resolve_device(device), ref = cnnviz::resolve_device(against);
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
    cnnviz::set_threads(0);
    for (const std::string& path : models) {
      cnnviz::Model a = cnnviz::Model::load(path, dev), b = cnnviz::Model::load(path, ref);
      const int crop = size > 0 ? size : b.info().preprocess.crop;
      // Stages are found by a float32 probe, before any conversion.
      const std::vector<std::string> stages = cnnviz::feature_layers(b);
      if (f64) {
        a.module().to(at::kDouble);
        b.module().to(at::kDouble);
      }
      at::manual_seed(0);
      const at::Tensor x = at::randn({batch, b.info().preprocess.channels, crop, crop})
                               .to(f64 ? at::kDouble : at::kFloat);
      // The same input moved by one ulp (towards +inf): the reference
      // device's own sensitivity to last-bit changes.
      const at::Tensor x_ulp = at::nextafter(x, at::full_like(x, INFINITY));
      std::vector<int64_t> classes;
      const at::Tensor top = b.logits(x).argmax(1);
      for (int64_t i = 0; i < batch; ++i) classes.push_back(top[i].item<int64_t>());
      std::vector<std::string> layers = {stages.front()};
      const std::string last = cnnviz::default_layer(b);
      for (const cnnviz::MethodDef& method : cnnviz::method_table()) {
        if (skip_per_channel && method.forward_per_channel) continue;
        std::vector<std::string> these = layers;
        // A forward pass per channel: one layer is enough to compare.
        if (!method.forward_per_channel && last != layers.front()) {
          these.push_back(last);
        }
        Maps got = compute(a, method, these, x, classes);
        Maps want = compute(b, method, these, x, classes);
        if (!got.refused.empty() || !want.refused.empty()) {
          const bool same = got.refused == want.refused;
          std::printf("%-16s %-22s refused on %s: %s\n", b.info().name.c_str(), method.name.c_str(),
                      same ? "both" : "one device only", want.refused.c_str());
          failures += same ? 0 : 1;
          continue;
        }
        Maps moved;
        if (!f64) moved = compute(b, method, these, x_ulp, classes);
        for (size_t m = 0; m < want.maps.size(); ++m) {
          const at::Tensor g = got.maps[m].value.to(at::kDouble);
          const at::Tensor w = want.maps[m].value.to(at::kDouble);
          const double scale = w.abs().max().item<double>();
          const double max_diff = (g - w).abs().max().item<double>();
          const double norm = std::max(1e-300, w.norm().item<double>());
          const double rel_l2 = (g - w).norm().item<double>() / norm;
          bool ok;
          std::string floor;
          if (f64) {
            ok = max_diff <= 1e-6 * scale + 1e-300;
          } else {
            const double ulp =
                (moved.maps[m].value.to(at::kDouble) - w).norm().item<double>() / norm;
            ok = rel_l2 <= 2e-2 || rel_l2 <= 4 * ulp;
            char buf[64];
            std::snprintf(buf, sizeof buf, ", 1-ulp %.3g", ulp);
            floor = buf;
          }
          ++checked;
          failures += ok ? 0 : 1;
          std::printf("%-16s %-22s %-24s max diff %.3g of scale %.3g, rel L2 %.3g%s  %s\n",
                      b.info().name.c_str(), method.name.c_str(), want.maps[m].layer.c_str(),
                      max_diff, scale, rel_l2, floor.c_str(), ok ? "ok" : "FAIL");
        }
      }
    }
  } catch (const cnnviz::Error& e) {
    std::fprintf(stderr, "cnnviz_device_check: %s\n", e.what());
    return e.exit_code();
  }
  std::printf(
      "{\"device\": \"%s\", \"against\": \"%s\", \"dtype\": \"%s\", \"maps\": %d, "
      "\"failures\": %d}\n",
      device.c_str(), against.c_str(), dtype.c_str(), checked, failures);
  return failures == 0 ? 0 : 1;
}
