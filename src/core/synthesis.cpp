#include "cnnviz/core/synthesis.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "cnnviz/core/error.h"
#include "cnnviz/core/feature_map.h"
#include "cnnviz/core/stopwatch.h"
#include "ops.h"

namespace cnnviz {

namespace {

// The square root of ImageNet's colour covariance (Lucid's
// color_correlation_svd_sqrt), rows: output channels.
constexpr float kColorSqrt[3][3] = {
    {0.26f, 0.09f, 0.02f}, {0.27f, 0.00f, -0.05f}, {0.27f, -0.09f, 0.03f}};

at::Tensor color_matrix(const at::TensorOptions& options) {
  at::Tensor m = at::empty({3, 3}, at::kFloat);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) m[r][c] = kColorSqrt[r][c];
  }
  const at::Tensor column_norms = m.norm(2, {0});
  return (m / column_norms.max()).to(options);
}

// 1 / max(f, 1/S) over the rfft2 grid of an S x S image, [S, S/2+1], with
// torch.fft's frequency grids (so that values round as in PyTorch).
at::Tensor spectrum_scale(int64_t s, const at::TensorOptions& options) {
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor fy = at::fft_fftfreq(s, 1.0, f32).view({s, 1});
  const at::Tensor fx = at::fft_rfftfreq(s, 1.0, f32).view({1, s / 2 + 1});
  const at::Tensor f = at::sqrt(fx * fx + fy * fy);
  return (1.0 / at::clamp_min(f, 1.0 / static_cast<double>(s))).to(options);
}

at::Tensor blur3(const at::Tensor& x) {
  const int64_t c = x.size(1);
  at::Tensor k1 = at::tensor({0.25f, 0.5f, 0.25f}, x.options());
  at::Tensor padded = at::replication_pad2d(x, {1, 1, 1, 1});
  const c10::optional<at::Tensor> no_bias;
  const int64_t one[2] = {1, 1}, zero[2] = {0, 0};
  at::Tensor rows =
      at::conv2d(padded, k1.view({1, 1, 3, 1}).repeat({c, 1, 1, 1}), no_bias, one, zero, one, c);
  return at::conv2d(rows, k1.view({1, 1, 1, 3}).repeat({c, 1, 1, 1}), no_bias, one, zero, one, c);
}

// Redirected ReLUs only start an objective that is dead on the random start:
// after these steps every image has a gradient, and the check costs a pass
// over each ReLU's gradient.
constexpr int kRedirectSteps = 32;

size_t layer_index(const Engine& engine, const std::string& layer) {
  const std::vector<std::string>& layers = engine.layers();
  return static_cast<size_t>(std::find(layers.begin(), layers.end(), layer) - layers.begin());
}

}  // namespace

const char* param_kind_name(ParamKind kind) { return kind == ParamKind::kPixel ? "pixel" : "fft"; }

ParamKind parse_param_kind(const std::string& text) {
  if (text == "pixel") return ParamKind::kPixel;
  if (text == "fft") return ParamKind::kFft;
  throw Error(ErrorCode::kUsage, "--param '" + text + "': must be pixel or fft");
}

std::vector<int64_t> param_shape(const ParamOptions& options, int64_t n) {
  const int64_t s = options.size;
  if (options.kind == ParamKind::kPixel) return {n, 3, s, s};
  return {n, 3, s, s / 2 + 1, 2};
}

at::Tensor init_param(const ParamOptions& options, int64_t n, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randn(param_shape(options, n), gen, at::kFloat) * options.init_sd;
}

at::Tensor param_images(const at::Tensor& p, const ParamOptions& options) {
  const int64_t s = options.size;
  at::Tensor lin;
  if (options.kind == ParamKind::kPixel) {
    lin = p;
  } else {
    const at::Tensor spectrum =
        at::view_as_complex(p.contiguous()) * spectrum_scale(s, p.options().dtype(at::kFloat));
    lin = at::fft_irfft2(spectrum, at::IntArrayRef{s, s}, {-2, -1}, "ortho") / 4.0;
  }
  if (options.decorrelate) {
    lin = at::matmul(lin.permute({0, 2, 3, 1}), color_matrix(lin.options()).t())
              .permute({0, 3, 1, 2});
  }
  return at::sigmoid(lin);
}

TransformSet parse_transforms(const std::string& text) {
  TransformSet set{false, false, false};
  if (text == "none") return set;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item == "jitter") {
      set.jitter = true;
    } else if (item == "scale") {
      set.scale = true;
    } else if (item == "rotate") {
      set.rotate = true;
    } else {
      throw Error(ErrorCode::kUsage, "--transforms '" + text + "': unknown transform '" + item +
                                         "' (jitter, scale, rotate, or none)");
    }
  }
  return set;
}

