// The capture engine: one forward pass that records every requested layer's
// output, then any number of backward passes (plain, guided, deconvnet) that
// record the gradients at those layers and at the input.
//
// How (see docs/architecture.md, "How the engine works"): the model's forward graph is
// copied and fully inlined. Before each call of a requested layer is
// inlined, a cnnviz::tap operator is spliced after it; after inlining, every
// aten::relu/relu_ (nested in blocks, functional, in-place, in `if` branches)
// becomes cnnviz::relu, whose backward follows the mode of the pass. The
// model's own module is not modified.
#ifndef CNNVIZ_CORE_ENGINE_H_
#define CNNVIZ_CORE_ENGINE_H_

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/detections.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/targets.h"

namespace cnnviz {

// How the backward passes through ReLUs (and max-pooling): the true
// gradient, guided backpropagation, deconvnet, or DeepLIFT's rescale rule
// (multipliers against the references of a paired pass; see Engine::run).
enum class Backprop { kPlain, kGuided, kDeconv, kRescale, kLrp };

// Layer-wise relevance propagation's rules for convolutions and linear layers
// (an engine built with `lrp`; see docs/methods.md). The backward then carries
// c with relevance R = z * c at each value z, so that ReLUs, poolings,
// additions, concatenations and reshapes split relevance in proportion to
// their inputs by their own gradient.
enum class LrpRule { kEpsilon = 0, kZPlus = 1, kGamma = 2, kAlphaBeta = 3, kFlat = 4, kBox = 5 };
struct LrpRules {
  LrpRule first = LrpRule::kFlat;  // the convolution or linear layer the input reaches first
  LrpRule conv = LrpRule::kZPlus;  // every other convolution
  LrpRule linear = LrpRule::kEpsilon;
  double epsilon = 1e-6, gamma = 0.25, alpha = 2, beta = 1;
  std::vector<float> low, high;  // the box rule's input bounds, per input channel
  // Attention (AttnLRP's rules otherwise): no relevance through the
  // attention weights, all of it to the values (CP-LRP, conservative).
  bool conservative_attention = false;
};

// What graph instrumentation found.
struct GraphReport {
  int guided_relus = 0;                 // aten::relu / relu_ nodes replaced
  int guided_relu6s = 0;                // relu6 / hardtanh(0, 6) nodes replaced
  std::map<std::string, int> unguided;  // other activations ("aten::silu": 16)
  int copied_taps = 0;                  // taps that copy the layer's output (in-place writers)
  int max_pools = 0;                    // aten::max_pool2d nodes replaced (DeepLIFT's rule)
  int lrp_layers = 0;                   // convolutions and linear layers with LRP rules (lrp)
  int folded_batch_norms = 0;           // batch norms folded into their convolution (lrp)
  int lrp_transformer_ops = 0;          // layer norms, GELUs and products with AttnLRP's rules (lrp)
};

// One addressable layer: a module that forward calls.
struct LayerInfo {
  std::string path;            // module path, "features.29"
  std::string type;            // class name, "ReLU", "Fire", "Bottleneck"
  std::vector<int64_t> shape;  // output shape for one crop-sized input; empty if not a tensor
  int calls = 0;               // times it runs in one forward pass
};

class Pass;

// The pseudo-layer whose "output" is the input of the model's global average
// pooling (adaptive_avg_pool2d to 1x1, or a mean over H and W): the feature
// map that CAM weighs. Request it like a layer path.
constexpr const char* kGlobalPoolInput = "(global pool input)";

// The pseudo-layer that stands for every attention of the model, for the
// methods made for attention: request it like a layer path, and read the
// attentions from Pass::attention(). An attention is a softmax whose result
// weighs values (it is the first operand of a bmm or matmul), credited to the
// innermost module whose forward computes it. nn.MultiheadAttention's fused
// inference path forms the weights only when asked: an engine with backward
// passes takes the explicit path instead (the fused one has no backward),
// and one without (Engine's `backward`) asks the fused one for its per-head
// weights where the model did not.
constexpr const char* kAttentionLayers = "(attention)";

// One attention as a pass saw it.
struct AttentionRecord {
  std::string path;                  // the module that computes it ("...encoder_layer_0.self_attention")
  at::Tensor weights;                // the softmax's output, detached: [..., T, T] as the graph forms it
  at::Tensor gradient;               // its gradient from the latest backward; undefined before one
  std::vector<int64_t> input_shape;  // the module's first input ([N,T,C] for attention over all tokens)
  int calls = 0;                     // times it ran in the forward pass
};

class Engine {
 public:
  // Instruments `model` to record the layers in `layers` (module paths, or
  // kGlobalPoolInput). Throws Error(kUnsupported) for a path that forward
  // never calls, with the nearest existing paths as a hint, and for
  // kGlobalPoolInput when the model has no global average pooling, and for
  // kAttentionLayers when it has no attention.
  //
  // With `unit`, backward passes differentiate that channel or neuron of its
  // layer (targets.h) instead of the logits: the layer is tapped too, and
  // each Pass's explained() is the unit's value [N,1] (class 0 is the
  // unit). Throws Error(kUnsupported) when the unit's layer is not found.
  //
  // With `lrp`, every convolution (with the eval-mode batch norm that follows
  // it) and linear layer gets LRP's rules for Pass::relevance(), and so do
  // the transformer's operations (AttnLRP: LayerNorm, GELU, products of two
  // computed tensors, softmax); operations that have none (other
  // normalizations, activations other than ReLU) are counted in
  // report().unguided.
  //
  // Without `backward`, passes record no autograd graph (for methods that
  // read the forward pass only): Pass::backward() and relevance() then throw
  // Error(kRuntime).
  Engine(const Model& model, const std::vector<std::string>& layers,
         std::optional<Unit> unit = std::nullopt, bool lrp = false, bool backward = true);
  ~Engine();
  Engine(Engine&&) noexcept;

