// The one table of visualization methods and of their parameters. Every
// other part of cnnviz (CLI, rendering, manifests, messages, benchmarks)
// reads a method's facts from here.
#include <algorithm>

#include "cnnviz/core/error.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz {

namespace methods {
std::vector<MethodMap> saliency(Capture&);
std::vector<MethodMap> guided_backprop(Capture&);
std::vector<MethodMap> deconvnet(Capture&);
std::vector<MethodMap> gradcam(Capture&);
std::vector<MethodMap> guided_gradcam(Capture&);
std::vector<MethodMap> cam(Capture&);
std::vector<MethodMap> gradient_input(Capture&);
std::vector<MethodMap> smoothgrad(Capture&);
std::vector<MethodMap> integrated_gradients(Capture&);
std::vector<MethodMap> gradcam_plus_plus(Capture&);
std::vector<MethodMap> xgradcam(Capture&);
std::vector<MethodMap> layercam(Capture&);
std::vector<MethodMap> hirescam(Capture&);
std::vector<MethodMap> scorecam(Capture&);
std::vector<MethodMap> eigencam(Capture&);
std::vector<MethodMap> occlusion(Capture&);
void check_occlusion(const MethodParams&, int64_t height, int64_t width);
std::vector<MethodMap> rise(Capture&);
std::vector<MethodMap> drise(Capture&);
std::vector<MethodMap> deeplift(Capture&);
std::vector<MethodMap> lrp(Capture&);
void check_lrp(const MethodParams&, int64_t height, int64_t width);
at::Tensor deeplift_references(const at::Tensor& images, const MethodParams& params);
std::vector<MethodMap> attention(Capture&);
std::vector<MethodMap> rollout(Capture&);
void check_rollout(const MethodParams&, int64_t height, int64_t width);
std::vector<MethodMap> attention_grad(Capture&);
}  // namespace methods

namespace {

// The backward passes of the methods, by what they need.
std::vector<Backprop> no_backward(const MethodParams&) { return {}; }
std::vector<Backprop> plain(const MethodParams&) { return {Backprop::kPlain}; }
std::vector<Backprop> guided(const MethodParams&) { return {Backprop::kGuided}; }
std::vector<Backprop> deconv(const MethodParams&) { return {Backprop::kDeconv}; }
std::vector<Backprop> rescale(const MethodParams&) { return {Backprop::kRescale}; }
std::vector<Backprop> relevance(const MethodParams&) { return {Backprop::kLrp}; }
std::vector<Backprop> plain_and_guided(const MethodParams&) {
  return {Backprop::kPlain, Backprop::kGuided};
}
// SmoothGrad smooths the gradient its --of names.
std::vector<Backprop> smoothed(const MethodParams& p) {
  return {p.smooth_of == "guided-backprop" ? Backprop::kGuided : Backprop::kPlain};
}

}  // namespace

