#include "ops.h"

#include <torch/library.h>
#include <torch/torch.h>

#include <atomic>
#include <functional>

namespace cnnviz::ops {

namespace {

std::atomic<int> g_relu_mode{static_cast<int>(ReluMode::kPlain)};
std::atomic<TapRecorder*> g_recorder{nullptr};
std::atomic<bool> g_paired{false};
std::atomic<bool> g_redirect{false};

// Below this |x - x'| the rescale rule takes the gradient (as Captum does).
constexpr double kRescaleEps = 1e-10;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The backward of a gated activation in the current mode; `pass(t)` keeps t
// where the gate is open and zeroes it elsewhere.
template <typename Pass>
at::Tensor mode_backward(const at::Tensor& g, Pass pass) {
  switch (static_cast<ReluMode>(g_relu_mode.load())) {
    case ReluMode::kGuided:
      return pass(g.clamp_min(0));
    case ReluMode::kDeconv:
      return g.clamp_min(0);
    case ReluMode::kPlain:
      if (g_redirect.load() && g.dim() > 0) {
        const at::Tensor plain = pass(g);
        // Most images of most steps have a live gradient: one pass to tell.
        if (at::count_nonzero(plain.flatten(1), at::IntArrayRef{1}).min().item<int64_t>() > 0) {
          return plain;
        }
        const at::Tensor up = g.clamp_min(0);
        const at::Tensor redirected = plain + up - pass(up);
        std::vector<int64_t> shape(static_cast<size_t>(g.dim()), 1);
        shape[0] = g.size(0);
        const at::Tensor dead = (plain.flatten(1).abs().amax(1) == 0).view(shape);
        return at::where(dead, redirected, plain);
      }
      break;
    case ReluMode::kRescale:  // handled by the callers
    case ReluMode::kLrp:      // relevance passes ReLUs as the gradient does
      break;
  }
  return pass(g);
}

bool rescaling() { return static_cast<ReluMode>(g_relu_mode.load()) == ReluMode::kRescale; }

void check_paired(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() > 0 && x.size(0) % 2 == 0,
              "cnnviz: the rescale rule needs a paired forward pass");
}

// The rescale rule of a gated activation; gate(t, y) is t where the gate of
// output y is open, else 0.
template <typename Gate>
at::Tensor rescale_backward(const at::Tensor& g, const at::Tensor& x, const at::Tensor& y,
                            Gate gate) {
  check_paired(x);
  const int64_t n = x.size(0) / 2;
  const at::Tensor g0 = g.slice(0, 0, n);
  const at::Tensor dx = x.slice(0, 0, n) - x.slice(0, n);
  const at::Tensor dy = y.slice(0, 0, n) - y.slice(0, n);
  const at::Tensor m =
      at::where(dx.abs() >= kRescaleEps, dy / dx, gate(at::ones_like(g0), y.slice(0, 0, n)));
  return at::cat({g0 * m, at::zeros_like(g0)});
}

// ReLU, max(x, 0): its gate is open where y > 0. threshold_backward(t, y, 0)
// is t there, else 0: ReLU's own backward kernel, one pass over memory.
struct Relu {
  static at::Tensor forward(const at::Tensor& x) { return at::relu(x); }
  static at::Tensor gate(const at::Tensor& t, const at::Tensor& y) {
    return at::threshold_backward(t, y, 0);
  }
};

// ReLU6, min(max(x, 0), 6) (MobileNetV2): its gate is open where 0 < y < 6
// (exactly where x is), which hardtanh_backward(t, y, 0, 6) keeps.
struct Relu6 {
  static at::Tensor forward(const at::Tensor& x) { return at::clamp(x, 0, 6); }
  static at::Tensor gate(const at::Tensor& t, const at::Tensor& y) {
    return at::hardtanh_backward(t, y, 0, 6);
  }
};

// A gated activation whose backward follows the pass's mode: plain, guided,
// deconvnet, or DeepLIFT's rescale rule on a paired pass.
template <typename Activation>
class ModeActivation : public torch::autograd::Function<ModeActivation<Activation>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    at::Tensor y = Activation::forward(x);
    // The input only for a paired pass (it costs a copy of every activation).
    ctx->save_for_backward(g_paired.load() ? variable_list{y, x} : variable_list{y});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& y = saved[0];
    if (rescaling()) {
      return {rescale_backward(grads[0], saved.size() > 1 ? saved[1] : at::Tensor(), y,
                               &Activation::gate)};
    }
    return {mode_backward(grads[0], [&](const at::Tensor& t) { return Activation::gate(t, y); })};
  }
};
using ModeRelu = ModeActivation<Relu>;
using ModeRelu6 = ModeActivation<Relu6>;