std::string transforms_text(const TransformSet& set) {
  std::string out;
  if (set.jitter) out += "jitter";
  if (set.scale) out += std::string(out.empty() ? "" : ",") + "scale";
  if (set.rotate) out += std::string(out.empty() ? "" : ",") + "rotate";
  return out.empty() ? "none" : out;
}

TransformDraw draw_transforms(const TransformSet& set, std::mt19937_64& rng) {
  TransformDraw d;
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  if (!set.any()) return d;
  d.pad = 12;
  if (set.jitter) {
    d.jitter1 = 8;
    d.oy1 = pick(0, 7);
    d.ox1 = pick(0, 7);
  }
  if (set.scale) d.scale = 1.0 + (pick(0, 10) - 5) / 50.0;
  if (set.rotate) d.angle = pick(-10, 10);
  if (set.jitter) {
    d.jitter2 = 4;
    d.oy2 = pick(0, 3);
    d.ox2 = pick(0, 3);
  }
  return d;
}

at::Tensor apply_transforms(const at::Tensor& images, const TransformDraw& d) {
  at::Tensor x = images;
  auto jitter = [](const at::Tensor& t, int size, int oy, int ox) {
    const int64_t h = t.size(2) - size, w = t.size(3) - size;
    return t.slice(2, oy, oy + h).slice(3, ox, ox + w);
  };
  if (d.pad > 0) x = at::constant_pad_nd(x, {d.pad, d.pad, d.pad, d.pad}, 0.5);
  if (d.jitter1 > 0) x = jitter(x, d.jitter1, d.oy1, d.ox1);
  if (d.scale != 1.0) {
    const int64_t h = static_cast<int64_t>(std::ceil(static_cast<double>(x.size(2)) * d.scale));
    const int64_t w = static_cast<int64_t>(std::ceil(static_cast<double>(x.size(3)) * d.scale));
    x = at::upsample_bilinear2d(x, {h, w}, false, c10::nullopt, c10::nullopt);
  }
  if (d.angle != 0.0) {
    const double t = d.angle * M_PI / 180.0;
    const float c = static_cast<float>(std::cos(t)), s = static_cast<float>(std::sin(t));
    at::Tensor theta = at::tensor({c, -s, 0.0f, s, c, 0.0f}, x.options()).view({1, 2, 3});
    theta = theta.expand({x.size(0), 2, 3}).contiguous();
    const at::Tensor grid = at::affine_grid_generator(theta, x.sizes(), false);
    x = at::grid_sampler(x, grid, /*bilinear*/ 0, /*zeros*/ 0, false);
  }
  if (d.jitter2 > 0) x = jitter(x, d.jitter2, d.oy2, d.ox2);
  return x;
}

at::Tensor model_input(const at::Tensor& images, const Preprocessing& pre) {
  if (pre.channels == 1) {
    const at::Tensor luma =
        images.select(1, 0) * 0.299 + images.select(1, 1) * 0.587 + images.select(1, 2) * 0.114;
    return ((luma - pre.mean[0]) / pre.std[0]).unsqueeze(1);
  }
  const at::Tensor mean = at::tensor({pre.mean[0], pre.mean[1], pre.mean[2]}, images.options());
  const at::Tensor std = at::tensor({pre.std[0], pre.std[1], pre.std[2]}, images.options());
  return (images - mean.view({1, 3, 1, 1})) / std.view({1, 3, 1, 1});
}

at::Tensor input_images(const at::Tensor& input, const Preprocessing& pre) {
  if (input.size(1) == 1) {
    return (input * pre.std[0] + pre.mean[0]).clamp(0, 1).repeat({1, 3, 1, 1});
  }
  const at::Tensor mean = at::tensor({pre.mean[0], pre.mean[1], pre.mean[2]}, input.options());
  const at::Tensor std = at::tensor({pre.std[0], pre.std[1], pre.std[2]}, input.options());
  return (input * std.view({1, 3, 1, 1}) + mean.view({1, 3, 1, 1})).clamp(0, 1);
}

at::Tensor prior_terms(const at::Tensor& x, const Priors& priors) {
  at::Tensor total = at::zeros({x.size(0)}, x.options());
  if (priors.l2 != 0) total = total + priors.l2 * (x - 0.5).pow(2).mean({1, 2, 3});
  if (priors.tv != 0) {
    const at::Tensor dy = x.slice(2, 1) - x.slice(2, 0, -1);
    const at::Tensor dx = x.slice(3, 1) - x.slice(3, 0, -1);
    total = total + priors.tv * (dy.pow(2).mean({1, 2, 3}) + dx.pow(2).mean({1, 2, 3}));
  }
  if (priors.blur != 0) total = total + priors.blur * (x - blur3(x)).pow(2).mean({1, 2, 3});
  return total;
}

