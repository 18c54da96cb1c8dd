#include "cnnviz/layers.h"

#include <algorithm>

#include "cnnviz/error.h"

namespace cnnviz {

std::vector<std::string> feature_layers(const Model& model, const Engine::Description& d) {
  if (!model.info().feature_layers.empty()) return model.info().feature_layers;
  return feature_stages(d.layers);
}

std::vector<std::string> feature_layers(const Model& model) {
  if (!model.info().feature_layers.empty()) return model.info().feature_layers;
  return feature_stages(Engine::describe(model).layers);
}

std::string default_layer(const Model& model, const Engine::Description& d) {
  if (!model.info().gradcam_layer.empty()) return model.info().gradcam_layer;
  std::vector<std::string> stages = feature_layers(model, d);
  return stages.empty() ? std::string() : stages.back();
}

std::string default_layer(const Model& model) {
  if (!model.info().gradcam_layer.empty()) return model.info().gradcam_layer;
  std::vector<std::string> stages = feature_layers(model);
  return stages.empty() ? std::string() : stages.back();
}

std::vector<std::string> method_layers(const Model& model, const MethodDef& method,
                                       const LayerRequest& request) {
  switch (method.layers) {
    case LayerUse::kNone:
      return {};
    case LayerUse::kGlobalPoolInput:
      return {kGlobalPoolInput};
    case LayerUse::kChosen:
      break;
  }
  if (!request.layers.empty()) return request.layers;
  std::vector<std::string> layers;
  if (request.all_layers) {
    layers = feature_layers(model);
  } else if (std::string layer = default_layer(model); !layer.empty()) {
    layers = {layer};
  }
  if (layers.empty()) {
    const Engine::Description d = Engine::describe(model);
    const bool no_modules = std::none_of(d.layers.begin(), d.layers.end(), [](const LayerInfo& l) {
      return l.path != kGlobalPoolInput;
    });
    const std::string without =
        method_names_where([](const MethodDef& m) { return m.layers != LayerUse::kChosen; });
    throw Error(ErrorCode::kUnsupported,
                "model '" + model.info().name +
                    "' shows no feature stages (no submodule outputs a spatial map" +
                    (no_modules ? std::string(": it has no submodules at all, as a traced and "
                                              "frozen or inlined model")
                                : std::string()) +
                    "); name layers with --layer, or use a method without layers (" + without +
                    ")");
  }
  return layers;
}

}  // namespace cnnviz
