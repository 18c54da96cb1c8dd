#include "ops.h"

#include <torch/library.h>
#include <torch/torch.h>

#include <atomic>

namespace cnnviz::ops {

namespace {

std::atomic<int> g_relu_mode{static_cast<int>(ReluMode::kPlain)};
std::atomic<TapRecorder*> g_recorder{nullptr};
std::atomic<bool> g_paired{false};

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
    case ReluMode::kRescale:  // handled by the callers
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

class ModeRelu : public torch::autograd::Function<ModeRelu> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    at::Tensor y = at::relu(x);
    // The input only for a paired pass (it costs a copy of every activation).
    ctx->save_for_backward(g_paired.load() ? variable_list{y, x} : variable_list{y});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // threshold_backward(t, y, 0) is t where y > 0, else 0: ReLU's own
    // backward kernel, one pass over memory.
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& y = saved[0];
    if (rescaling()) {
      return {rescale_backward(grads[0], saved.size() > 1 ? saved[1] : at::Tensor(), y,
                               [](const at::Tensor& t, const at::Tensor& out) {
                                 return at::threshold_backward(t, out, 0);
                               })};
    }
    return {mode_backward(grads[0],
                          [&](const at::Tensor& t) { return at::threshold_backward(t, y, 0); })};
  }
};

// ReLU6, min(max(x, 0), 6) (MobileNetV2), with the same three modes; its
// gate is open where 0 < y < 6.
class ModeRelu6 : public torch::autograd::Function<ModeRelu6> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    at::Tensor y = at::clamp(x, 0, 6);
    ctx->save_for_backward(g_paired.load() ? variable_list{y, x} : variable_list{y});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // hardtanh_backward(t, y, 0, 6) is t where 0 < y < 6, else 0 (y is in
    // (0, 6) exactly where x is).
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& y = saved[0];
    if (rescaling()) {
      return {rescale_backward(grads[0], saved.size() > 1 ? saved[1] : at::Tensor(), y,
                               [](const at::Tensor& t, const at::Tensor& out) {
                                 return at::hardtanh_backward(t, out, 0, 6);
                               })};
    }
    return {mode_backward(grads[0],
                          [&](const at::Tensor& t) { return at::hardtanh_backward(t, y, 0, 6); })};
  }
};

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

void record(std::vector<at::Tensor>& where, int64_t slot, const at::Tensor& t, bool count) {
  TapRecorder* r = g_recorder.load();
  if (r == nullptr || slot < 0 || static_cast<size_t>(slot) >= where.size()) return;
  where[slot] = t;
  if (count) {
    if (r->forward_calls[slot]++ == 0) r->first_call[slot] = r->calls_seen++;
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
  if (TapRecorder* r = g_recorder.load(); r != nullptr && r->keep_slot == slot) r->kept = y;
  return y;
}
at::Tensor tap_plain(const at::Tensor& x, int64_t slot, bool copy) {
  if (TapRecorder* r = g_recorder.load()) record(r->activations, slot, x, true);
  return copy ? x.clone() : x;
}

}  // namespace

TORCH_LIBRARY(cnnviz, m) {
  m.def("relu(Tensor x) -> Tensor");
  m.def("relu6(Tensor x) -> Tensor");
  m.def("tap(Tensor x, int slot, bool copy) -> Tensor");
  m.def(
      "max_pool2d(Tensor x, int[] kernel, int[] stride, int[] padding, int[] dilation, "
      "bool ceil_mode) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnviz, CPU, m) {
  m.impl("relu", relu_plain);
  m.impl("relu6", relu6_plain);
  m.impl("tap", tap_plain);
  m.impl("max_pool2d", max_pool_plain);
}

TORCH_LIBRARY_IMPL(cnnviz, CUDA, m) {
  m.impl("relu", relu_plain);
  m.impl("relu6", relu6_plain);
  m.impl("tap", tap_plain);
  m.impl("max_pool2d", max_pool_plain);
}

TORCH_LIBRARY_IMPL(cnnviz, Autograd, m) {
  m.impl("relu", relu_autograd);
  m.impl("relu6", relu6_autograd);
  m.impl("tap", tap_autograd);
  m.impl("max_pool2d", max_pool_autograd);
}

void TapRecorder::reset(size_t slots) {
  activations.assign(slots, at::Tensor());
  gradients.assign(slots, at::Tensor());
  forward_calls.assign(slots, 0);
  first_call.assign(slots, -1);
  calls_seen = 0;
  kept = at::Tensor();
}

void ensure_registered() {
  // Referencing this translation unit is what keeps its static registrars.
  static const bool registered = true;
  (void)registered;
}

void set_relu_mode(ReluMode mode) { g_relu_mode.store(static_cast<int>(mode)); }
void set_recorder(TapRecorder* recorder) { g_recorder.store(recorder); }
void set_paired(bool paired) { g_paired.store(paired); }

std::mutex& lock() {
  static std::mutex m;
  return m;
}

}  // namespace cnnviz::ops
