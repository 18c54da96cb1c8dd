#include "cnnviz/methods/layers.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "cnnviz/core/error.h"
#include "cnnviz/core/feature_map.h"

namespace cnnviz {

namespace {

// `stages`, then the ONNX values loaded as layers (ModelInfo::layer_aliases)
// that are not among them.
std::vector<std::string> with_values(const Model& model, std::vector<std::string> stages) {
  for (const auto& [value, path] : model.info().layer_aliases) {
    if (std::find(stages.begin(), stages.end(), path) == stages.end()) stages.push_back(path);
  }
  return stages;
}

// The metadata's stages, else those found in `d`.
std::vector<std::string> stages_of(const Model& model, const Engine::Description& d) {
  if (!model.info().feature_layers.empty()) return model.info().feature_layers;
  return feature_stages(d.layers);
}

}  // namespace

std::vector<std::string> feature_layers(const Model& model, const Engine::Description& d) {
  return with_values(model, stages_of(model, d));
}

std::vector<std::string> feature_layers(const Model& model) {
  if (!model.info().feature_layers.empty()) return with_values(model, model.info().feature_layers);
  return feature_layers(model, Engine::describe(model));
}

namespace {

// The last stage; a segmenter's last is its head, whose output is the class
// scores themselves: the one before it.
std::string last_stage(const Model& model, const std::vector<std::string>& stages) {
  if (stages.empty()) return std::string();
  if (model.info().task == Task::kSegment && stages.size() >= 2) return stages[stages.size() - 2];
  return stages.back();
}

}  // namespace

std::string default_layer(const Model& model, const Engine::Description& d) {
  if (!model.info().default_layer.empty()) return model.info().default_layer;
  return last_stage(model, stages_of(model, d));
}

std::string default_layer(const Model& model) {
  if (!model.info().default_layer.empty()) return model.info().default_layer;
  if (!model.info().feature_layers.empty()) return last_stage(model, model.info().feature_layers);
  return default_layer(model, Engine::describe(model));
}

namespace {

// The layers asked for, an ONNX value name (ModelInfo::layer_aliases) as the
// module path it was loaded as.
std::vector<std::string> resolved(const Model& model, const std::vector<std::string>& layers) {
  std::vector<std::string> out;
  for (const std::string& l : layers) out.push_back(model.info().layer_path(l));
  return out;
}

}  // namespace

std::vector<std::string> method_layers(const Model& model, const MethodDef& method,
                                       const LayerRequest& request) {
  switch (method.layers) {
    case LayerUse::kNone:
      return {};
    case LayerUse::kGlobalPoolInput:
      return {kGlobalPoolInput};
    case LayerUse::kAttention:
      return {kAttentionLayers};
    case LayerUse::kOptional:
      if (request.all_layers) return feature_layers(model);
      return resolved(model, request.layers);
    case LayerUse::kChosen:
      break;
  }
  if (!request.layers.empty()) return resolved(model, request.layers);
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

std::vector<std::string> unit_method_layers(const Model& model, const MethodDef& method,
                                            const LayerRequest& request, const Unit& unit) {
  const std::string subject = "--unit '" + unit.spec() + "'";
  if (!method.units) {
    throw Error(ErrorCode::kUsage,
                subject + ": " + method.name + " explains classes only (" +
                    method_names_where([](const MethodDef& m) { return m.units; }) +
                    " explain units)");
  }
  const std::string& name = model.info().name;
  const Engine::Description d = Engine::describe(model);
  auto index_of = [&](const std::string& path) -> std::optional<size_t> {
    for (size_t i = 0; i < d.layers.size(); ++i) {
      if (d.layers[i].path == path) return i;
    }
    return std::nullopt;
  };
  const std::optional<size_t> at = index_of(unit.layer);
  if (!at) {
    std::vector<std::string> paths;
    for (const LayerInfo& l : d.layers) paths.push_back(l.path);
    std::string hint;
    for (const std::string& m : near_matches(unit.layer, paths)) {
      hint += (hint.empty() ? "" : ", ") + m;
    }
    throw Error(ErrorCode::kUnsupported,
                subject + ": layer '" + unit.layer + "' not found in model '" + name +
                    "' (nearest: " + hint + "; `cnnviz layers -m " + name + "` lists them all)");
  }
  const LayerInfo& info = d.layers[*at];
  if (info.calls != 1) {
    throw Error(ErrorCode::kUnsupported, subject + ": layer '" + unit.layer + "' runs " +
                                             std::to_string(info.calls) +
                                             " times in one forward pass (pick a layer that "
                                             "runs once)");
  }
  std::optional<FeatureLayout> layout = infer_layout(info.shape);
  if (!layout) to_feature_map(at::zeros(info.shape), unit.layer, name);  // throws, saying why
  check_unit_range(unit, layout->channels, layout->height, layout->width);
  if (method.layers != LayerUse::kChosen) return method_layers(model, method, request);
  if (!request.layers.empty()) {
    for (const std::string& layer : request.layers) {
      std::optional<size_t> i = index_of(layer);
      if (i && *i > *at) {
        throw Error(ErrorCode::kUsage, "--layer " + layer + ": its output comes after " + subject +
                                           "'s layer in the forward pass, so no gradient from "
                                           "the unit reaches it");
      }
    }
    return request.layers;
  }
  if (!request.all_layers) return {unit.layer};
  std::vector<std::string> before;
  for (const std::string& stage : feature_layers(model, d)) {
    std::optional<size_t> i = index_of(stage);
    if (i && *i <= *at) before.push_back(stage);
  }
  if (before.empty()) {
    throw Error(ErrorCode::kUsage, "--all-layers with " + subject +
                                       ": no feature stage comes before the unit's layer (name "
                                       "layers with --layer)");
  }
  return before;
}

}  // namespace cnnviz
