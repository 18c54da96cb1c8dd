// Visualization methods: the registry, the one place a method's facts live
// (name, aliases, summary, backward modes, output kind, parameters, layer
// needs), and the per-class view of a capture pass the methods compute from.
// Methods return raw float maps; they never touch files, colormaps or images
// (render.h draws them, by output kind, never by name).
//
// Adding a method: one file in src/methods/ with its compute function, one
// row in method_table() (src/methods/registry.cpp), one line in CMakeLists.
// The CLI subcommand, its options, the rendering, the manifest and the error
// messages all follow from the row.
#ifndef CNNVIZ_METHODS_METHODS_H_
#define CNNVIZ_METHODS_METHODS_H_

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/maps.h"
#include "cnnviz/core/tensor_ops.h"

namespace cnnviz {

// Settings of the methods that take any (a method reads only the ones its
// MethodDef::params names; param_table() describes each).
struct MethodParams {
  int samples = 50;                    // SmoothGrad: noisy copies per image
  double noise = 0.15;                 // SmoothGrad: sigma / (max - min) of the input
  uint64_t seed = 0;                   // SmoothGrad: the noise's random seed
  std::string smooth_of = "saliency";  // SmoothGrad over "saliency" or "guided-backprop"
  int steps = 50;                      // Integrated Gradients: Riemann steps
  std::string baseline = "black";      // Integrated Gradients: "black", "blurred" or "mean"
  double blur_sigma = 10.0;            // the blurred baseline's (and fill's) Gaussian sigma, pixels
  int window = 32;                     // Occlusion: side of the square window, pixels
  int stride = 16;                     // Occlusion: step between windows, pixels
  std::string fill = "mean";           // Occlusion: "mean", "black" or "blur"
  int masks = 1000;                    // RISE: random masks per image
  int grid = 7;                        // RISE: cells per side of a mask's grid
  double keep = 0.5;                   // RISE: probability that a cell is kept
  std::string composite = "epsilon-plus-box";  // LRP: the rules per layer kind
  std::string rule = "composite";               // LRP: one rule for every layer instead
  double epsilon = 1e-6;                        // LRP: epsilon rule's stabilizer
  double gamma = 0.25;                          // LRP: gamma rule's weight of positive weights
  double alpha = 2.0, beta = 1.0;               // LRP: alpha-beta rule (alpha - beta = 1)
  std::string attention_rule = "attnlrp";       // LRP through attention: "attnlrp" or "cp"
  int head = -1;                      // attention: one head's map (-1: the mean of the heads)
  bool every_head = false;            // attention: each head's map too (the explorer's picker)
  std::string head_fusion = "mean";   // rollout: how the heads combine (mean, max, min)
  double discard_ratio = 0.9;         // rollout: the share of weakest attention set to zero
  int sample_batch = 16;  // images per pass for samples, steps, masks and windows
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};  // the model's normalization, for
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};   // the black baseline (set by the run)
  // What the method explains (method_score(); set by the runs). Unset: each
  // method's own default, the first of its row's `scores` (the logit, or
  // Score-CAM's probability).
  std::optional<Score> score;
  // A segmenter's region (--region): [H,W] bool on the network's input grid,
  // the pixels its targets count (targets.h, pixel_labels). Undefined: all.
  at::Tensor region;
  // A detector's decoding: which boxes are its targets (core/detections.h).
  DetectSettings detect;
};

// One setting of MethodParams as a command-line option and a manifest entry.
struct ParamDef {
  using Field = std::variant<int MethodParams::*, double MethodParams::*, uint64_t MethodParams::*,
                             std::string MethodParams::*>;
  std::string name;  // manifest key; the option is "--" + name with '_' as '-'
  std::string help;
  Field field;
  double min = 0, max = 0;           // inclusive range of a numeric value (when min < max)
  std::vector<std::string> choices;  // allowed values of a string (when not empty)
  bool changes_maps = true;          // false: only how fast (recorded nowhere, not part of resume)

  std::string flag() const;  // "--blur-sigma"
};

// Every parameter any method takes, in the order help lists them.
const std::vector<ParamDef>& param_table();
// Throws Error(kRuntime) for a name that is not in param_table().
const ParamDef& find_param(const std::string& name);

// One capture pass seen for one target class per image: memoizes the
// backward passes so that methods sharing one (Grad-CAM and guided Grad-CAM,
// say) do not repeat it.
class Capture {
 public:
  // classes: one target class per image of the pass.
  Capture(const Engine& engine, Pass& pass, std::vector<int64_t> classes, MethodParams params = {});

