// ONNX's own backend conformance tests (Debian's libonnx-testdata): every
// one-node test whose operators the importer supports is imported and run,
// and its outputs compared with the expected ones at the tolerances of
// ONNX's backend runner (rtol 1e-3, atol 1e-7). Tests with an unsupported
// operator, attribute or data type are skipped with the importer's reason;
// a supported test that fails is a bug. The summary line reports the counts
// (docs/models.md quotes them).
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <torch/script.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cnnviz/core/error.h"
#include "cnnviz/core/onnx.h"

namespace cnnviz {
namespace {

namespace fs = std::filesystem;

std::string testdata_dir() {
  if (const char* d = std::getenv("CNNVIZ_ONNX_TESTDATA")) return d;
  return "/usr/share/libonnx-testdata/data";
}

// The test directories: one-node tests (node/), PyTorch modules and
// operators exported by PyTorch (pytorch-converted/, pytorch-operator/),
// and small graphs (simple/).
std::vector<fs::path> test_dirs() {
  std::vector<fs::path> dirs;
  for (const char* group : {"node", "pytorch-converted", "pytorch-operator", "simple"}) {
    const fs::path g = fs::path(testdata_dir()) / group;
    if (!fs::is_directory(g)) continue;
    for (const fs::directory_entry& d : fs::directory_iterator(g)) {
      if (fs::exists(d.path() / "model.onnx")) dirs.push_back(d.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

std::vector<at::Tensor> read_set(const fs::path& dir, const std::string& prefix) {
  std::vector<at::Tensor> out;
  for (int i = 0;; ++i) {
    const fs::path f = dir / (prefix + "_" + std::to_string(i) + ".pb");
    if (!fs::exists(f)) break;
    out.push_back(read_onnx_tensor(f.string()));
  }
  return out;
}

std::vector<at::Tensor> outputs_of(const c10::IValue& v) {
  if (v.isTensor()) return {v.toTensor()};
  std::vector<at::Tensor> out;
  for (const c10::IValue& e : v.toTupleRef().elements()) out.push_back(e.toTensor());
  return out;
}

// Empty when `got` matches `want` as ONNX's runner checks (NaN equal NaN).
std::string compare(const at::Tensor& got, const at::Tensor& want) {
  if (got.sizes() != want.sizes()) {
    return "shape " + c10::str(got.sizes()) + " instead of " + c10::str(want.sizes());
  }
  if (got.scalar_type() != want.scalar_type()) {
    return std::string("type ") + c10::toString(got.scalar_type()) + " instead of " +
           c10::toString(want.scalar_type());
  }
  if (!want.is_floating_point()) {
    return got.equal(want) ? "" : "values differ";
  }
  const at::Tensor g = got.to(at::kDouble), w = want.to(at::kDouble);
  const at::Tensor bad = ((g - w).abs() > 1e-7 + 1e-3 * w.abs()) & ~(g.isnan() & w.isnan()) &
                         ~(g.isinf() & w.isinf() & (g == w));
  if (!bad.any().item<bool>()) return "";
  return "max difference " +
         std::to_string(((g - w).abs().nan_to_num(0, 0, 0)).max().item<double>()) + " at " +
         std::to_string(bad.sum().item<int64_t>()) + " values";
}

// The outcome of one test directory: "" passed, "skip: ..." or a failure.
std::string run_one(const fs::path& dir) {
  OnnxModel m;
  try {
    m = import_onnx((dir / "model.onnx").string());
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kUnsupported) return std::string("skip: ") + e.what();
    return std::string("import failed: ") + e.what();
  }
  const fs::path data = dir / "test_data_set_0";
  std::vector<at::Tensor> inputs, want;
  try {
    inputs = read_set(data, "input");
    want = read_set(data, "output");
  } catch (const Error& e) {
    return std::string(e.code() == ErrorCode::kUnsupported ? "skip: " : "bad data: ") + e.what();
  }
  if (inputs.size() != m.inputs.size()) return "skip: optional inputs left out";
  std::vector<c10::IValue> args(inputs.begin(), inputs.end());
  std::vector<at::Tensor> got;
  try {
    got = outputs_of(m.module->forward(args));
  } catch (const std::exception& e) {
    // The interpreter's message ends with the operator's own error.
    std::string w = e.what();
    while (!w.empty() && w.back() == '\n') w.pop_back();
    return "run failed: " + w.substr(w.rfind('\n') + 1);
  }
  if (got.size() != want.size()) return "output count differs";
  for (size_t k = 0; k < got.size(); ++k) {
    const std::string d = compare(got[k], want[k]);
    if (!d.empty()) return "output " + std::to_string(k) + ": " + d;
  }
  return "";
}

TEST(OnnxConformanceTest, NodeTestsOfSupportedOperatorsPass) {
  if (!fs::is_directory(testdata_dir())) {
    GTEST_SKIP() << "ONNX's backend tests are absent (" << testdata_dir()
                 << "): install libonnx-testdata";
  }
  const std::vector<fs::path> dirs = test_dirs();
  int passed = 0, skipped = 0;
  std::vector<std::string> failed;
  std::map<std::string, int> skip_reasons;
  const bool verbose = std::getenv("CNNVIZ_ONNX_VERBOSE") != nullptr;
  for (const fs::path& d : dirs) {
    const std::string r = run_one(d);
    const std::string name = d.parent_path().filename().string() + "/" + d.filename().string();
    if (r.empty()) {
      ++passed;
    } else if (r.rfind("skip: ", 0) == 0) {
      ++skipped;
      if (verbose) std::cout << "SKIP " << name << ": " << r.substr(6) << "\n";
    } else {
      failed.push_back(name + ": " + r);
    }
  }
  std::cout << "ONNX backend tests: " << passed << " passed, " << failed.size() << " failed, "
            << skipped << " skipped (unsupported), of " << dirs.size() << "\n";
  for (const std::string& f : failed) ADD_FAILURE() << f;
  EXPECT_GT(passed, 0);
}

// The operator types of the model at `path`.
std::set<std::string> ops_of(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromIstream(&in)) << path;
  std::set<std::string> ops;
  for (const onnx::NodeProto& n : m.graph().node()) ops.insert(n.op_type());
  return ops;
}

// The operators whose node tests check gradients: those differentiable
// almost everywhere in their floating-point inputs.
bool differentiable(const std::string& op) {
  static const std::set<std::string> ops = {"Abs",
                                            "Acos",
                                            "Acosh",
                                            "Add",
                                            "Asin",
                                            "Asinh",
                                            "Atan",
                                            "Atanh",
                                            "AveragePool",
                                            "BatchNormalization",
                                            "Celu",
                                            "Clip",
                                            "Concat",
                                            "Conv",
                                            "ConvTranspose",
                                            "Cos",
                                            "Cosh",
                                            "DepthToSpace",
                                            "Div",
                                            "Dropout",
                                            "Einsum",
                                            "Elu",
                                            "Erf",
                                            "Exp",
                                            "Expand",
                                            "Flatten",
                                            "Gather",
                                            "Gemm",
                                            "GlobalAveragePool",
                                            "GlobalMaxPool",
                                            "HardSigmoid",
                                            "HardSwish",
                                            "Identity",
                                            "InstanceNormalization",
                                            "LayerNormalization",
                                            "LeakyRelu",
                                            "Log",
                                            "LogSoftmax",
                                            "LpNormalization",
                                            "LRN",
                                            "MatMul",
                                            "Max",
                                            "MaxPool",
                                            "Mean",
                                            "Min",
                                            "Mul",
                                            "Neg",
                                            "Pad",
                                            "Pow",
                                            "PRelu",
                                            "Reciprocal",
                                            "ReduceL1",
                                            "ReduceL2",
                                            "ReduceLogSum",
                                            "ReduceLogSumExp",
                                            "ReduceMax",
                                            "ReduceMean",
                                            "ReduceMin",
                                            "ReduceProd",
                                            "ReduceSum",
                                            "ReduceSumSquare",
                                            "Relu",
                                            "Reshape",
                                            "Resize",
                                            "ScatterND",
                                            "Selu",
                                            "Sigmoid",
                                            "Sin",
                                            "Sinh",
                                            "Slice",
                                            "Softmax",
                                            "Softplus",
                                            "Softsign",
                                            "SpaceToDepth",
                                            "Split",
                                            "Sqrt",
                                            "Squeeze",
                                            "Sub",
                                            "Sum",
                                            "Tan",
                                            "Tanh",
                                            "ThresholdedRelu",
                                            "Tile",
                                            "Transpose",
                                            "Unsqueeze",
                                            "Upsample",
                                            "Where"};
  return ops.count(op) > 0;
}

std::string compare_differences(
    const std::vector<at::Tensor>& x,
    const std::function<at::Tensor(const std::vector<at::Tensor>&)>& loss);

// Empty when autograd through the imported graph, in float64, matches
// central differences at a few coordinates of each floating-point input
// (coordinates at a kink, where the one-sided differences disagree, are
// passed over); "skip" when the test does not apply; else the mismatch.
std::string check_gradient(const fs::path& dir, size_t wrt) {
  OnnxModel m;
  try {
    m = import_onnx((dir / "model.onnx").string());
  } catch (const Error&) {
    return "skip";
  }
  std::vector<at::Tensor> inputs;
  try {
    inputs = read_set(dir / "test_data_set_0", "input");
  } catch (const Error&) {
    return "skip";
  }
  if (inputs.size() != m.inputs.size()) return "skip";
  bool any_float = false;
  for (at::Tensor& t : inputs) {
    if (t.scalar_type() == at::kFloat) {
      t = t.to(at::kDouble);
      any_float = true;
    }
  }
  if (!any_float) return "skip";
  for (const auto& p : m.module->named_parameters(true)) {
    if (p.value.is_floating_point()) p.value.set_data(p.value.to(at::kDouble));
  }
  at::manual_seed(0);
  std::map<size_t, at::Tensor> weights;
  auto loss = [&](const std::vector<at::Tensor>& xs) {
    std::vector<c10::IValue> args(xs.begin(), xs.end());
    std::vector<at::Tensor> outs = outputs_of(m.module->forward(args));
    at::Tensor total = at::zeros({}, at::kDouble);
    for (size_t k = 0; k < outs.size(); ++k) {
      if (!outs[k].is_floating_point()) continue;
      if (!weights.count(k)) weights[k] = at::randn(outs[k].sizes(), at::kDouble);
      total = total + (outs[k].to(at::kDouble) * weights[k]).sum();
    }
    return total;
  };
  std::vector<at::Tensor> x;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const at::Tensor& t = inputs[i];
    x.push_back(t.is_floating_point() && i < wrt ? t.clone().requires_grad_(true) : t);
  }
  try {
    at::Tensor l = loss(x);
    if (!l.requires_grad()) return "skip";
    l.backward();
  } catch (const std::exception& e) {
    return std::string("backward failed: ") + e.what();
  }
  at::NoGradGuard no_grad;
  try {
    return compare_differences(x, loss);
  } catch (const std::exception& e) {
    return std::string("finite differences failed: ") + e.what();
  }
}

// Compares autograd's gradients of `loss` at `x` with central differences.
std::string compare_differences(
    const std::vector<at::Tensor>& x,
    const std::function<at::Tensor(const std::vector<at::Tensor>&)>& loss) {
  for (size_t i = 0; i < x.size(); ++i) {
    if (!x[i].requires_grad() || x[i].numel() == 0) continue;
    const at::Tensor grad = x[i].grad().defined() ? x[i].grad() : at::zeros_like(x[i]);
    for (int trial = 0; trial < 4; ++trial) {
      const int64_t at_ = (trial * 7919) % x[i].numel();
      std::vector<at::Tensor> probe;
      for (const at::Tensor& t : x) probe.push_back(t.detach().clone());
      at::Tensor flat = probe[i].view({-1});
      const double v = flat[at_].item<double>(), h = 1e-6 * std::max(1.0, std::abs(v));
      const double f0 = loss(probe).item<double>();
      flat[at_] = v + h;
      const double fp = loss(probe).item<double>();
      flat[at_] = v - h;
      const double fm = loss(probe).item<double>();
      const double right = (fp - f0) / h, left = (f0 - fm) / h, central = (fp - fm) / (2 * h);
      if (std::abs(right - left) > 1e-3 * (1 + std::abs(central))) continue;  // a kink
      const double g = grad.view({-1})[at_].item<double>();
      if (std::abs(g - central) > 1e-5 + 1e-3 * std::abs(central)) {
        return "input " + std::to_string(i) + " [" + std::to_string(at_) + "]: autograd " +
               std::to_string(g) + ", finite differences " + std::to_string(central);
      }
    }
  }
  return "";
}

TEST(OnnxConformanceTest, GradientsMatchFiniteDifferences) {
  if (!fs::is_directory(testdata_dir())) {
    GTEST_SKIP() << "ONNX's backend tests are absent (" << testdata_dir()
                 << "): install libonnx-testdata";
  }
  int checked = 0;
  for (const fs::path& dir : test_dirs()) {
    const fs::path model = dir / "model.onnx";
    if (!run_one(dir).empty()) continue;
    bool all = true;
    // Inputs that are the data, not settings: a batch norm's statistics, a
    // resize's scales and a pad's widths and value are not differentiated.
    size_t wrt = SIZE_MAX;
    for (const std::string& op : ops_of(model)) {
      all = all && differentiable(op);
      if (op == "BatchNormalization") wrt = std::min<size_t>(wrt, 3);
      if (op == "Resize" || op == "Upsample" || op == "Pad") wrt = 1;
    }
    if (!all) continue;
    const std::string r = check_gradient(dir, wrt);
    if (r == "skip") continue;
    ++checked;
    if (!r.empty())
      ADD_FAILURE() << dir.parent_path().filename().string() << "/" << dir.filename().string()
                    << ": " << r;
  }
  std::cout << "ONNX backend tests with gradients checked: " << checked << "\n";
  EXPECT_GT(checked, 100);
}

}  // namespace
}  // namespace cnnviz
