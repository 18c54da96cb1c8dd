// The one function that turns a batch of inputs into a method's maps: a
// capture pass, then the method for each rank of targets. The explain and
// evaluate runs, the benchmark and the device check all call it.
#ifndef CNNVIZ_METHODS_COMPUTE_H_
#define CNNVIZ_METHODS_COMPUTE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz {

struct BatchMaps {
  at::Tensor logits;                          // [N,C] float32, on the CPU
  at::Tensor explained;                       // what the classes index: the logits, or the
                                              // engine's unit's value [N,1] (engine.h)
  std::vector<std::vector<int64_t>> classes;  // [rank][image]: what each rank explains
  std::vector<std::vector<Detection>> detections;  // a detector's, per image (input pixels)
  DetectionGroups groups;  // a detector's targets: the detections "class" k sums, per image
  at::Tensor labels;       // a segmenter's pixel labels [N,h,w] int64 on the CPU (engine.h)
  std::vector<std::vector<MethodMap>> maps;   // [rank]: the method's maps, [N,...] on `out`
};

// Runs `batch` ([N,3,H,W] float32, normalized, on any device) through
// `engine`'s capture pass, chooses the targets from what it explains (its
// logits, or its unit's value), and computes
// `method` for each rank. The maps keep their dtype and are moved to `out`
// (the CPU unless told otherwise: only the maps leave the device). The
// engine must have been built with method_layers() of `method` (layers.h).
// Throws OutOfMemory when the device runs out of memory (callers that batch
// retry with fewer images), Error(kUnsupported) when the method cannot work
// on the model, Error(kUsage) for a target out of range.
BatchMaps compute_maps(const Engine& engine, const MethodDef& method, const at::Tensor& batch,
                       const TargetChooser& targets, const MethodParams& params,
                       at::Device out = at::Device(at::kCPU));

}  // namespace cnnviz

#endif  // CNNVIZ_METHODS_COMPUTE_H_