  const std::vector<int64_t>& classes() const { return classes_; }
  const MethodParams& params() const { return params_; }
  const Engine& engine() const { return engine_; }
  Pass& pass() { return pass_; }
  at::Tensor input() const { return pass_.input().detach(); }  // [N,3,H,W]
  const std::vector<std::string>& layers() const { return engine_.layers(); }
  std::optional<size_t> layer_index(const std::string& path) const;
  const at::Tensor& logits() const { return pass_.logits(); }
  // The `score` of class `cls` for `variants` [M,3,H,W], perturbed copies of
  // the pass's image `image`, [M] on the CPU: through the model's inference
  // module (no autograd), a segmenter's over that image's pixel labels.
  at::Tensor variant_scores(int64_t image, const at::Tensor& variants, int64_t cls,
                            const Score& score) const;
  // A detector's prediction rows [M,A,5+C] (detections.h, prediction_rows)
  // for `variants` [M,3,H,W], through the inference module, on the CPU.
  // Both score a two-stage detector's variants at the pass's proposals.
  at::Tensor variant_rows(const at::Tensor& variants) const;
  // What a detector's target `cls` of image `image` is about, in the
  // input's pixels: its detection, or a box query's box with the query's
  // label (else its best match's). Throws Error(kUnsupported) for a model
  // that is not a detector.
  Detection target_box(int64_t image, int64_t cls) const;

  // d score(classes) / d input (params().score: the logit by default) with
  // every ReLU's backward in `mode`, [N,3,H,W].
  at::Tensor input_gradient(Backprop mode);
  // The output of layer i and the plain gradient there, [N,...].
  const at::Tensor& activation(size_t i) const;
  at::Tensor layer_gradient(size_t i);

 private:
  const Engine& engine_;
  Pass& pass_;
  std::vector<int64_t> classes_;
  MethodParams params_;
  std::map<Backprop, at::Tensor> input_grads_;
  std::vector<at::Tensor> layer_grads_;  // from the plain backward
};

// Which layers a method needs.
enum class LayerUse {
  kNone,             // none: input gradients of the whole network
  kChosen,           // the ones asked for (--layer, --all-layers), else the default layer
  kGlobalPoolInput,  // the input of the classifier's global average pooling (CAM)
  kOptional,         // the ones asked for (--layer, --all-layers), else none (LRP's per-layer maps)
  kAttention,        // every attention of the model (kAttentionLayers); maps per attention block
};

// A method's result for one layer (or none): float32, unnormalized, [N,...]
// as its MapKind says.
struct MethodMap {
  std::string layer;  // empty for input-space maps of the whole network
  at::Tensor value;
  int head = -1;  // one attention head's map (MethodParams::every_head); -1: not one head's
  bool input_space() const { return value.dim() == 4; }
};

struct MethodDef {
  std::string name;                  // subcommand name, e.g. "guided-gradcam"
  std::vector<std::string> aliases;  // other subcommand names, e.g. "gbp"
  std::string summary;               // one line for --help and the explorer
  MapKind output = MapKind::kLayerMap;
  LayerUse layers = LayerUse::kNone;
  std::vector<std::string> params;  // names in param_table() it reads
  // The backward passes it runs, given its settings.
  std::vector<Backprop> (*backprops)(const MethodParams&) = nullptr;
  // The scores it can explain (--score); the first is its default. Empty:
  // its maps do not depend on the target (Eigen-CAM).
  std::vector<ScoreKind> scores{ScoreKind::kLogit, ScoreKind::kProbability,
                                ScoreKind::kLogProbability, ScoreKind::kSigmoid};
  bool counterfactual = true;  // it can explain the negated score
  // It can explain a --unit (targets.h): its maps follow from gradients of
  // the target alone. Not CAM (the classifier's weights of a class) nor
  // Score-CAM (the class score of masked inputs).
  bool units = true;
  bool forward_per_channel = false;  // a forward pass per channel of each layer (Score-CAM)
  bool nested_passes = false;        // passes of its own per sample or step (SmoothGrad, IG)
  bool perturbs = false;             // forward passes of perturbed inputs (occlusion, RISE)
  bool lrp = false;                  // its engine carries LRP's rules (Engine's `lrp`)
  // Its maps at layers (a MethodMap with a layer) are layer maps
  // (kLayerMap), whatever `output` says of its input-space maps (LRP's
  // relevance at --layer beside the input's).
  bool layer_maps = false;
  // Its input-space maps may hold one sign only by construction (LRP's zplus
  // passes the logit's sign down): a sign picture (pos, neg) with nothing to
  // show is then not written, and not warned about.
  bool one_signed = false;
  // Set: the capture pass is paired (Engine::run), its batch the images then
  // these references of them [N,C,H,W] (DeepLIFT's baselines); the Capture's
  // input() is that [2N,...] batch, its classes() the images' N.
  at::Tensor (*references)(const at::Tensor& images, const MethodParams& params) = nullptr;
  std::vector<MethodMap> (*compute)(Capture& capture) = nullptr;
  // Checks settings that depend on the input's size (height x width) before
  // any work; throws Error(kUsage) naming the option. Null: nothing to check.
  void (*check)(const MethodParams& params, int64_t height, int64_t width) = nullptr;
  bool detectors_only = false;  // it explains a detector's detections only (D-RISE)

  bool takes(const std::string& param) const;
  // True when a guided or deconvnet backward shapes its maps.
  bool guided(const MethodParams& params) const;
  // True when it runs no backward pass, whatever its settings: its engine
  // needs no autograd graph (Engine's `backward`).
  bool forward_only() const;
  // Of `count` maps of one image, the one that stands for the whole network
  // (what evaluate scores): the last for the attention methods, whose map
  // at a block is their result through that block, else the first.
  size_t summary_map(size_t count) const;
  // The names it answers to: name, then aliases.
  std::vector<std::string> names() const;
};