// Max-pooling whose backward follows the mode (the rescale rule, or the true
// gradient).
class ModeMaxPool : public torch::autograd::Function<ModeMaxPool> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, at::IntArrayRef kernel,
                            at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, bool ceil_mode) {
    auto [y, indices] =
        at::max_pool2d_with_indices(x, kernel, stride, padding, dilation, ceil_mode);
    ctx->save_for_backward({x, indices});
    ctx->saved_data["kernel"] = kernel.vec();
    ctx->saved_data["stride"] = stride.vec();
    ctx->saved_data["padding"] = padding.vec();
    ctx->saved_data["dilation"] = dilation.vec();
    ctx->saved_data["ceil_mode"] = ceil_mode;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& indices = saved[1];
    const std::vector<int64_t> kernel = ctx->saved_data["kernel"].toIntVector();
    const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const std::vector<int64_t> dilation = ctx->saved_data["dilation"].toIntVector();
    const bool ceil_mode = ctx->saved_data["ceil_mode"].toBool();
    // Each window's gradient to its maximum (the inputs' own or the
    // references').
    auto to_maxima = [&](const at::Tensor& g, const at::Tensor& in, const at::Tensor& idx) {
      return at::max_pool2d_with_indices_backward(g, in, kernel, stride, padding, dilation,
                                                  ceil_mode, idx);
    };
    const at::Tensor& g = grads[0];
    variable_list out(6);
    if (!rescaling()) {
      out[0] = to_maxima(g, x, indices);
      return out;
    }
    check_paired(x);
    TORCH_CHECK(x.dim() == 4, "cnnviz: the rescale rule of max-pooling needs [N,C,H,W]");
    const int64_t n = x.size(0) / 2;
    // The pooled values, read back at the maxima.
    const at::Tensor y = x.flatten(2).gather(2, indices.flatten(2)).view(indices.sizes());
    const at::Tensor x0 = x.slice(0, 0, n), x1 = x.slice(0, n);
    const at::Tensor y0 = y.slice(0, 0, n), y1 = y.slice(0, n);
    const at::Tensor i0 = indices.slice(0, 0, n), i1 = indices.slice(0, n);
    const at::Tensor g0 = g.slice(0, 0, n);
    const at::Tensor top = at::maximum(y0, y1);
    const at::Tensor u = to_maxima(g0 * (top - y1), x0, i0) + to_maxima(g0 * (y0 - top), x1, i1);
    const at::Tensor dx = x0 - x1;
    const at::Tensor g_in = at::where(dx.abs() >= kRescaleEps, u / dx, to_maxima(g0, x0, i0));
    out[0] = at::cat({g_in, at::zeros_like(g_in)});
    return out;
  }
};

// LRP. The rules' numbers are cnnviz::LrpRule's (engine.h).
enum LrpRuleId { kEpsilon = 0, kZPlus = 1, kGamma = 2, kAlphaBeta = 3, kFlat = 4, kBox = 5 };
LrpSettings g_lrp;  // written by set_lrp while the pass lock is held, read in backward

bool lrp_mode() { return static_cast<ReluMode>(g_relu_mode.load()) == ReluMode::kLrp; }

at::Tensor sign_of(const at::Tensor& z) { return at::where(z >= 0, 1.0, -1.0).to(z.dtype()); }

// num / den, 0 where den is 0.
at::Tensor safe_div(const at::Tensor& num, const at::Tensor& den) {
  return at::where(den != 0, num / at::where(den != 0, den, at::ones_like(den)),
                   at::zeros_like(num));
}

// A convolution or linear layer as its rules see it: forward(a, w, b) and
// transpose(s, a, w) = W^T s, shaped like a.
struct LrpLayer {
  std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)> forward;
  std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)> transpose;
};