std::string ParamDef::flag() const {
  std::string f = "--" + name;
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

const std::vector<ParamDef>& param_table() {
  static const std::vector<ParamDef> table = [] {
    auto number = [](std::string name, std::string help, ParamDef::Field field, double min,
                     double max, bool changes_maps = true) {
      ParamDef p;
      p.name = std::move(name);
      p.help = std::move(help);
      p.field = field;
      p.min = min;
      p.max = max;
      p.changes_maps = changes_maps;
      return p;
    };
    auto choice = [](std::string name, std::string help, ParamDef::Field field,
                     std::vector<std::string> choices) {
      ParamDef p;
      p.name = std::move(name);
      p.help = std::move(help);
      p.field = field;
      p.choices = std::move(choices);
      return p;
    };
    return std::vector<ParamDef>{
        number("samples", "Noisy copies per image", &MethodParams::samples, 1, kMaxSamples),
        number("noise", "Noise sigma as a fraction of the input's value range",
               &MethodParams::noise, 0.0, 10.0),
        number("seed", "Random seed (of SmoothGrad's noise, of RISE's masks)", &MethodParams::seed,
               0, 0),
        choice("of", "Gradient to smooth", &MethodParams::smooth_of,
               {"saliency", "guided-backprop"}),
        number("steps", "Riemann steps from the baseline to the image", &MethodParams::steps, 1,
               kMaxSamples),
        choice("baseline", "Baseline image (mean: the normalization's mean colour)",
               &MethodParams::baseline, {"black", "blurred", "mean"}),
        number("blur_sigma", "Gaussian sigma (pixels) of the blurred baseline or fill",
               &MethodParams::blur_sigma, 0.1, 1000.0),
        number("window", "Side of the occluding square, pixels", &MethodParams::window, 1,
               kMaxCrop),
        number("stride", "Step between windows, pixels (at most the window)", &MethodParams::stride,
               1, kMaxCrop),
        choice("fill", "What covers the window (mean: the normalization's mean colour)",
               &MethodParams::fill, {"mean", "black", "blur"}),
        number("masks", "Random masks per image", &MethodParams::masks, 1, kMaxMasks),
        number("grid", "Cells per side of a mask", &MethodParams::grid, 2, 64),
        number("p", "Probability that a mask's cell is kept", &MethodParams::keep, 0.01, 1.0),
        choice("composite", "LRP rules per layer kind (see --rule)", &MethodParams::composite,
               {"epsilon-plus-box", "epsilon-plus-flat", "epsilon-gamma-box"}),
        choice("rule", "One LRP rule for every layer (composite: --composite's)",
               &MethodParams::rule,
               {"composite", "epsilon", "zplus", "gamma", "alpha-beta", "flat"}),
        choice("attention_rule",
               "LRP through attention: AttnLRP's rules, or cp (attention weights held constant)",
               &MethodParams::attention_rule, {"attnlrp", "cp"}),
        number("epsilon", "Stabilizer of the epsilon rule", &MethodParams::epsilon, 0.0, 1e6),
        number("gamma", "Extra weight of positive weights in the gamma rule", &MethodParams::gamma,
               0.0, 1e6),
        number("alpha", "Weight of positive contributions (alpha-beta; alpha - beta = 1)",
               &MethodParams::alpha, 1.0, 1e6),
        number("beta", "Weight of negative contributions (alpha-beta)", &MethodParams::beta, 0.0,
               1e6),
        number("head", "Attention head to draw (-1: the mean of the heads)", &MethodParams::head,
               -1, 4096),
        choice("head_fusion", "How rollout combines the heads of a block",
               &MethodParams::head_fusion, {"mean", "max", "min"}),
        number("discard_ratio", "Share of each block's weakest attention set to zero, in [0, 1)",
               &MethodParams::discard_ratio, 0.0, 1.0),
        number("sample_batch", "Images per pass for noisy copies, steps, masks or windows",
               &MethodParams::sample_batch, 1, kMaxSampleBatch, /*changes_maps=*/false),
    };
  }();
  return table;
}

const ParamDef& find_param(const std::string& name) {
  for (const ParamDef& p : param_table()) {
    if (p.name == name) return p;
  }
  throw Error(ErrorCode::kRuntime, "registry: no parameter '" + name + "'");
}

bool MethodDef::takes(const std::string& param) const {
  return std::find(params.begin(), params.end(), param) != params.end();
}

bool MethodDef::guided(const MethodParams& p) const {
  for (Backprop b : backprops(p)) {
    if (b != Backprop::kPlain) return true;
  }
  return false;
}

bool MethodDef::forward_only() const { return backprops == no_backward; }

size_t MethodDef::summary_map(size_t count) const {
  return layers == LayerUse::kAttention && count > 0 ? count - 1 : 0;
}

std::vector<std::string> MethodDef::names() const {
  std::vector<std::string> all = {name};
  all.insert(all.end(), aliases.begin(), aliases.end());
  return all;
}

namespace {

// One row of the table, field by field.
class Row {
 public:
  Row(std::string name, std::vector<MethodMap> (*compute)(Capture&)) {
    def_.name = std::move(name);
    def_.compute = compute;
  }
  Row& alias(std::string a) {
    def_.aliases.push_back(std::move(a));
    return *this;
  }
  Row& summary(std::string s) {
    def_.summary = std::move(s);
    return *this;
  }
  Row& output(MapKind k) {
    def_.output = k;
    return *this;
  }
  Row& layers(LayerUse u) {
    def_.layers = u;
    return *this;
  }
  Row& backward(std::vector<Backprop> (*modes)(const MethodParams&)) {
    def_.backprops = modes;
    return *this;
  }
  Row& params(std::vector<std::string> names) {
    def_.params = std::move(names);
    return *this;
  }
  Row& scores(std::vector<ScoreKind> kinds, bool counterfactual) {
    def_.scores = std::move(kinds);
    def_.counterfactual = counterfactual;
    return *this;
  }
  Row& no_units() {
    def_.units = false;
    return *this;
  }
  Row& forward_per_channel() {
    def_.forward_per_channel = true;
    return *this;
  }
  Row& nested_passes() {
    def_.nested_passes = true;
    return *this;
  }
  Row& perturbs() {
    def_.perturbs = true;
    return *this;
  }
  Row& detectors_only() {
    def_.detectors_only = true;
    return *this;
  }
  Row& lrp() {
    def_.lrp = true;
    return *this;
  }
  Row& layer_maps() {
    def_.layer_maps = true;
    return *this;
  }
  Row& one_signed() {
    def_.one_signed = true;
    return *this;
  }
  Row& paired(at::Tensor (*references)(const at::Tensor&, const MethodParams&)) {
    def_.references = references;
    return *this;
  }
  Row& check(void (*f)(const MethodParams&, int64_t, int64_t)) {
    def_.check = f;
    return *this;
  }
  operator MethodDef() const { return def_; }

 private:
  MethodDef def_;
};

}  // namespace

const std::vector<MethodDef>& method_table() {
  using K = MapKind;
  using L = LayerUse;
  static const std::vector<MethodDef> table = {
      Row("guided-backprop", methods::guided_backprop)
          .alias("gbp")
          .summary("Guided backpropagation: input gradient through guided ReLUs")
          .output(K::kInputGradient)
          .backward(guided),
      Row("deconvnet", methods::deconvnet)
          .summary("Deconvnet: input gradient through ReLUs that pass max(g, 0)")
          .output(K::kInputGradient)
          .backward(deconv),
      Row("saliency", methods::saliency)
          .summary("Saliency: the vanilla input gradient of the class score")
          .output(K::kInputGradient)
          .backward(plain),
      Row("gradcam", methods::gradcam)
          .summary("Grad-CAM at one layer or every feature layer")
          .output(K::kLayerMap)
          .layers(L::kChosen)
          .backward(plain),
      Row("guided-gradcam", methods::guided_gradcam)
          .summary("Guided Grad-CAM: guided backprop times the upsampled Grad-CAM map")
          .output(K::kInputProduct)
          .layers(L::kChosen)
          .backward(plain_and_guided),
      Row("cam", methods::cam)
          .summary("CAM (Zhou et al.) for global-average-pooling heads")
          .output(K::kLayerMap)
          .layers(L::kGlobalPoolInput)
          .backward(plain)
          // The classifier's weights of the logit; negated for counterfactuals.
          .scores({ScoreKind::kLogit}, true)
          .no_units(),
      Row("gradient-input", methods::gradient_input)
          .summary("Gradient x input: the input times its vanilla gradient")
          .output(K::kInputGradient)
          .backward(plain),
      Row("smoothgrad", methods::smoothgrad)
          .summary("SmoothGrad: saliency or guided backprop averaged over noisy copies")
          .output(K::kInputGradient)
          .backward(smoothed)
          .params({"samples", "noise", "seed", "of", "sample_batch"})
          .nested_passes(),
      Row("integrated-gradients", methods::integrated_gradients)
          .alias("ig")
          .summary("Integrated Gradients from a black or blurred baseline")
          .output(K::kInputGradient)
          .backward(plain)
          .params({"steps", "baseline", "blur_sigma", "sample_batch"})
          .nested_passes(),
      Row("gradcam++", methods::gradcam_plus_plus)
          .alias("gradcampp")
          .summary("Grad-CAM++: positive gradients weighted per position")
          .output(K::kLayerMap)
          .layers(L::kChosen)
          .backward(plain),
      Row("xgradcam", methods::xgradcam)
          .summary("XGrad-CAM: gradients weighted by normalized activations")
          .output(K::kLayerMap)
          .layers(L::kChosen)
          .backward(plain),
      Row("layercam", methods::layercam)
          .summary("Layer-CAM: per-position weights; fused across layers")
          .output(K::kLayerMap)
          .layers(L::kChosen)
          .backward(plain),
      Row("hirescam", methods::hirescam)
          .summary("HiResCAM: gradient times activation, summed over channels")
          .output(K::kLayerMap)
          .layers(L::kChosen)
          .backward(plain),
      Row("scorecam", methods::scorecam)
          .summary("Score-CAM: channels weighted by the score of the masked input")
          .output(K::kLayerMap)
          .layers(L::kChosen)
          .backward(no_backward)
          .params({"sample_batch"})
          // The paper's score is the masked image's probability; a negated
          // score would weigh every channel below zero (an empty map).
          .scores({ScoreKind::kProbability, ScoreKind::kLogit, ScoreKind::kLogProbability,
                   ScoreKind::kSigmoid},
                  false)
          .no_units()
          .forward_per_channel(),
      Row("eigencam", methods::eigencam)
          .summary("Eigen-CAM: first principal component of the layer output")
          .output(K::kLayerMap)
          .layers(L::kChosen)
          .backward(no_backward)
          .scores({}, false),
      Row("deeplift", methods::deeplift)
          .summary("DeepLIFT (rescale rule): contributions to the change from a baseline")
          .output(K::kInputGradient)
          .backward(rescale)
          .params({"baseline", "blur_sigma"})
          // Summation to delta holds for the logit (the softmax is no rule's).
          .scores({ScoreKind::kLogit}, true)
          .paired(methods::deeplift_references),
      Row("lrp", methods::lrp)
          .summary("LRP: the logit redistributed to the pixels, rule by rule (composites)")
          .output(K::kInputGradient)
          // --layer / --all-layers add the relevance there, summed over channels.
          .layers(L::kOptional)
          .layer_maps()
          .backward(relevance)
          .params({"composite", "rule", "epsilon", "gamma", "alpha", "beta", "attention_rule"})
          // Relevance starts at the logit (its value, conserved down the layers).
          .scores({ScoreKind::kLogit}, true)
          .lrp()
          .one_signed()
          .check(methods::check_lrp),
      Row("occlusion", methods::occlusion)
          .summary("Occlusion: the score's drop when a window of the input is covered")
          .output(K::kLayerMap)
          .backward(no_backward)
          .params({"window", "stride", "fill", "blur_sigma", "sample_batch"})
          // Scores of occluded inputs: no unit (the frozen module gives logits only).
          .no_units()
          .perturbs()
          .check(methods::check_occlusion),
      Row("rise", methods::rise)
          .summary("RISE: random masks weighted by the masked input's score")
          .output(K::kLayerMap)
          .backward(no_backward)
          .params({"masks", "grid", "p", "seed", "sample_batch"})
          // The paper's score is the masked image's probability; weights below
          // zero (a negated score) would make the map meaningless.
          .scores({ScoreKind::kProbability, ScoreKind::kLogit, ScoreKind::kLogProbability,
                   ScoreKind::kSigmoid},
                  false)
          .no_units()
          .perturbs(),
      Row("d-rise", methods::drise)
          .summary("D-RISE: random masks weighted by how well the masked image's detections "
                   "match the target box and class")
          .output(K::kLayerMap)
          .backward(no_backward)
          .params({"masks", "grid", "p", "seed", "sample_batch"})
          // Weights are similarities, in [0, 1]: nothing to negate.
          .scores({ScoreKind::kLogit}, false)
          .no_units()
          .perturbs()
          .detectors_only(),
      Row("attention", methods::attention)
          .summary("Raw attention of the class token, per attention block (--head: one head)")
          .output(K::kLayerMap)
          .layers(L::kAttention)
          .backward(no_backward)
          .params({"head"})
          .scores({}, false),
      Row("rollout", methods::rollout)
          .summary("Attention rollout: the blocks' attention multiplied through the network")
          .output(K::kLayerMap)
          .layers(L::kAttention)
          .backward(no_backward)
          .params({"head_fusion", "discard_ratio"})
          .scores({}, false)
          .check(methods::check_rollout),
      Row("attention-grad", methods::attention_grad)
          .summary("Gradient-weighted attention rolled through the blocks (Chefer et al. 2021)")
          .output(K::kLayerMap)
          .layers(L::kAttention)
          .backward(plain),
  };
  return table;
}

Score method_score(const MethodDef& method, std::optional<ScoreKind> requested,
                   bool counterfactual) {
  if (method.scores.empty() && (requested || counterfactual)) {
    throw Error(ErrorCode::kUsage, std::string(requested ? "--score" : "--counterfactual") + ": " +
                                       method.name +
                                       " does not depend on the target (its maps are the same "
                                       "for every class)");
  }
  Score score;
  if (!method.scores.empty()) score.kind = method.scores.front();
  if (requested) {
    if (std::find(method.scores.begin(), method.scores.end(), *requested) == method.scores.end()) {
      std::string accepted;
      for (ScoreKind k : method.scores) accepted += (accepted.empty() ? "" : ", ") + score_name(k);
      throw Error(ErrorCode::kUsage, "--score " + score_name(*requested) + ": " + method.name +
                                         " explains " + accepted + " only");
    }
    score.kind = *requested;
  }
  if (counterfactual && !method.counterfactual) {
    throw Error(ErrorCode::kUsage, "--counterfactual: " + method.name +
                                       " has no counterfactual maps (use a gradient method such "
                                       "as gradcam)");
  }
  score.counterfactual = counterfactual;
  return score;
}

MethodParams run_params(const MethodDef& method, MethodParams given, const ModelInfo& info,
                        const Score& score) {
  if (method.detectors_only && info.task != Task::kDetect) {
    throw Error(ErrorCode::kUnsupported,
                method.name + ": explains a detector's detections; model '" + info.name +
                    "' is a " + (info.task == Task::kSegment ? "segmenter" : "classifier") +
                    " (rise is the form for classes)");
  }
  given.mean = info.preprocess.mean;
  given.std = info.preprocess.std;
  given.score = score;
  if (method.check) {
    method.check(given, info.preprocess.square_side(), info.preprocess.square_side());
  }
  return given;
}

const char* layer_use_name(LayerUse use) {
  switch (use) {
    case LayerUse::kNone:
      return "none";
    case LayerUse::kChosen:
      return "chosen";
    case LayerUse::kGlobalPoolInput:
      return "global-pool";
    case LayerUse::kOptional:
      return "optional";
    case LayerUse::kAttention:
      return "attention";
  }
  return "none";
}

const MethodDef& default_method() { return find_method("gradcam"); }

const MethodDef& find_method(const std::string& name) {
  for (const MethodDef& m : method_table()) {
    for (const std::string& n : m.names()) {
      if (n == name) return m;
    }
  }
  throw Error(ErrorCode::kUsage,
              "unknown method '" + name +
                  "' (known: " + method_names_where([](const MethodDef&) { return true; }) + ")");
}

}  // namespace cnnviz
