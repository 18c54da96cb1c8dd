#include "logits.h"

#include <optional>
#include <string>

#include "cnnviz/core/error.h"

namespace cnnviz {

namespace {

// The per-pixel scores of a segmenter's output, if it is one.
std::optional<at::Tensor> pixel_scores(const c10::IValue& out) {
  c10::IValue v = out;
  if (v.isGenericDict()) {
    const c10::Dict<c10::IValue, c10::IValue> d = v.toGenericDict();
    auto it = d.find(c10::IValue(std::string("out")));
    if (it == d.end()) return std::nullopt;
    v = it->value();
  }
  if (!v.isTensor() || v.toTensor().dim() != 4) return std::nullopt;
  return v.toTensor();
}

std::string shape_text(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

}  // namespace

at::Tensor pixel_logits_of(const c10::IValue& out, const std::string& path) {
  std::optional<at::Tensor> scores = pixel_scores(out);
  if (!scores) {
    throw Error(ErrorCode::kModel,
                "model '" + path +
                    "': forward does not return [N,classes,H,W] class scores per pixel (a tensor, "
                    "or a dict with \"out\"), as a segmenter does");
  }
  if (scores->size(1) == 0) {
    throw Error(ErrorCode::kModel, "model '" + path + "': forward returns no classes");
  }
  return *scores;
}

at::Tensor raw_predictions_of(const c10::IValue& out, const std::string& path) {
  c10::IValue v = out;
  if (v.isTuple() && !v.toTupleRef().elements().empty()) v = v.toTupleRef().elements()[0];
  if (v.isList() && !v.toListRef().empty()) v = v.toListRef()[0];
  if (!v.isTensor()) {
    throw Error(ErrorCode::kModel, "model '" + path + "': forward does not return a tensor of raw "
                                   "box predictions, as a detector exported with a --layout does");
  }
  return v.toTensor();
}

void refuse_detector(const std::string& path) {
  throw Error(ErrorCode::kUnsupported, "model '" + path + "' is a detector: `cnnviz detect` finds "
                                       "its boxes and the explanation subcommands explain them "
                                       "(--box); this subcommand does not take detectors");
}

at::Tensor logits_of(const c10::IValue& v, const std::string& path) {
  if (std::optional<at::Tensor> scores = pixel_scores(v)) {
    throw Error(ErrorCode::kUnsupported,
                "model '" + path + "' is a segmenter (its forward gives " + shape_text(*scores) +
                    " class scores per pixel): `cnnviz segment` labels its pixels; this "
                    "subcommand takes classifiers");
  }
  c10::IValue out = v;
  if (out.isTuple()) out = out.toTupleRef().elements().at(0);
  if (!out.isTensor() || out.toTensor().dim() != 2) {
    throw Error(ErrorCode::kModel,
                "model '" + path + "': forward does not return [N,classes] logits");
  }
  if (out.toTensor().size(1) == 0) {
    throw Error(ErrorCode::kModel, "model '" + path +
                                       "': forward returns no classes ([N,0] logits): nothing to "
                                       "rank or explain");
  }
  return out.toTensor();
}

}  // namespace cnnviz