// The per-channel bounds of the box rule, shaped like a ([N,C,H,W]).
at::Tensor bound(const std::vector<float>& v, const at::Tensor& a) {
  TORCH_CHECK(a.dim() == 4 && static_cast<int64_t>(v.size()) == a.size(1),
              "cnnviz: the box rule needs the image input ([N,C,H,W] with the model's channels)");
  return at::tensor(v).to(a.options()).view({1, -1, 1, 1}).expand_as(a).contiguous();
}

// c_in with R_in = a * c_in, from c at the output z (R = z * c), by `rule`.
at::Tensor lrp_rule(const LrpLayer& layer, int rule, const at::Tensor& c, const at::Tensor& a,
                    const at::Tensor& w, const at::Tensor& b, const at::Tensor& z) {
  const LrpSettings& st = g_lrp;
  const at::Tensor r = z * c;
  const at::Tensor none;
  const at::Tensor wp = w.clamp_min(0), wn = w.clamp_max(0);
  switch (rule) {
    case kEpsilon:
      return layer.transpose(r / (z + st.epsilon * sign_of(z)), a, w);
    case kGamma: {
      const at::Tensor wg = w + st.gamma * wp;
      const at::Tensor bg = b.defined() ? b + st.gamma * b.clamp_min(0) : none;
      const at::Tensor zg = layer.forward(a, wg, bg);
      return layer.transpose(r / (zg + 1e-9 * sign_of(zg)), a, wg);
    }
    case kZPlus:
    case kAlphaBeta: {
      // After a ReLU the input has no negative part: half the work.
      const bool signed_input = a.min().item<double>() < 0;
      const at::Tensor ap = a.clamp_min(0), an = a.clamp_max(0);
      const at::Tensor zp = signed_input ? layer.forward(ap, wp, none) + layer.forward(an, wn, none)
                                         : layer.forward(a, wp, none);
      const at::Tensor sp = r / (zp + 1e-9);
      if (rule == kZPlus) {
        if (!signed_input) return layer.transpose(sp, a, wp);
        return at::where(a > 0, layer.transpose(sp, a, wp), layer.transpose(sp, a, wn));
      }
      const at::Tensor zn = layer.forward(an, wp, none) + layer.forward(ap, wn, none);
      const at::Tensor sn = r / (zn - 1e-9);
      return at::where(
          a > 0, st.alpha * layer.transpose(sp, a, wp) - st.beta * layer.transpose(sn, a, wn),
          st.alpha * layer.transpose(sp, a, wn) - st.beta * layer.transpose(sn, a, wp));
    }
    case kFlat: {
      const at::Tensor ones = at::ones_like(w);
      const at::Tensor n = layer.forward(at::ones_like(a), ones, none);
      return safe_div(layer.transpose(safe_div(r, n), a, ones), a);
    }
    case kBox: {
      const at::Tensor lo = bound(st.low, a), hi = bound(st.high, a);
      const at::Tensor zb =
          layer.forward(a, w, none) - layer.forward(lo, wp, none) - layer.forward(hi, wn, none);
      const at::Tensor s = r / (zb + 1e-9 * sign_of(zb));
      const at::Tensor r_in = a * layer.transpose(s, a, w) - lo * layer.transpose(s, a, wp) -
                              hi * layer.transpose(s, a, wn);
      return safe_div(r_in, a);
    }
    default:
      TORCH_CHECK(false, "cnnviz: unknown LRP rule ", rule);
  }
}

// The layer's output z for the rules, kept from the forward pass. Kept
// detached (a saved output would hold its own grad_fn) with its version: the
// graph may write to it in place later (ResNet's `out += identity` after a
// block's last batch norm), and then `recompute` gives it back.
void keep_output(AutogradContext* ctx, const at::Tensor& y) {
  ctx->saved_data["z"] = y.detach();
  ctx->saved_data["z_version"] = static_cast<int64_t>(y._version());
}

template <typename Recompute>
at::Tensor kept_output(AutogradContext* ctx, Recompute recompute) {
  const at::Tensor z = ctx->saved_data["z"].toTensor();
  if (static_cast<int64_t>(z._version()) == ctx->saved_data["z_version"].toInt()) return z;
  return recompute();
}

std::vector<int64_t> pair_of(at::IntArrayRef v) {
  return v.size() == 1 ? std::vector<int64_t>{v[0], v[0]} : v.vec();
}

