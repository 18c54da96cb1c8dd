#include <ATen/ATen.h>

#include "cnnviz/core/error.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz {

Capture::Capture(const Engine& engine, Pass& pass, std::vector<int64_t> classes,
                 MethodParams params)
    : engine_(engine), pass_(pass), classes_(std::move(classes)), params_(std::move(params)) {}

std::optional<size_t> Capture::layer_index(const std::string& path) const {
  const auto& names = engine_.layers();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == path) return i;
  }
  return std::nullopt;
}

at::Tensor Capture::input_gradient(Backprop mode) {
  auto it = input_grads_.find(mode);
  if (it != input_grads_.end()) return it->second;
  at::Tensor g = pass_.backward(classes_, mode, params_.score.value_or(Score{}));
  if (mode == Backprop::kPlain) {
    layer_grads_.assign(engine_.layers().size(), at::Tensor());
    for (size_t i = 0; i < layer_grads_.size(); ++i) {
      try {
        layer_grads_[i] = pass_.gradient(i);
      } catch (const Error&) {
        // Left undefined: layer_gradient() reports it when asked.
      }
    }
  }
  input_grads_[mode] = g;
  return g;
}

at::Tensor Capture::variant_scores(int64_t image, const at::Tensor& variants, int64_t cls,
                                  const Score& score) const {
  const Model& model = engine_.model();
  const std::vector<int64_t> classes(static_cast<size_t>(variants.size(0)), cls);
  if (cls == kNoTarget) return at::zeros({variants.size(0)}, at::kFloat);
  if (model.info().task == Task::kDetect) {
    // Target `cls` of the image: its detections' scores at their anchors, in each variant.
    const ModelInfo& info = model.info();
    const at::Tensor rows = prediction_rows(model.raw_predictions(variants, pass_.proposals()),
                                            info.layout, known_classes(info), info.path);
    const auto& found = pass_.detections().at(static_cast<size_t>(image));
    at::Tensor s = at::zeros({variants.size(0)}, rows.options());
    for (size_t k : pass_.detection_groups().at(static_cast<size_t>(image)).at(
             static_cast<size_t>(cls))) {
      const Detection& d = found.at(k);
      s = s + rows.select(1, d.anchor).select(1, 4) * rows.select(1, d.anchor).select(1, 5 + d.label);
    }
    return score.counterfactual ? -s : s;
  }
  if (!pass_.labels().defined()) return target_scores(model.logits(variants), classes, score);
  const at::Tensor own = pass_.labels()[image].to(at::kCPU);
  const at::Tensor labels = own.expand({variants.size(0), own.size(0), own.size(1)});
  return target_scores(class_scores(model.pixel_logits(variants), labels), classes, score);
}

at::Tensor Capture::variant_rows(const at::Tensor& variants) const {
  const ModelInfo& info = engine_.model().info();
  if (info.task != Task::kDetect) {
    throw Error(ErrorCode::kUnsupported, "model '" + info.name + "' is not a detector");
  }
  return prediction_rows(engine_.model().raw_predictions(variants, pass_.proposals()),
                         info.layout, known_classes(info), info.path)
      .to(at::kCPU);
}

Detection Capture::target_box(int64_t image, int64_t cls) const {
  const ModelInfo& info = engine_.model().info();
  if (info.task != Task::kDetect) {
    throw Error(ErrorCode::kUnsupported, "model '" + info.name + "' is not a detector");
  }
  const auto n = static_cast<size_t>(image);
  const auto k = static_cast<size_t>(cls);
  const std::vector<Detection>& found = pass_.detections().at(n);
  const auto& queries = params_.detect.queries;
  if (n >= queries.size() || queries[n].empty()) return found.at(k);
  const BoxQuery& q = queries[n].at(k);
  const std::vector<size_t>& group = pass_.detection_groups().at(n).at(k);
  const int64_t label = q.label >= 0 ? q.label : found.at(group.at(0)).label;
  return Detection{q.x1, q.y1, q.x2, q.y2, 0.0, label, -1};
}

const at::Tensor& Capture::activation(size_t i) const { return pass_.activation(i); }

at::Tensor Capture::layer_gradient(size_t i) {
  input_gradient(Backprop::kPlain);
  if (!layer_grads_.at(i).defined()) {
    throw Error(ErrorCode::kUnsupported, "layer '" + engine_.layers()[i] +
                                             "' received no gradient (it does not affect the "
                                             "class score)");
  }
  return layer_grads_[i];
}

}  // namespace cnnviz
