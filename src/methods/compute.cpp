#include "cnnviz/methods/compute.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace cnnviz {

BatchMaps compute_maps(const Engine& engine, const MethodDef& method, const at::Tensor& batch,
                       const TargetChooser& targets, const MethodParams& params, at::Device out) {
  const int64_t n = batch.size(0);
  Pass pass = method.references
                  ? engine.run(at::cat({batch, method.references(batch, params)}), true,
                               params.region, params.detect)
                  : engine.run(batch, false, params.region, params.detect);
  BatchMaps result;
  // A paired pass's second half is the references: not part of the result.
  result.logits = pass.logits().slice(0, 0, n);
  result.explained = pass.explained().slice(0, 0, n);
  const auto& found = pass.detections();
  const size_t images = std::min(found.size(), static_cast<size_t>(n));
  result.detections.assign(found.begin(), found.begin() + images);
  if (pass.labels().defined()) result.labels = pass.labels().slice(0, 0, n).to(at::kCPU);
  const DetectionGroups& groups = pass.detection_groups();
  result.groups.assign(groups.begin(), groups.begin() + std::min(groups.size(), images));
  // Ranked by the logits (a segmenter's: the classes' areas), or the unit.
  result.classes = targets(engine.unit() ? result.explained : result.logits);
  for (const std::vector<int64_t>& classes : result.classes) {
    Capture capture(engine, pass, classes, params);
    std::vector<MethodMap> maps = method.compute(capture);
    for (MethodMap& m : maps) m.value = m.value.to(out);
    result.maps.push_back(std::move(maps));
  }
  return result;
}

}  // namespace cnnviz