Engine objective_engine(const Model& model, const Objective& objective) {
  std::vector<std::string> layers;
  if (objective.kind != ObjectiveKind::kClass) {
    for (const std::string& l : objective.layers) {
      if (std::find(layers.begin(), layers.end(), l) == layers.end()) layers.push_back(l);
    }
  }
  Engine engine(model, layers);
  engine.keep_outputs(/*stop=*/objective.kind != ObjectiveKind::kClass);
  return engine;
}

at::Tensor objective_values(const Pass& pass, const Engine& engine, const Objective& objective) {
  const std::string& model = engine.model().info().name;
  const int64_t n = pass.input().size(0);
  if (static_cast<int64_t>(objective.units.size()) != n &&
      objective.kind != ObjectiveKind::kInvert) {
    throw Error(ErrorCode::kRuntime, "objective: one unit per image expected");
  }
  if (objective.kind == ObjectiveKind::kClass) {
    const at::Tensor& logits = pass.attached_logits();
    const at::Tensor index =
        at::tensor(objective.units, at::kLong).to(logits.device()).view({n, 1});
    if (at::any(index >= logits.size(1)).item<bool>()) {
      throw Error(ErrorCode::kUsage, "--class: out of range (the model has " +
                                         std::to_string(logits.size(1)) + " classes)");
    }
    return logits.gather(1, index).squeeze(1);
  }
  if (objective.layers.size() == 1 && objective.kind != ObjectiveKind::kInvert) {
    // One layer for every row: one gather, as a hand-written loop would do.
    const std::string& layer = objective.layers[0];
    const at::Tensor map = to_feature_map(pass.output(layer_index(engine, layer)), layer, model);
    for (int64_t c : objective.units) {
      if (c < 0 || c >= map.size(1)) {
        throw Error(ErrorCode::kUsage, "channel " + std::to_string(c) + " of layer '" + layer +
                                           "': out of range (it has " +
                                           std::to_string(map.size(1)) + " channels)");
      }
    }
    const at::Tensor rows_index =
        at::arange(n, at::TensorOptions().dtype(at::kLong).device(map.device()));
    const at::Tensor units = at::tensor(objective.units, at::kLong).to(map.device());
    const at::Tensor chosen = map.index({rows_index, units});  // [N,h,w]
    if (objective.kind == ObjectiveKind::kNeuron) {
      return chosen.select(1, chosen.size(1) / 2).select(1, chosen.size(2) / 2);
    }
    return chosen.mean({1, 2});
  }
  std::vector<at::Tensor> rows;
  for (int64_t r = 0; r < n; ++r) {
    const std::string& layer =
        objective.layers.size() == 1 ? objective.layers[0] : objective.layers.at(r);
    const at::Tensor map = to_feature_map(pass.output(layer_index(engine, layer)), layer, model);
    const at::Tensor a = map[r];  // [C,h,w]
    if (objective.kind == ObjectiveKind::kInvert) {
      const at::Tensor t = objective.targets.at(r).to(a.device());
      rows.push_back(-(a - t).pow(2).sum() / t.pow(2).sum().clamp_min(1e-12));
      continue;
    }
    const int64_t c = objective.units[r];
    if (c < 0 || c >= a.size(0)) {
      throw Error(ErrorCode::kUsage, "channel " + std::to_string(c) + " of layer '" + layer +
                                         "': out of range (it has " + std::to_string(a.size(0)) +
                                         " channels)");
    }
    const at::Tensor channel = a[c];
    rows.push_back(objective.kind == ObjectiveKind::kNeuron
                       ? channel[channel.size(0) / 2][channel.size(1) / 2]
                       : channel.mean());
  }
  return at::stack(rows);
}

