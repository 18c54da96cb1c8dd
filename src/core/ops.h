// The custom TorchScript operators the engine splices into a model's
// graph (internal to cnnviz_core):
//
//   cnnviz::relu(Tensor x) -> Tensor
//     Forward: relu(x), out of place. Backward, chosen when the backward pass
//     runs (so one forward serves several backward passes):
//       kPlain    g * (y > 0)            (the true gradient)
//       kGuided   max(g, 0) * (y > 0)    (guided backpropagation)
//       kDeconv   max(g, 0)              (deconvnet)
//
//   cnnviz::relu6(Tensor x) -> Tensor
//     The same for ReLU6, clamp(x, 0, 6): the gate (y > 0) becomes
//     (0 < y < 6); kDeconv passes max(g, 0) as for ReLU.
//
//   cnnviz::max_pool2d(Tensor x, int[] kernel, int[] stride, int[] padding,
//                      int[] dilation, bool ceil_mode) -> Tensor
//     Forward: max_pool2d. Backward: the true gradient (to each window's
//     maximum), except in kRescale mode (below).
//
//   kRescale (DeepLIFT's rescale rule) needs a paired forward pass: the batch
//   is [inputs; references], rows i and N + i a pair, run while
//   set_paired(true) so that the ReLUs keep their inputs. The inputs' rows
//   then get, with dx = x - x' and dy = y - y' of their pair:
//     relu, relu6  g * dy / dx where |dx| >= 1e-10, else the true gradient
//     max_pool2d   U / dx where |dx| >= 1e-10, else the true gradient, with
//                  U the scatter-add of g * (max(y, y') - y') to the
//                  inputs' maxima plus g * (y - max(y, y')) to the
//                  references' maxima (sum U = sum g dy: Captum's rule)
//   and the references' rows get 0.
//
//   cnnviz::lrp_conv2d(Tensor x, Tensor w, Tensor? b, int[] stride, int[] padding,
//                      int[] dilation, int groups, Tensor? bn_w, Tensor? bn_b,
//                      Tensor? bn_mean, Tensor? bn_var, float bn_eps, bool first)
//   cnnviz::lrp_linear(Tensor x, Tensor w, Tensor? b, bool first)
//     Forward: the convolution (then the eval-mode batch norm that followed
//     it in the graph, when bn_var is given) or the linear layer, computed as
//     before. Backward: the true gradient, except in kLrp mode, where the
//     incoming gradient is read as c with relevance R = z * c at the output z
//     and the layer's rule (LrpSettings: the first layer's rule when `first`)
//     gives the input's relevance R_in, returned as c_in with R_in = x * c_in.
//     The batch norm is folded into the convolution first (W' = W s, b' = (b -
//     mean) s + beta, s = gamma / sqrt(var + eps)).
//
//   cnnviz::lrp_layer_norm(Tensor x, int[] shape, Tensor? w, Tensor? b, float eps)
//   cnnviz::lrp_gelu(Tensor x, str approximate)
//   cnnviz::lrp_matmul(Tensor a, Tensor b, bool weights)
//     (lrp_transformer_ops.cpp) Forward: layer_norm, gelu, matmul. Backward:
//     the true gradient, except in kLrp mode, AttnLRP's rules (Achtibat et
//     al. 2024) in the same R = z * c reading: layer norm with its standard
//     deviation held constant (the identity rule on the normalization), GELU
//     passing relevance unchanged (c_in = c * y / x), and a product of two
//     computed tensors giving each factor half (the uniform rule). With
//     LrpSettings::conservative_attention, a product whose first factor is
//     an attention's weights (`weights`) gives it nothing and the values all
//     (CP-LRP). The softmax keeps its gradient, which is AttnLRP's rule.
//
//   cnnviz::tap(Tensor x, int slot, bool copy) -> Tensor
//     Forward: records x (the layer's true output) in the active TapRecorder
//     and returns x, or a copy of it when `copy` is set: the engine sets it
//     where the graph writes in place to x or to what is computed from it, so
//     that nothing can alter what was recorded. Backward: records the
//     incoming gradient, passes it through.
#ifndef CNNVIZ_CORE_OPS_H_
#define CNNVIZ_CORE_OPS_H_

#include <ATen/core/Tensor.h>

#include <exception>
#include <mutex>
#include <vector>

namespace cnnviz::ops {

enum class ReluMode { kPlain = 0, kGuided = 1, kDeconv = 2, kRescale = 3, kLrp = 4 };

// LRP's rules for cnnviz::lrp_conv2d and cnnviz::lrp_linear in kLrp mode (see
// engine.h, LrpRules; values of cnnviz::LrpRule).
struct LrpSettings {
  int first = 0, conv = 0, linear = 0;
  double epsilon = 1e-6, gamma = 0.25, alpha = 2, beta = 1;
  std::vector<float> low, high;  // per input channel (the box rule)
  bool conservative_attention = false;
};

// What the taps saw during one forward and the backward passes after it.
struct TapRecorder {
  std::vector<at::Tensor> activations;  // per slot, detached
  std::vector<at::Tensor> gradients;    // per slot, from the latest backward
  std::vector<int> forward_calls;       // how often each slot ran in the forward
  std::vector<int> first_call;          // order of each slot's first run, -1 if none
  int calls_seen = 0;
  // Per slot: whether its output is kept attached to the autograd graph (the
  // --unit layer's, or every layer of an engine with keep_outputs), and that
  // output.
  std::vector<char> keep;
  std::vector<at::Tensor> kept;
  // When positive, the forward pass stops (the tap throws StopForward) once
  // that many kept outputs have been recorded; `stopped` then tells the
  // exception the interpreter rethrows from a failure.
  int stop_after = 0;
  bool stopped = false;
  // Clears what a pass recorded and which slots to keep.
  void reset(size_t slots);
};

// What a tap throws to end a forward pass early (TapRecorder::stop_after).
struct StopForward : std::exception {
  const char* what() const noexcept override { return "cnnviz: forward pass stopped early"; }
};

// Makes sure the operators are registered (the static library's registration
// object must be linked in). Idempotent and cheap.
void ensure_registered();
// The same for the transformer operators' file (lrp_transformer_ops.cpp).
void ensure_transformer_ops_registered();

// Sets the backward mode of every cnnviz::relu and the recorder the taps write
// to (nullptr: taps only copy). Both are process-wide: hold lock() while a
// pass that uses them runs.
void set_relu_mode(ReluMode mode);
// While set, forward passes are paired (see kRescale).
void set_paired(bool paired);
void set_lrp(const LrpSettings& settings);
// For the operators of other files: whether backward passes now run in kLrp
// mode, and the settings of that pass.
bool lrp_backward();
const LrpSettings& lrp_settings();
// While set, kPlain backward passes redirect ReLUs (Lucid's
// redirected_relu_grad, for feature visualization): where an image's
// gradient through a ReLU (or ReLU6) is zero everywhere, the ReLU passes
// g where it is open and max(g, 0) where it is closed instead, so that an
// objective that starts dead (every unit below zero) still gets a direction
// that raises it. The backward must differentiate what is maximized.
void set_redirect(bool redirect);
void set_recorder(TapRecorder* recorder);
std::mutex& lock();

}  // namespace cnnviz::ops

#endif  // CNNVIZ_CORE_OPS_H_
