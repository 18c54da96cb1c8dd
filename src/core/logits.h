// What a classifier's forward returned, read as its logits: the one rule for
// the frozen inference module (Model::logits) and the instrumented graph
// (Engine). Internal to src/core/.
#ifndef CNNVIZ_SRC_CORE_LOGITS_H_
#define CNNVIZ_SRC_CORE_LOGITS_H_

#include <ATen/core/ivalue.h>

#include <string>

namespace cnnviz {

// The [N,classes] tensor `out` holds (the first element of a tuple, as
// GoogLeNet and Inception return). Throws Error(kModel) naming the model at
// `path` when it is not a 2-D tensor or has no classes, Error(kUnsupported)
// when it is a segmenter's output (pixel_logits_of reads it).
at::Tensor logits_of(const c10::IValue& out, const std::string& path);

// A segmenter's [N,classes,H,W] class scores per pixel: a 4-D tensor, or the
// "out" entry of a dict (torchvision's segmentation models). Throws
// Error(kModel) naming the model at `path` for anything else.
at::Tensor pixel_logits_of(const c10::IValue& out, const std::string& path);

// A detector's raw predictions: `out` as a tensor, or the first element of a
// tuple or list. Throws Error(kModel) naming the model at `path` otherwise.
at::Tensor raw_predictions_of(const c10::IValue& out, const std::string& path);

// Throws Error(kUnsupported) naming the detector at `path`: the subcommands
// that read logits or pixel scores (classify, segment, evaluate) do not take
// it.
[[noreturn]] void refuse_detector(const std::string& path);

}  // namespace cnnviz

#endif  // CNNVIZ_SRC_CORE_LOGITS_H_