  const GraphReport& report() const;
  const std::vector<std::string>& layers() const;
  const std::optional<Unit>& unit() const;

  // For objectives of their own (feature visualization): each Pass then keeps
  // the requested layers' outputs attached to the autograd graph
  // (Pass::output), and with `stop` the forward pass ends as soon as all of
  // them have run, so the rest of the network costs nothing (the Pass then
  // has no logits). Without `grad`, passes record no autograd graph (for
  // reading activations only). Throws Error(kRuntime) on an engine with a
  // unit.
  void keep_outputs(bool stop, bool grad = true);

  // Every layer of `model` in forward order with its type and output shape
  // for one input of the model's crop size (one forward pass without
  // autograd), and what instrumentation found.
  struct Description {
    std::vector<LayerInfo> layers;
    GraphReport report;
  };
  static Description describe(const Model& model);

  // Runs forward on batch [N,C,H,W] (C: the model's input channels) (float32, normalized; moved to
  // the model's device) with autograd recording; recorded activations, gradients and method maps
  // stay on that device. Throws OutOfMemory when the device runs out of memory. Only one Pass may
  // be alive at a time in a process: run() and describe() throw Error(kRuntime) while another one
  // is.
  //
  // paired: the batch is [inputs; references] (2N rows, row i paired with
  // row N + i), for Backprop::kRescale; its ReLUs keep their inputs too.
  //
  // A segmenter's pass (ModelInfo::task) explains the class scores of its
  // pixels' own labels (targets.h, class_scores) within `region` ([H,W]
  // bool on the input grid; undefined: every pixel); a paired pass's
  // references are scored over the inputs' labels. A detector's pass
  // (a DetectLayout) explains its detections (core/detections.h, found with
  // `detect`): "class" k of an image is its detection k, best first, or,
  // for an image with box queries, the detections matching query k.
  Pass run(const at::Tensor& batch, bool paired = false, const at::Tensor& region = {},
           const DetectSettings& detect = {}) const;

  const Model& model() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  friend class Pass;
};

// The state of one forward pass: logits, recorded activations, and the
// autograd graph for the backward passes.
class Pass {
 public:
  ~Pass();
  Pass(Pass&&) noexcept;

  // [N,C] float32, detached, on the CPU. A segmenter's are the log of each
  // class's share of the labelled pixels (targets.h, log_area_shares).
  const at::Tensor& logits() const;
  // What backward() differentiates a score of, [N,K] float32, detached, on
  // the CPU: the logits (a segmenter's class scores), or the engine's
  // unit's value [N,1].
  const at::Tensor& explained() const;
  // A segmenter's pixel labels [N,h,w] int64 (targets.h, pixel_labels), on
  // the model's device; undefined for a classifier.
  const at::Tensor& labels() const;
  // A detector's detections per image, in the input's pixels, best first;
  // empty for other models. A detector's logits() are its targets' scores
  // (detection_groups), -inf where an image has fewer targets than the most
  // of the batch and for a query that matches no detection.
  const std::vector<std::vector<Detection>>& detections() const;
  // A detector's targets per image (detections.h): what "class" k of image
  // n sums; empty for other models.
  const DetectionGroups& detection_groups() const;
  const at::Tensor& input() const;  // the batch it ran on, [N,3,H,W], on the model's device
  // A two-stage detector's proposals (ModelInfo::proposals), which every
  // pass of its image scores; undefined for other models.
  const at::Tensor& proposals() const;

  // The output of layer `i` (index into Engine::layers()), [N,...] detached.
  // Throws Error(kUnsupported) when the layer did not run exactly once.
  const at::Tensor& activation(size_t i) const;

  // With Engine::keep_outputs: layer i's output attached to the autograd
  // graph, as the layer returned it; throws Error(kUnsupported) when it did
  // not run exactly once. attached_logits() is the logits on the model's
  // device, attached (undefined when the pass stopped early).
  const at::Tensor& output(size_t i) const;
  const at::Tensor& attached_logits() const;
  // Backpropagates the scalar `objective`, computed from output() or
  // attached_logits(), with true gradients (no rule at any ReLU), freeing the
  // autograd graph. Returns the gradient at the input, [N,C,H,W].
  at::Tensor gradient_of(const at::Tensor& objective);