// Convolution, then the eval-mode batch norm that followed it (when bn_var
// is defined), with LRP's backward.
class LrpConv : public torch::autograd::Function<LrpConv> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, int64_t groups, const at::Tensor& bn_w,
                            const at::Tensor& bn_b, const at::Tensor& bn_mean,
                            const at::Tensor& bn_var, double eps, bool training, bool first) {
    TORCH_CHECK(!training, "cnnviz: LRP needs batch norm in eval mode");
    const bool has_bn = bn_var.numel() > 0;  // empty: no batch norm
    at::Tensor y = at::conv2d(x, w, b, stride, padding, dilation, groups);
    if (has_bn) y = at::batch_norm(y, bn_w, bn_b, bn_mean, bn_var, false, 0.0, eps, true);
    ctx->saved_data["has_bn"] = has_bn;
    ctx->save_for_backward({x, w, b, bn_w, bn_b, bn_mean, bn_var});
    keep_output(ctx, y);
    ctx->saved_data["stride"] = pair_of(stride);
    ctx->saved_data["padding"] = pair_of(padding);
    ctx->saved_data["dilation"] = pair_of(dilation);
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["first"] = first;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list v = ctx->get_saved_variables();
    const at::Tensor &x = v[0], &w = v[1], &b = v[2], &bn_w = v[3], &bn_b = v[4], &bn_mean = v[5],
                     &bn_var = v[6];
    const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const std::vector<int64_t> dilation = ctx->saved_data["dilation"].toIntVector();
    const int64_t groups = ctx->saved_data["groups"].toInt();
    // The batch norm folded in: W' = W s, b' = (b - mean) s + beta.
    at::Tensor wf = w, bf = b;
    if (ctx->saved_data["has_bn"].toBool()) {
      const at::Tensor s = at::rsqrt(bn_var + ctx->saved_data["eps"].toDouble()) * bn_w;
      wf = w * s.view({-1, 1, 1, 1});
      bf = (b - bn_mean) * s + bn_b;
    }
    LrpLayer layer;
    layer.forward = [&](const at::Tensor& a, const at::Tensor& k, const at::Tensor& bias) {
      return at::conv2d(a, k, bias, stride, padding, dilation, groups);
    };
    layer.transpose = [&](const at::Tensor& s, const at::Tensor& a, const at::Tensor& k) {
      return std::get<0>(at::convolution_backward(s, a, k, c10::nullopt, stride, padding, dilation,
                                                  false, {0, 0}, groups, {true, false, false}));
    };
    variable_list out(14);
    if (!lrp_mode()) {
      out[0] = layer.transpose(grads[0], x, wf);  // the true gradient
    } else {
      const bool first = ctx->saved_data["first"].toBool();
      out[0] = lrp_rule(layer, first ? g_lrp.first : g_lrp.conv, grads[0], x, wf, bf,
                        kept_output(ctx, [&] { return layer.forward(x, wf, bf); }));
    }
    return out;
  }
};

class LrpLinear : public torch::autograd::Function<LrpLinear> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b, bool first) {
    at::Tensor y = at::linear(x, w, b);
    ctx->save_for_backward({x, w, b});
    keep_output(ctx, y);
    ctx->saved_data["first"] = first;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list v = ctx->get_saved_variables();
    LrpLayer layer;
    layer.forward = [](const at::Tensor& a, const at::Tensor& k, const at::Tensor& bias) {
      return at::linear(a, k, bias);
    };
    layer.transpose = [](const at::Tensor& s, const at::Tensor&, const at::Tensor& k) {
      return s.matmul(k);
    };
    variable_list out(4);
    if (!lrp_mode()) {
      out[0] = grads[0].matmul(v[1]);
    } else {
      const bool first = ctx->saved_data["first"].toBool();
      out[0] = lrp_rule(layer, first ? g_lrp.first : g_lrp.linear, grads[0], v[0], v[1], v[2],
                        kept_output(ctx, [&] { return at::linear(v[0], v[1], v[2]); }));
    }
    return out;
  }
};

template <typename Make>
at::Tensor defined_or(const c10::optional<at::Tensor>& t, Make make) {
  return t.has_value() && t->defined() ? *t : make();
}

