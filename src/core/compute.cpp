#include "cnnviz/compute.h"

#include <ATen/ATen.h>

namespace cnnviz {

BatchMaps compute_maps(const Engine& engine, const MethodDef& method, const at::Tensor& batch,
                       const TargetChooser& targets, const MethodParams& params, at::Device out) {
  Pass pass = engine.run(batch);
  BatchMaps result;
  result.logits = pass.logits();
  result.explained = pass.explained();
  result.classes = targets(result.explained);
  for (const std::vector<int64_t>& classes : result.classes) {
    Capture capture(engine, pass, classes, params);
    std::vector<MethodMap> maps = method.compute(capture);
    for (MethodMap& m : maps) m.value = m.value.to(out);
    result.maps.push_back(std::move(maps));
  }
  return result;
}

}  // namespace cnnviz