  // Backpropagates sum_n target_scores(explained, classes, score)[n] (the
  // logit of classes[n] by default; targets.h) with every ReLU's backward in
  // `mode`, keeping the autograd graph for further passes. Returns the
  // gradient at the input, [N,3,H,W]; gradient(i) then holds the gradient at
  // layer i from this pass. Throws Error(kUsage) for a class out of range,
  // Error(kRuntime) for kRescale on a pass that is not paired.
  at::Tensor backward(const std::vector<int64_t>& classes, Backprop mode, const Score& score = {});
  const at::Tensor& gradient(size_t i) const;

  // With kAttentionLayers among the engine's layers: every attention in
  // forward order (engine.h, AttentionRecord). Throws Error(kRuntime) on an
  // engine without it.
  std::vector<AttentionRecord> attention() const;

  // LRP: c at the input (relevance = input * c) of the score, with `rules`;
  // gradient(i) then holds c at layer i. Throws Error(kRuntime) when the
  // engine was not built with `lrp`.
  at::Tensor relevance(const std::vector<int64_t>& classes, const LrpRules& rules,
                       const Score& score = {});

  // Another forward pass of the same engine on `batch`, nested in this one
  // (for methods that need passes of their own: SmoothGrad, Integrated
  // Gradients). It shares this pass's hold on the process-wide taps, so it
  // must be destroyed before this pass is used again or destroyed. Row i of
  // `batch` is a variant of this pass's image rows[i]: a segmenter's nested
  // pass scores it over that image's labels.
  Pass nested(const at::Tensor& batch, const std::vector<int64_t>& rows) const;

 private:
  friend class Engine;
  struct Impl;
  explicit Pass(std::unique_ptr<Impl> impl);
  static void start(Impl& p, const Engine::Impl& engine, const at::Tensor& batch, bool paired);
  static at::Tensor unit_value(Impl& p, const Engine::Impl& engine);
  // A detector's scores from its output `out`: its detections and their
  // groups (found on a first pass, kept by nested ones), its proposals.
  static void score_detections(Impl& p, const Engine::Impl& engine, const c10::IValue& out);
  std::unique_ptr<Impl> impl_;
};

// The feature stages of a model, from its layers (Engine::describe, forward
// order), with no per-architecture knowledge. A layer qualifies when it runs
// once and its output reads as a spatial map (feature_map.h: [N,C,h,w],
// [N,h,w,C] or a square grid of tokens, h*w > 1). Starting at the root
// module, take the qualifying direct children (a module that never runs
// itself, such as a ModuleList, or returns no tensor, such as a segmenter's
// backbone returning a dict, is see-through); while exactly one of them
// has qualifying children of its own (a container such as VGG's
// `features`), descend into it; when several do but only one of those has
// containers among its children (RegNet's `trunk_output` beside its
// `stem`), descend into that one. vgg16: features.0..30; resnet50: conv1, bn1,
// relu, maxpool, layer1..4; googlenet: conv1 ... inception5b; mobilenet_v2
// and efficientnet_b0: features.0..18 / features.0..8; vit_b_16:
// encoder.layers.encoder_layer_0..11; swin_t and convnext_tiny:
// features.0..7; maxvit_t: stem, blocks.0..3; regnet_y_400mf:
// trunk_output.block1..4; fcn_resnet50 and deeplabv3_resnet50:
// backbone.conv1 ... backbone.layer4, classifier; lraspp_mobilenet_v3_large:
// backbone.0..16, classifier.
std::vector<std::string> feature_stages(const std::vector<LayerInfo>& layers);

// The receptive field of a layer's output read as a map (feature_map.h),
// from the convolutions and poolings between the input and the layer (their
// kernels, strides, paddings and dilations; merges take the union of their
// inputs' fields): position i along axis a (0: rows, 1: columns) sees the
// input pixels [start[a] + i * stride[a], start[a] + i * stride[a] + size[a])
// clipped to the image. `global` when an operation on the way mixes every
// position (a global pooling, a mean, a reshape, attention): each position
// then sees the whole image. Throws Error(kUnsupported) for a layer forward
// never calls.
struct ReceptiveField {
  int64_t size[2] = {1, 1}, stride[2] = {1, 1}, start[2] = {0, 0};
  bool global = false;
};
ReceptiveField receptive_field(const Model& model, const std::string& layer);

// The input box [y0, y1) x [x0, x1) that position (y, x) of a map with field
// `rf` sees in an input of height x width.
struct PixelBox {
  int64_t y0 = 0, x0 = 0, y1 = 0, x1 = 0;
};
PixelBox receptive_box(const ReceptiveField& rf, int64_t y, int64_t x, int64_t height,
                       int64_t width);

// Up to `max` entries of `candidates` closest to `name` (edit distance, then
// shared prefix), for "did you mean" hints.
std::vector<std::string> near_matches(const std::string& name,
                                      const std::vector<std::string>& candidates, size_t max = 5);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_ENGINE_H_
