// What a map explains: the target class (or classes) of each image, given on
// the command line, in a targets file, or chosen from the logits; and the
// score of that class a backward pass differentiates.
#ifndef CNNVIZ_CORE_TARGETS_H_
#define CNNVIZ_CORE_TARGETS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/model.h"

namespace cnnviz {

// What is differentiated for a target class c of logits z [N,C]:
//   kLogit           z_c (the default)
//   kProbability     softmax(z)_c
//   kLogProbability  log softmax(z)_c
//   kSigmoid         sigmoid(z_c): multi-label and binary heads
// and, with `counterfactual`, its negation: the evidence against the class
// (Selvaraju et al., Grad-CAM, section 7).
enum class ScoreKind { kLogit, kProbability, kLogProbability, kSigmoid };

struct Score {
  ScoreKind kind = ScoreKind::kLogit;
  bool counterfactual = false;
};

// "logit", "probability", "log-probability", "sigmoid", in that order.
const std::vector<std::string>& score_names();
const std::string& score_name(ScoreKind kind);
// Throws Error(kUsage) naming `name` and the choices when it is none of
// score_names().
ScoreKind parse_score(const std::string& name);

// A rank an image has no target at (its list of classes is shorter than
// another image's of the same batch): its score is 0, its gradient zero, and
// the run writes no map for it.
constexpr int64_t kNoTarget = -1;

// The score of classes[n] for each image n of logits [N,C], [N]; entries that
// are kNoTarget give 0. Differentiable where `logits` is. Throws Error(kUsage)
// for a class out of range and for a softmax score of a model with one
// output (always 1: nothing to explain).
at::Tensor target_scores(const at::Tensor& logits, const std::vector<int64_t>& classes,
                         const Score& score);

// The classes a batch's maps explain, chosen once its logits [N,C] are
// known: result[r][n] is image n's class at rank r (or kNoTarget); every
// rank has one entry per image.
using TargetChooser = std::function<std::vector<std::vector<int64_t>>(const at::Tensor& logits)>;

// Ranks 1..k: the given classes, the same for every image. Throws
// Error(kUsage) naming a class that is not below the model's number of
// classes.
TargetChooser fixed_classes(std::vector<int64_t> classes);
inline TargetChooser fixed_class(int64_t k) { return fixed_classes({k}); }
// Ranks 1..n: each image's n most probable classes (at most C). A class
// whose logit is -inf is never chosen: that rank has kNoTarget.
TargetChooser top_classes(int n);
// Rank 1 only: image n's class is per_image[n].
TargetChooser given_classes(std::vector<int64_t> per_image);
// Image n's classes are per_image[n] when it has a value, else its `top`
// most probable ones; shorter lists are padded with kNoTarget.
TargetChooser per_image_classes(std::vector<std::optional<std::vector<int64_t>>> per_image,
                                int top);

// A class given as an index ("281", leading zeros allowed) or a label
// (case-insensitive, "Tabby"). `classes` is the model's number of classes.
// Throws Error(kUsage) for an empty text, an index out of range, or a label
// that names no class (with the nearest labels as a hint); the message
// starts with `subject` ("--class", or where a targets file says it).
int64_t parse_class(const std::string& text, const ModelInfo& info, int64_t classes,
                    const std::string& subject = "--class");

// A channel or a neuron of a layer as what the maps explain (--unit
// LAYER:K or LAYER:K:y:x): the mean over positions of channel K of LAYER's
// output read as a map [N,C,h,w] (feature_map.h, so token and channels-last
// layers too), or its value at row y, column x of that map. The seed
// library's "layer activation with guided backprop".
struct Unit {
  std::string layer;
  int64_t channel = 0;
  int64_t y = -1, x = -1;  // -1: the channel's mean

  bool neuron() const { return y >= 0; }
  // "features.12:5" or "features.12:5:3:4", as parse_unit() reads it.
  std::string spec() const;
  // "u-features.12-5" or "u-features.12-5-3-4": in file names.
  std::string tag() const;
};

// Parses LAYER:K or LAYER:K:y:x (K, y, x non-negative integers; LAYER a
// module path). Throws Error(kUsage) naming `text` and what is wrong.
Unit parse_unit(const std::string& text);

// Throws Error(kUsage) naming the unit and its layer's size when its channel
// or position lies outside a map of `channels` x `height` x `width`.
void check_unit_range(const Unit& unit, int64_t channels, int64_t height, int64_t width);

// A segmenter's targets, as pytorch-grad-cam's SemanticSegmentationTarget
// defines them: the score of class k of an image is the sum of its per-pixel
// logits of k over the pixels labelled k. The labels are fixed by the image's
// own forward pass (pixel_labels), and perturbed copies of the image
// (occlusion, RISE, noise, paths) are scored over the same pixels.
//
// Each pixel's predicted class, [N,h,w] int64 for pixel_logits [N,K,h,w],
// and -1 where `region` excludes it. `region`: [H,W] bool on the network's
// input grid (resized nearest to h x w when they differ), the pixels a
// target may count (--region); undefined: all of them.
at::Tensor pixel_labels(const at::Tensor& pixel_logits, const at::Tensor& region);
// The class scores [N,K] of pixel_logits [N,K,h,w] over `labels` [N,h,w]
// (pixel_labels; -1 counts for no class). Differentiable in pixel_logits.
at::Tensor class_scores(const at::Tensor& pixel_logits, const at::Tensor& labels);
// The log of each class's share of the labelled pixels, [N,K] float32 on the
// CPU: its softmax is the shares. Absent classes (and every class of an
// image without labelled pixels) are -inf, which the choosers never pick.
at::Tensor log_area_shares(const at::Tensor& labels, int64_t classes);
// `inner`, never choosing class `excluded` by rank (a segmenter's
// background); fixed classes are not affected.
TargetChooser excluding_class(TargetChooser inner, int64_t excluded);

// The model's number of classes as known before a forward pass: the
// metadata's num_classes, else its number of labels, else INT64_MAX
// (unknown: checked against the logits later).
int64_t known_classes(const ModelInfo& info);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_TARGETS_H_
