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

#include "cnnviz/core/engine.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/methods/compute.h"
#include "cnnviz/methods/layers.h"
#include "cnnviz/methods/methods.h"

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
                          method.lrp, !method.forward_only());
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

struct CheckOptions {
  std::string device = "cuda", against = "cpu";
  int64_t batch = 2;
  std::string dtype = "float32";
  bool skip_per_channel = false;
  int size = 0;  // 0: the model's crop
  std::vector<std::string> models;
  bool help = false;
};

// By hand: a machine with nothing but a pip PyTorch has no CLI11.
CheckOptions parse_args(int argc, char** argv) {
  CheckOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--device" || a == "--against" || a == "--batch" || a == "--dtype" ||
         a == "--size") &&
        i + 1 < argc) {
      const std::string v = argv[++i];
      if (a == "--device") o.device = v;
      if (a == "--against") o.against = v;
      if (a == "--batch") o.batch = std::stoll(v);
      if (a == "--dtype") o.dtype = v;
      if (a == "--size") o.size = std::stoi(v);
    } else if (a == "--skip-per-channel") {
      o.skip_per_channel = true;
    } else if (a == "-h" || a == "--help") {
      o.help = true;
      break;
    } else {
      o.models.push_back(a);
    }
  }
  return o;
}

struct Tally {
  int checked = 0, failures = 0;

  Tally& operator+=(const Tally& t) {
    checked += t.checked;
    failures += t.failures;
    return *this;
  }
};

// The inputs every method of a model gets on both devices.
struct Inputs {
  at::Tensor x;
  at::Tensor x_ulp;  // x moved by one ulp (towards +inf)
  std::vector<int64_t> classes;
};

// One map against the reference device's; prints its line. `moved`: the
// reference's map for inputs.x_ulp (float32 only).
bool check_map(const std::string& model, const std::string& method, const at::Tensor& got,
               const cnnviz::MethodMap& want, const at::Tensor& moved, bool f64) {
  const at::Tensor g = got.to(at::kDouble);
  const at::Tensor w = want.value.to(at::kDouble);
  const double scale = w.abs().max().item<double>();
  const double max_diff = (g - w).abs().max().item<double>();
  const double norm = std::max(1e-300, w.norm().item<double>());
  const double rel_l2 = (g - w).norm().item<double>() / norm;
  bool ok;
  std::string floor;
  if (f64) {
    ok = max_diff <= 1e-6 * scale + 1e-300;
  } else {
    const double ulp = (moved.to(at::kDouble) - w).norm().item<double>() / norm;
    ok = rel_l2 <= 2e-2 || rel_l2 <= 4 * ulp;
    char buf[64];
    std::snprintf(buf, sizeof buf, ", 1-ulp %.3g", ulp);
    floor = buf;
  }
  std::printf("%-16s %-22s %-24s max diff %.3g of scale %.3g, rel L2 %.3g%s  %s\n", model.c_str(),
              method.c_str(), want.layer.c_str(), max_diff, scale, rel_l2, floor.c_str(),
              ok ? "ok" : "FAIL");
  return ok;
}

// Every map of `method` at `layers`: model a (on the device) against b (on
// the reference device). A refusal passes when both devices refuse alike.
Tally check_method(const cnnviz::Model& a, const cnnviz::Model& b, const cnnviz::MethodDef& method,
                   const std::vector<std::string>& layers, const Inputs& in, bool f64) {
  Tally t;
  Maps got = compute(a, method, layers, in.x, in.classes);
  Maps want = compute(b, method, layers, in.x, in.classes);
  if (!got.refused.empty() || !want.refused.empty()) {
    const bool same = got.refused == want.refused;
    std::printf("%-16s %-22s refused on %s: %s\n", b.info().name.c_str(), method.name.c_str(),
                same ? "both" : "one device only", want.refused.c_str());
    t.failures += same ? 0 : 1;
    return t;
  }
  Maps moved;
  if (!f64) moved = compute(b, method, layers, in.x_ulp, in.classes);
  for (size_t m = 0; m < want.maps.size(); ++m) {
    const bool ok = check_map(b.info().name, method.name, got.maps[m].value, want.maps[m],
                              f64 ? at::Tensor() : moved.maps[m].value, f64);
    ++t.checked;
    t.failures += ok ? 0 : 1;
  }
  return t;
}

// Every registered method on one model, loaded on both devices.
Tally check_model(const std::string& path, const at::Device& dev, const at::Device& ref,
                  const CheckOptions& o) {
  const bool f64 = o.dtype == "float64";
  cnnviz::Model a = cnnviz::Model::load(path, dev), b = cnnviz::Model::load(path, ref);
  const int crop = o.size > 0 ? o.size : b.info().preprocess.crop;
  // Stages are found by a float32 probe, before any conversion.
  const std::vector<std::string> stages = cnnviz::feature_layers(b);
  if (f64) {
    a.module().to(at::kDouble);
    b.module().to(at::kDouble);
  }
  at::manual_seed(0);
  Inputs in;
  in.x = at::randn({o.batch, b.info().preprocess.channels, crop, crop})
             .to(f64 ? at::kDouble : at::kFloat);
  // The reference device's own sensitivity to last-bit changes.
  in.x_ulp = at::nextafter(in.x, at::full_like(in.x, INFINITY));
  const at::Tensor top = b.logits(in.x).argmax(1);
  for (int64_t i = 0; i < o.batch; ++i) in.classes.push_back(top[i].item<int64_t>());
  std::vector<std::string> layers = {stages.front()};
  const std::string last = cnnviz::default_layer(b);
  Tally t;
  for (const cnnviz::MethodDef& method : cnnviz::method_table()) {
    if (o.skip_per_channel && method.forward_per_channel) continue;
    std::vector<std::string> these = layers;
    // A forward pass per channel: one layer is enough to compare.
    if (!method.forward_per_channel && last != layers.front()) {
      these.push_back(last);
    }
    t += check_method(a, b, method, these, in, f64);
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const CheckOptions o = parse_args(argc, argv);
  if (o.help) {
    std::printf(
        "usage: cnnviz_device_check [--device D] [--against D] [--batch N] [--dtype "
        "float32|float64] [--skip-per-channel] [--size N] MODEL.pt...\n");
    return 0;
  }
  if (o.dtype != "float32" && o.dtype != "float64") {
    std::fprintf(stderr, "cnnviz_device_check: --dtype %s: must be float32 or float64\n",
                 o.dtype.c_str());
    return 2;
  }
  if (o.models.empty()) {
    std::fprintf(stderr, "cnnviz_device_check: no model given (--help)\n");
    return 2;
  }
  Tally total;
  try {
    const at::Device dev = cnnviz::resolve_device(o.device),
                     ref = cnnviz::resolve_device(o.against);
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
    cnnviz::set_threads(0);
    for (const std::string& path : o.models) total += check_model(path, dev, ref, o);
  } catch (const cnnviz::Error& e) {
    std::fprintf(stderr, "cnnviz_device_check: %s\n", e.what());
    return e.exit_code();
  }
  std::printf(
      "{\"device\": \"%s\", \"against\": \"%s\", \"dtype\": \"%s\", \"maps\": %d, "
      "\"failures\": %d}\n",
      o.device.c_str(), o.against.c_str(), o.dtype.c_str(), total.checked, total.failures);
  return total.failures == 0 ? 0 : 1;
}