at::Tensor lrp_conv_autograd(const at::Tensor& x, const at::Tensor& w,
                             const c10::optional<at::Tensor>& b, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                             const c10::optional<at::Tensor>& bn_w,
                             const c10::optional<at::Tensor>& bn_b,
                             const c10::optional<at::Tensor>& bn_mean,
                             const c10::optional<at::Tensor>& bn_var, double eps, bool training,
                             bool first) {
  // Autograd functions take no undefined tensors: a zero bias (exact), and
  // empty tensors for a missing batch norm, ones and zeros for its missing
  // affine parameters.
  const int64_t k = w.size(0);
  const at::Tensor bias = defined_or(b, [&] { return at::zeros({k}, w.options()); });
  const bool has_bn = bn_var.has_value() && bn_var->defined();
  const at::Tensor empty = at::empty({0}, w.options());
  return LrpConv::apply(
      x, w, bias, stride, padding, dilation, groups,
      has_bn ? defined_or(bn_w, [&] { return at::ones({k}, w.options()); }) : empty,
      has_bn ? defined_or(bn_b, [&] { return at::zeros({k}, w.options()); }) : empty,
      has_bn ? defined_or(bn_mean, [&] { return at::zeros({k}, w.options()); }) : empty,
      has_bn ? *bn_var : empty, eps, training, first);
}
at::Tensor lrp_conv_plain(const at::Tensor& x, const at::Tensor& w,
                          const c10::optional<at::Tensor>& b, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                          const c10::optional<at::Tensor>& bn_w,
                          const c10::optional<at::Tensor>& bn_b,
                          const c10::optional<at::Tensor>& bn_mean,
                          const c10::optional<at::Tensor>& bn_var, double eps, bool training,
                          bool /*first*/) {
  at::Tensor y = at::conv2d(x, w, b, stride, padding, dilation, groups);
  if (bn_var.has_value() && bn_var->defined()) {
    y = at::batch_norm(y, bn_w, bn_b, bn_mean, bn_var, training, 0.0, eps, true);
  }
  return y;
}
at::Tensor lrp_linear_autograd(const at::Tensor& x, const at::Tensor& w,
                               const c10::optional<at::Tensor>& b, bool first) {
  return LrpLinear::apply(x, w, defined_or(b, [&] { return at::zeros({w.size(0)}, w.options()); }),
                          first);
}
at::Tensor lrp_linear_plain(const at::Tensor& x, const at::Tensor& w,
                            const c10::optional<at::Tensor>& b, bool /*first*/) {
  return at::linear(x, w, b);
}

void record(std::vector<at::Tensor>& where, int64_t slot, const at::Tensor& t, bool count) {
  TapRecorder* r = g_recorder.load();
  if (r == nullptr || slot < 0 || static_cast<size_t>(slot) >= where.size()) return;
  where[slot] = t;
  if (count) {
    if (r->forward_calls[slot]++ == 0) r->first_call[slot] = r->calls_seen++;
  }
}

// Keeps what a tap returns when its slot is kept, and ends the forward pass
// once the last kept slot has run (TapRecorder::stop_after).
void keep(TapRecorder* r, int64_t slot, const at::Tensor& y) {
  if (r == nullptr || slot < 0 || static_cast<size_t>(slot) >= r->keep.size() || !r->keep[slot]) {
    return;
  }
  r->kept[slot] = y;
  if (r->stop_after > 0 && --r->stop_after == 0) {
    r->stopped = true;
    throw StopForward();
  }
}

class Tap : public torch::autograd::Function<Tap> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t slot, bool copy) {
    ctx->saved_data["slot"] = slot;
    if (TapRecorder* r = g_recorder.load()) record(r->activations, slot, x.detach(), true);
    // Returned uncopied, x becomes a view of itself with this node as its
    // grad_fn (autograd's rule for an input returned unchanged).
    return copy ? x.clone() : x;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (TapRecorder* r = g_recorder.load()) {
      record(r->gradients, ctx->saved_data["slot"].toInt(), grads[0].detach(), false);
    }
    return {grads[0], at::Tensor(), at::Tensor()};
  }
};