StepResult objective_step(const Engine& engine, const Objective& objective, const at::Tensor& p,
                          const ParamOptions& param, const std::optional<TransformDraw>& draw,
                          const Priors& priors, bool redirect) {
  torch::AutoGradMode grad_mode(true);
  const at::Device device = engine.model().device();
  at::Tensor leaf = p.detach().to(device).requires_grad_(true);
  const at::Tensor images = param_images(leaf, param);
  const at::Tensor transformed = draw ? apply_transforms(images, *draw) : images;
  const at::Tensor input = model_input(transformed, engine.model().info().preprocess);
  StepResult out;
  at::Tensor input_grad;
  {
    Pass pass = engine.run(input);
    const at::Tensor obj = objective_values(pass, engine, objective);
    out.objective = obj.detach().to(at::kCPU);
    // The objective's own gradient (what ReLU redirection expects), negated below.
    ops::set_redirect(redirect);
    try {
      input_grad = pass.gradient_of(obj.sum());
    } catch (...) {
      ops::set_redirect(false);
      throw;
    }
    ops::set_redirect(false);
  }
  const at::Tensor prior = prior_terms(images, priors).sum();
  out.loss = -out.objective.sum().item<double>() + prior.item<double>();
  // The chain rule through the transforms and the parameterization: the
  // input's gradient of the loss is -input_grad.
  if (prior.requires_grad()) {
    out.gradient =
        torch::autograd::grad({input, prior}, {leaf}, {-input_grad, at::ones_like(prior)})[0];
  } else {
    out.gradient = torch::autograd::grad({input}, {leaf}, {-input_grad})[0];
  }
  return out;
}

SynthesisResult synthesize(const Engine& engine, const Objective& objective, int64_t rows,
                           const SynthesisOptions& options,
                           const std::function<bool(int step)>& on_step) {
  const Clock::time_point start = Clock::now();
  const at::Device device = engine.model().device();
  at::Tensor p = init_param(options.param, rows, options.seed).to(device).requires_grad_(true);
  torch::optim::Adam adam({p}, torch::optim::AdamOptions(options.lr));
  std::mt19937_64 rng(options.seed);
  SynthesisResult result;
  Clock::time_point steady = start;
  for (int step = 1; step <= options.steps; ++step) {
    if (step == 2) steady = Clock::now();
    std::optional<TransformDraw> draw;
    if (options.transforms.any()) draw = draw_transforms(options.transforms, rng);
    StepResult s = objective_step(engine, objective, p, options.param, draw, options.priors,
                                  options.redirect_relu && step <= kRedirectSteps);
    {
      torch::NoGradGuard no_grad;
      p.mutable_grad() = s.gradient;
    }
    adam.step();
    if (step % std::max(1, options.log_every) == 0 || step == options.steps) {
      result.log_steps.push_back(step);
      std::vector<double> v(s.objective.data_ptr<float>(),
                            s.objective.data_ptr<float>() + s.objective.numel());
      result.history.push_back(std::move(v));
    }
    if (on_step && !on_step(step)) {
      result.interrupted = step < options.steps;
      break;
    }
  }
  if (options.steps > 1) result.steady_ms = ms_since(steady);
  torch::NoGradGuard no_grad;
  result.images = param_images(p.detach(), options.param).to(at::kCPU);
  {
    torch::AutoGradMode grad_mode(true);
    Pass pass = engine.run(model_input(result.images.to(device), engine.model().info().preprocess));
    const at::Tensor obj = objective_values(pass, engine, objective).detach().to(at::kCPU);
    result.final.assign(obj.data_ptr<float>(), obj.data_ptr<float>() + obj.numel());
  }
  result.ms = ms_since(start);
  return result;
}

at::Tensor dream_gradient(const Engine& engine, const at::Tensor& input, int64_t dy, int64_t dx,
                          double* objective) {
  torch::AutoGradMode grad_mode(true);
  const at::Tensor rolled = at::roll(input, {dy, dx}, {2, 3});
  Pass pass = engine.run(rolled);
  const std::string& layer = engine.layers().at(0);
  const at::Tensor map = to_feature_map(pass.output(0), layer, engine.model().info().name);
  const at::Tensor obj = map.pow(2).mean({1, 2, 3}).sum();
  if (objective) *objective = obj.item<double>();
  const at::Tensor g = pass.gradient_of(-obj);
  return at::roll(g, {-dy, -dx}, {2, 3});
}

namespace {

double activation_rms(const Engine& engine, const at::Tensor& image) {
  const Preprocessing& pre = engine.model().info().preprocess;
  Pass pass = engine.run(model_input(image.unsqueeze(0).to(engine.model().device()), pre));
  const at::Tensor map =
      to_feature_map(pass.output(0), engine.layers().at(0), engine.model().info().name);
  return std::sqrt(map.pow(2).mean().item<double>());
}

at::Tensor resize_to(const at::Tensor& x, int64_t h, int64_t w) {
  if (x.size(2) == h && x.size(3) == w) return x;
  return at::upsample_bilinear2d(x, {h, w}, false, c10::nullopt, c10::nullopt);
}

}  // namespace

