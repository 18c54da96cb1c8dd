#include "ops.h"

#include <torch/library.h>
#include <torch/torch.h>

#include <atomic>

namespace cnnviz::ops {

namespace {

std::atomic<int> g_relu_mode{static_cast<int>(ReluMode::kPlain)};
std::atomic<TapRecorder*> g_recorder{nullptr};

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
      break;
  }
  return pass(g);
}

class ModeRelu : public torch::autograd::Function<ModeRelu> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    at::Tensor y = at::relu(x);
    ctx->save_for_backward({y});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // threshold_backward(t, y, 0) is t where y > 0, else 0: ReLU's own
    // backward kernel, one pass over memory.
    const at::Tensor y = ctx->get_saved_variables()[0];
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
    ctx->save_for_backward({y});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // hardtanh_backward(t, y, 0, 6) is t where 0 < y < 6, else 0 (y is in
    // (0, 6) exactly where x is).
    const at::Tensor y = ctx->get_saved_variables()[0];
    return {mode_backward(grads[0],
                          [&](const at::Tensor& t) { return at::hardtanh_backward(t, y, 0, 6); })};
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
}

TORCH_LIBRARY_IMPL(cnnviz, CPU, m) {
  m.impl("relu", relu_plain);
  m.impl("relu6", relu6_plain);
  m.impl("tap", tap_plain);
}

TORCH_LIBRARY_IMPL(cnnviz, CUDA, m) {
  m.impl("relu", relu_plain);
  m.impl("relu6", relu6_plain);
  m.impl("tap", tap_plain);
}

TORCH_LIBRARY_IMPL(cnnviz, Autograd, m) {
  m.impl("relu", relu_autograd);
  m.impl("relu6", relu6_autograd);
  m.impl("tap", tap_autograd);
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

std::mutex& lock() {
  static std::mutex m;
  return m;
}

}  // namespace cnnviz::ops
