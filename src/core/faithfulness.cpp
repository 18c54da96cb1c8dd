#include "cnnviz/core/faithfulness.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>

#include "cnnviz/core/error.h"
#include "cnnviz/core/tensor_ops.h"

namespace cnnviz {

namespace {

double auc(const std::vector<double>& curve) {
  double sum = 0;
  for (size_t k = 0; k + 1 < curve.size(); ++k) sum += (curve[k] + curve[k + 1]) / 2;
  return curve.size() > 1 ? sum / static_cast<double>(curve.size() - 1) : 0.0;
}

// Probabilities of `cls` for a stack of inputs, `batch` at a time.
std::vector<double> probabilities(const LogitsFn& logits, const at::Tensor& inputs, int64_t cls,
                                  int batch) {
  std::vector<double> out;
  for (int64_t start = 0; start < inputs.size(0); start += batch) {
    at::Tensor p =
        at::softmax(logits(inputs.slice(0, start, std::min(inputs.size(0), start + batch))), 1)
            .select(1, cls)
            .to(at::kDouble)
            .contiguous();
    out.insert(out.end(), p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
  }
  return out;
}

// Ranks 1..n of the values, ties averaged.
at::Tensor ranks(const at::Tensor& v) {
  at::Tensor flat = v.flatten().to(at::kDouble).contiguous();
  const int64_t n = flat.numel();
  at::Tensor order = std::get<1>(flat.sort(/*stable=*/true, 0, false));
  const double* x = flat.data_ptr<double>();
  const int64_t* o = order.data_ptr<int64_t>();
  at::Tensor r = at::empty({n}, at::kDouble);
  double* rp = r.data_ptr<double>();
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j + 1 < n && x[o[j + 1]] == x[o[i]]) ++j;
    const double mean_rank = (static_cast<double>(i) + static_cast<double>(j)) / 2 + 1;
    for (int64_t k = i; k <= j; ++k) rp[o[k]] = mean_rank;
    i = j + 1;
  }
  return r;
}

}  // namespace

Faithfulness measure_faithfulness(const LogitsFn& logits, const at::Tensor& x,
                                  const at::Tensor& map, int64_t cls,
                                  const FaithfulnessOptions& options) {
  const int64_t h = x.size(2), w = x.size(3), pixels = h * w;
  if (map.dim() != 2 || map.size(0) != h || map.size(1) != w) {
    throw Error(ErrorCode::kRuntime, "faithfulness: the map must be [H,W] like the input");
  }
  if (options.steps < 1) throw Error(ErrorCode::kUsage, "--steps: must be at least 1");
  const int64_t steps = options.steps;
  const int64_t per_step = (pixels + steps - 1) / steps;
  at::Tensor order =
      std::get<1>(map.to(at::kCPU).flatten().sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  // rank[p] = position of pixel p in the order; pixel p is changed at step k
  // when rank[p] < k * per_step.
  at::Tensor rank = at::empty({pixels}, at::kLong);
  rank.index_put_({order}, at::arange(pixels, at::kLong));
  at::Tensor ks = at::arange(steps + 1, at::kLong).view({-1, 1}) * per_step;
  at::Tensor changed = (rank.view({1, -1}) < ks).view({steps + 1, 1, h, w});  // [S+1,1,H,W]

  const at::Tensor blurred = gaussian_blur(x, options.blur_sigma);
  Faithfulness f;
  // Built a chunk at a time: steps + 1 full images at once would be large.
  auto curve = [&](const at::Tensor& start, const at::Tensor& target) {
    std::vector<double> out;
    for (int64_t s = 0; s <= steps; s += options.batch) {
      at::Tensor m = changed.slice(0, s, std::min(steps + 1, s + options.batch));
      at::Tensor inputs = at::where(m, target, start);
      std::vector<double> p = probabilities(logits, inputs, cls, options.batch);
      out.insert(out.end(), p.begin(), p.end());
    }
    return out;
  };
  f.deletion = curve(x, at::zeros_like(x));
  f.insertion = curve(blurred, x);
  f.deletion_auc = auc(f.deletion);
  f.insertion_auc = auc(f.insertion);

  at::Tensor e = normalize_per_image(map.to(at::kCPU).unsqueeze(0)).view({1, 1, h, w});
  f.confidence = probabilities(logits, x, cls, 1).at(0);
  f.masked_confidence = probabilities(logits, x * e, cls, 1).at(0);
  f.drop =
      f.confidence > 0 ? std::max(0.0, f.confidence - f.masked_confidence) / f.confidence : 0.0;
  f.increase = f.masked_confidence > f.confidence;
  return f;
}

at::Tensor importance_map(const at::Tensor& value, int64_t height, int64_t width) {
  if (value.dim() == 3 && (value.size(0) == 3 || value.size(0) == 1) && value.size(1) == height &&
      value.size(2) == width) {
    return std::get<0>(value.abs().max(0));
  }
  if (value.dim() == 2) return upsample(value.unsqueeze(0), height, width)[0];
  throw Error(ErrorCode::kRuntime, "importance_map: unexpected map shape");
}

double spearman(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() != b.numel()) throw Error(ErrorCode::kRuntime, "spearman: sizes differ");
  at::Tensor ra = ranks(a), rb = ranks(b);
  ra = ra - ra.mean();
  rb = rb - rb.mean();
  const double den = std::sqrt((ra * ra).sum().item<double>() * (rb * rb).sum().item<double>());
  return den > 0 ? (ra * rb).sum().item<double>() / den : 0.0;
}

std::vector<std::string> parametrized_layers(const Model& model) {
  std::vector<std::string> out;
  for (const auto& m : model.module().named_modules()) {
    for (const auto& p : m.value.named_parameters(/*recurse=*/false)) {
      if (p.name == "weight" && p.value.dim() >= 2) {
        out.push_back(m.name);
        break;
      }
    }
  }
  return out;
}

Model randomized_copy(const Model& model, size_t top, uint64_t seed,
                      std::vector<std::string>* randomized) {
  Model copy = Model::load(model.info().path, model.device());
  copy.mutable_info() = model.info();
  std::vector<std::string> layers = parametrized_layers(copy);
  const size_t first = layers.size() > top ? layers.size() - top : 0;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<std::string> done;
  c10::InferenceMode no_grad;
  for (const auto& m : copy.module().named_modules()) {
    auto it = std::find(layers.begin() + static_cast<std::ptrdiff_t>(first), layers.end(), m.name);
    if (it == layers.end()) continue;
    for (const auto& p : m.value.named_parameters(/*recurse=*/false)) {
      at::Tensor t = p.value;
      const double sd = t.numel() > 1 ? t.std().item<double>() : 0.0;
      t.copy_(at::randn(t.sizes(), generator, t.options().device(at::kCPU)) * (sd > 0 ? sd : 0.01));
    }
    done.push_back(m.name);
  }
  if (randomized) *randomized = std::move(done);
  return copy;
}

}  // namespace cnnviz