// "none", "chosen", "global-pool", "optional": the one name of each
// LayerUse, as the docs' method table and the explorer's API say it.
const char* layer_use_name(LayerUse use);

// The registry: every method, in the order the CLI lists them.
const std::vector<MethodDef>& method_table();

// By name or alias. Throws Error(kUsage) listing the known names when
// `name` is unknown.
const MethodDef& find_method(const std::string& name);

// The method a front end opens with when the user has not chosen one
// (the explorer's first pane): Grad-CAM.
const MethodDef& default_method();

// The score `method` differentiates: `requested` (--score) when given, else
// its default, negated when `counterfactual`. Throws Error(kUsage) naming
// the method when it cannot explain that score, or the negation.
Score method_score(const MethodDef& method, std::optional<ScoreKind> requested,
                   bool counterfactual);

// The settings `method` runs with on a model described by `info`: `given`
// with the model's normalization (for black baselines) and `score`
// (method_score()), checked against the model's input size
// (MethodDef::check; throws Error(kUsage) naming the option). Throws
// Error(kUnsupported) for a detectors_only method on another model.
MethodParams run_params(const MethodDef& method, MethodParams given, const ModelInfo& info,
                        const Score& score);

// "a, b or c": the names of the methods that satisfy `pred`, for messages.
template <typename Pred>
std::string method_names_where(Pred pred) {
  std::vector<std::string> names;
  for (const MethodDef& m : method_table()) {
    if (pred(m)) names.push_back(m.name);
  }
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  }
  return out;
}

// Helpers shared by the methods (methods/common.cpp).
namespace method_util {
// The output of layer i as a feature map [N,K,h,w] by the one reshape rule
// (feature_map.h: channels-last maps permuted, token grids reshaped); throws
// Error(kUnsupported) naming the layer when the rule cannot read it.
at::Tensor feature_map(Capture& capture, size_t i);
// The plain gradient at layer i, reshaped the same way.
at::Tensor feature_gradient(Capture& capture, size_t i);
// Grad-CAM at layer i: relu(sum_k w_k A_k), w_k = spatial mean of the plain
// gradient. [N,h,w]. Throws Error(kUnsupported) for an output that is not a map.
at::Tensor gradcam(Capture& capture, size_t i);
// For inputs [N*copies,3,H,W], `copies` variants of each image of the pass in
// turn (row m is a variant of image m / copies): d score / d inputs[m] of
// that image's class (params().score) with ReLUs in `mode`, in nested
// passes of up to params().sample_batch images.
at::Tensor input_gradients(Capture& capture, const at::Tensor& inputs, int64_t copies,
                           Backprop mode);
// SmoothGrad with the given noise patterns [S,3,H,W] (unit scale: multiplied
// by each image's max - min), averaged over S.
at::Tensor smooth_gradient(Capture& capture, const at::Tensor& noise, Backprop mode);
// The baseline (or fill) image named `name` for x: "black" (black_baseline),
// "mean" (zeros: the normalization's mean colour) or "blurred"/"blur"
// (gaussian_blur with params.blur_sigma). Throws Error(kUsage) naming
// `option` for any other name.
at::Tensor reference_image(const at::Tensor& x, const std::string& name, const MethodParams& params,
                           const std::string& option);
// Integrated Gradients from `baseline` [N,3,H,W], right Riemann sum.
at::Tensor integrated_gradients(Capture& capture, const at::Tensor& baseline, int steps);
// The black image in normalized form, shaped like x.
at::Tensor black_baseline(const at::Tensor& x, const std::array<float, 3>& mean,
                          const std::array<float, 3>& std);

// RISE's saliency of the capture's images: for the random masks M_i
// (RandomMasks, params().sample_batch at a time), 1 / (N p) sum_i w_i M_i,
// where weigh(j, masked) gives the weights [c] of image j's masked copies
// [c,3,H,W]. [N,H,W] float32 on the input's device; images without a target
// (kNoTarget) get zeros.
at::Tensor mask_saliency(Capture& capture,
                         const std::function<at::Tensor(int64_t, const at::Tensor&)>& weigh);

// RISE's random masks for an input of height x width (rise.cpp says how
// they are drawn): params.masks of them from params.seed, made a chunk at
// a time. Throws Error(kUsage) for --masks, --grid or --p out of range.
class RandomMasks {
 public:
  RandomMasks(const MethodParams& params, int64_t height, int64_t width);
  int64_t count() const { return cells_.size(0); }
  // Masks [start, end), [end - start, H, W] float32 on the CPU.
  at::Tensor chunk(int64_t start, int64_t end) const;

 private:
  at::Tensor cells_, shifts_;
  int64_t height_ = 0, width_ = 0, up_ = 0;
};
}  // namespace method_util

}  // namespace cnnviz

#endif  // CNNVIZ_METHODS_METHODS_H_