DreamResult dream(const Engine& engine, const at::Tensor& image, const DreamOptions& options,
                  const std::function<bool()>& keep_going) {
  const Preprocessing& pre = engine.model().info().preprocess;
  const at::Device device = engine.model().device();
  DreamResult result;
  result.norm_before = activation_rms(engine, image);
  const at::Tensor base = image.unsqueeze(0).to(device);
  const int64_t height = base.size(2), width = base.size(3);
  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int> shift(-options.jitter, options.jitter);
  at::Tensor inv_std = at::empty({1, pre.channels, 1, 1});
  for (int c = 0; c < pre.channels; ++c) inv_std[0][c][0][0] = 1.0f / pre.std[c];
  inv_std = inv_std.to(device);
  at::Tensor detail;
  at::Tensor x = base;
  for (int o = 0; o < options.octaves; ++o) {
    const double f = std::pow(options.octave_scale, options.octaves - 1 - o);
    const int64_t h = std::max<int64_t>(1, std::llround(static_cast<double>(height) / f));
    const int64_t w = std::max<int64_t>(1, std::llround(static_cast<double>(width) / f));
    if (std::min(h, w) < 32 && o + 1 < options.octaves) continue;  // too small to see anything
    const at::Tensor b = resize_to(base, h, w);
    x = detail.defined() ? (b + resize_to(detail, h, w)).clamp(0, 1) : b.clone();
    for (int step = 0; step < options.steps; ++step) {
      if (keep_going && !keep_going()) {
        result.interrupted = true;
        break;
      }
      const int dy = shift(rng), dx = shift(rng);
      // The gradient in the image: through the normalization (and the luma).
      at::Tensor g = dream_gradient(engine, model_input(x, pre), dy, dx) * inv_std;
      if (pre.channels == 1) g = at::cat({g * 0.299, g * 0.587, g * 0.114}, 1);
      torch::NoGradGuard no_grad;
      x = (x - options.lr * g / (g.abs().mean() + 1e-8)).clamp(0, 1);
    }
    detail = x - b;
    if (result.interrupted) break;
  }
  if (x.size(2) != height || x.size(3) != width) x = resize_to(x, height, width);
  result.image = x.squeeze(0).detach().to(at::kCPU);
  result.norm_after = activation_rms(engine, result.image);
  return result;
}

bool ranks_above(const TopEntry& a, const TopEntry& b) {
  if (a.value != b.value) return a.value > b.value;
  if (a.image != b.image) return a.image < b.image;
  if (a.y != b.y) return a.y < b.y;
  return a.x < b.x;
}

TopActivations::TopActivations(std::vector<int64_t> channels, int k)
    : channels_(std::move(channels)), k_(k), heaps_(channels_.size()) {}

void TopActivations::add_entry(size_t j, const TopEntry& e) {
  std::vector<TopEntry>& heap = heaps_[j];
  // A min-heap by rank: the front is the weakest kept entry.
  auto cmp = [](const TopEntry& a, const TopEntry& b) { return ranks_above(a, b); };
  if (static_cast<int>(heap.size()) < k_) {
    heap.push_back(e);
    std::push_heap(heap.begin(), heap.end(), cmp);
  } else if (!heap.empty() && ranks_above(e, heap.front())) {
    std::pop_heap(heap.begin(), heap.end(), cmp);
    heap.back() = e;
    std::push_heap(heap.begin(), heap.end(), cmp);
  }
}

void TopActivations::add(const at::Tensor& maps, const std::vector<int64_t>& images) {
  const int64_t n = maps.size(0), w = maps.size(3);
  const at::Tensor index = at::tensor(channels_, at::kLong).to(maps.device());
  const at::Tensor chosen =
      maps.detach().index_select(1, index).flatten(2).to(at::kCPU, at::kFloat).contiguous();
  const auto [values, where] = chosen.max(2);  // [N,K]: the first maximum's position
  const at::Tensor v = values.contiguous(), p = where.contiguous();
  const float* vp = v.data_ptr<float>();
  const int64_t* pp = p.data_ptr<int64_t>();
  const int64_t k = static_cast<int64_t>(channels_.size());
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t pos = pp[r * k + j];
      add_entry(static_cast<size_t>(j), {vp[r * k + j], images.at(r), pos / w, pos % w});
    }
  }
}

std::vector<std::vector<TopEntry>> TopActivations::sorted() const {
  std::vector<std::vector<TopEntry>> out = heaps_;
  for (std::vector<TopEntry>& h : out) std::sort(h.begin(), h.end(), ranks_above);
  return out;
}

}  // namespace cnnviz