at::Tensor relu_autograd(const at::Tensor& x) { return ModeRelu::apply(x); }
at::Tensor relu_plain(const at::Tensor& x) { return at::relu(x); }
at::Tensor relu6_autograd(const at::Tensor& x) { return ModeRelu6::apply(x); }
at::Tensor relu6_plain(const at::Tensor& x) { return at::clamp(x, 0, 6); }
at::Tensor max_pool_autograd(const at::Tensor& x, at::IntArrayRef kernel, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  return ModeMaxPool::apply(x, kernel, stride, padding, dilation, ceil_mode);
}
at::Tensor max_pool_plain(const at::Tensor& x, at::IntArrayRef kernel, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  return at::max_pool2d(x, kernel, stride, padding, dilation, ceil_mode);
}
at::Tensor tap_autograd(const at::Tensor& x, int64_t slot, bool copy) {
  at::Tensor y = Tap::apply(x, slot, copy);
  keep(g_recorder.load(), slot, y);
  return y;
}
// Without autograd (inference mode): records, keeps and stops as the
// autograd version does.
at::Tensor tap_plain(const at::Tensor& x, int64_t slot, bool copy) {
  TapRecorder* r = g_recorder.load();
  if (r != nullptr) record(r->activations, slot, x, true);
  at::Tensor y = copy ? x.clone() : x;
  keep(r, slot, y);
  return y;
}

}  // namespace

TORCH_LIBRARY(cnnviz, m) {
  m.def("relu(Tensor x) -> Tensor");
  m.def("relu6(Tensor x) -> Tensor");
  m.def("tap(Tensor x, int slot, bool copy) -> Tensor");
  m.def(
      "max_pool2d(Tensor x, int[] kernel, int[] stride, int[] padding, int[] dilation, "
      "bool ceil_mode) -> Tensor");
  m.def(
      "lrp_conv2d(Tensor x, Tensor w, Tensor? b, int[] stride, int[] padding, int[] dilation, "
      "int groups, Tensor? bn_w, Tensor? bn_b, Tensor? bn_mean, Tensor? bn_var, float bn_eps, "
      "bool bn_training, bool first) -> Tensor");
  m.def("lrp_linear(Tensor x, Tensor w, Tensor? b, bool first) -> Tensor");
}

// The forward-only kernels, the same on every device.
static void impl_plain(torch::Library& m) {
  m.impl("relu", relu_plain);
  m.impl("relu6", relu6_plain);
  m.impl("tap", tap_plain);
  m.impl("max_pool2d", max_pool_plain);
  m.impl("lrp_conv2d", lrp_conv_plain);
  m.impl("lrp_linear", lrp_linear_plain);
}

TORCH_LIBRARY_IMPL(cnnviz, CPU, m) { impl_plain(m); }

TORCH_LIBRARY_IMPL(cnnviz, CUDA, m) { impl_plain(m); }

TORCH_LIBRARY_IMPL(cnnviz, Autograd, m) {
  m.impl("relu", relu_autograd);
  m.impl("relu6", relu6_autograd);
  m.impl("tap", tap_autograd);
  m.impl("max_pool2d", max_pool_autograd);
  m.impl("lrp_conv2d", lrp_conv_autograd);
  m.impl("lrp_linear", lrp_linear_autograd);
}

void TapRecorder::reset(size_t slots) {
  activations.assign(slots, at::Tensor());
  gradients.assign(slots, at::Tensor());
  forward_calls.assign(slots, 0);
  first_call.assign(slots, -1);
  calls_seen = 0;
  kept.assign(slots, at::Tensor());
  keep.assign(slots, 0);
  stop_after = 0;
  stopped = false;
}

void set_redirect(bool redirect) { g_redirect.store(redirect); }

void ensure_registered() {
  // Referencing this translation unit is what keeps its static registrars.
  static const bool registered = true;
  (void)registered;
  ensure_transformer_ops_registered();
}

void set_relu_mode(ReluMode mode) { g_relu_mode.store(static_cast<int>(mode)); }
void set_recorder(TapRecorder* recorder) { g_recorder.store(recorder); }
void set_paired(bool paired) { g_paired.store(paired); }
void set_lrp(const LrpSettings& settings) { g_lrp = settings; }
bool lrp_backward() { return lrp_mode(); }
const LrpSettings& lrp_settings() { return g_lrp; }

std::mutex& lock() {
  static std::mutex m;
  return m;
}

}  // namespace cnnviz::ops
