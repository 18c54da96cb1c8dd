// Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019,
// "Layer-Wise Relevance Propagation: An Overview"): the target logit is
// redistributed, layer by layer, down to the input pixels.
//
// Rules per convolution or linear layer (with input a, weights W, bias b,
// output z, relevance R of the output; an eval-mode batch norm after a
// convolution is folded into it first):
//   epsilon     R_in = a W^T (R / (z + eps sign z))
//   zplus       positive contributions only: R_in = a+ W+^T s + a- W-^T s,
//               s = R / (W+ a+ + W- a- + 1e-9)
//   gamma       W + gamma W+ (and b + gamma b+) in place of W, b
//   alpha-beta  alpha times the positive contributions' share minus beta
//               times the negative ones' (alpha - beta = 1)
//   flat        every input of a window gets an equal share (the input layer)
//   box         z^B with the normalized image's bounds (the input layer)
// Everything else follows from one identity: relevance R = z * c at every
// value z, where c is what the engine's backward carries. ReLUs pass c as
// their gradient does (relevance passes through), max-pooling gives each
// window's relevance to its maximum, average pooling, additions (residual
// connections) and concatenations split it in proportion to their inputs,
// and reshapes pass it unchanged: the rules of the literature, with no
// per-architecture code. The map is the input's relevance x * c, [N,C,H,W],
// drawn as an input gradient; with --layer or --all-layers, also the
// relevance of each of those layers' outputs summed over channels, [N,h,w],
// drawn as a layer map.
//
// Transformers (AttnLRP, Achtibat et al. 2024, in the same R = z * c
// reading): LayerNorm with its standard deviation held constant (the
// identity rule on the normalization), GELU passing relevance unchanged, the
// softmax by its gradient times its input (AttnLRP's softmax rule), and each
// product of two computed tensors (q k^T, A v) giving each factor half (the
// uniform rule). --attention-rule cp instead holds the attention weights
// constant (Ali et al. 2022, conservative propagation): all of A v's
// relevance goes to the values, none through the softmax. Every rule but
// the softmax's conserves relevance where there are no biases.
//
// Composites: epsilon-plus-box (the default: box for the first layer, z+ for
// the other convolutions, epsilon for linear layers), epsilon-plus-flat (flat,
// z+, epsilon) and epsilon-gamma-box (box, gamma, epsilon); --rule applies one
// rule to every layer.
#include <ATen/ATen.h>

#include <cmath>

#include "cnnviz/core/error.h"
#include "cnnviz/core/feature_map.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

namespace {

LrpRule rule_named(const std::string& name) {
  if (name == "epsilon") return LrpRule::kEpsilon;
  if (name == "zplus") return LrpRule::kZPlus;
  if (name == "gamma") return LrpRule::kGamma;
  if (name == "alpha-beta") return LrpRule::kAlphaBeta;
  if (name == "flat") return LrpRule::kFlat;
  throw Error(ErrorCode::kUsage,
              "--rule '" + name + "': must be epsilon, zplus, gamma, alpha-beta or flat");
}

}  // namespace

void check_lrp(const MethodParams& p, int64_t, int64_t) {
  if (std::abs(p.alpha - p.beta - 1.0) > 1e-9) {
    throw Error(ErrorCode::kUsage, "--alpha " + std::to_string(p.alpha) + " --beta " +
                                       std::to_string(p.beta) +
                                       ": alpha - beta must be 1 (or relevance is not conserved)");
  }
  if (p.rule != "composite") rule_named(p.rule);
  if (p.attention_rule != "attnlrp" && p.attention_rule != "cp") {
    throw Error(ErrorCode::kUsage,
                "--attention-rule '" + p.attention_rule + "': must be attnlrp or cp");
  }
  if (p.composite != "epsilon-plus-box" && p.composite != "epsilon-plus-flat" &&
      p.composite != "epsilon-gamma-box") {
    throw Error(ErrorCode::kUsage,
                "--composite '" + p.composite +
                    "': must be epsilon-plus-box, epsilon-plus-flat or epsilon-gamma-box");
  }
}

std::vector<MethodMap> lrp(Capture& capture) {
  const MethodParams& p = capture.params();
  const at::Tensor x = capture.input();
  check_lrp(p, x.size(2), x.size(3));
  LrpRules rules;
  if (p.rule != "composite") {
    rules.first = rules.conv = rules.linear = rule_named(p.rule);
  } else if (p.composite == "epsilon-gamma-box") {
    rules.first = LrpRule::kBox;
    rules.conv = LrpRule::kGamma;
    rules.linear = LrpRule::kEpsilon;
  } else {
    rules.first = p.composite == "epsilon-plus-flat" ? LrpRule::kFlat : LrpRule::kBox;
    rules.conv = LrpRule::kZPlus;
    rules.linear = LrpRule::kEpsilon;
  }
  rules.epsilon = p.epsilon;
  rules.gamma = p.gamma;
  rules.alpha = p.alpha;
  rules.beta = p.beta;
  rules.conservative_attention = p.attention_rule == "cp";
  // The box rule's bounds: black and white pixels, normalized.
  for (int64_t c = 0; c < x.size(1) && c < 3; ++c) {
    rules.low.push_back((0.0f - p.mean[c]) / p.std[c]);
    rules.high.push_back((1.0f - p.mean[c]) / p.std[c]);
  }
  const at::Tensor c =
      capture.pass().relevance(capture.classes(), rules, p.score.value_or(Score{}));
  std::vector<MethodMap> maps = {{"", x * c}};
  // At each layer asked for: its output's relevance, A * c, summed over
  // channels (read as a map by the one reshape rule).
  for (size_t i = 0; i < capture.layers().size(); ++i) {
    const at::Tensor a = method_util::feature_map(capture, i);
    const at::Tensor ci = to_feature_map(capture.pass().gradient(i), capture.layers()[i],
                                         capture.engine().model().info().name);
    maps.push_back({capture.layers()[i], (a * ci).sum(1)});
  }
  return maps;
}

}  // namespace cnnviz::methods
