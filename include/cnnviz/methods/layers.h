// Which layers a run instruments: the model's feature stages, its default
// layer, and a method's layers for a request. Every tool (CLI, benchmark,
// device check) chooses layers here, the same way, from the model's metadata
// first and its module tree second.
#ifndef CNNVIZ_METHODS_LAYERS_H_
#define CNNVIZ_METHODS_LAYERS_H_

#include <string>
#include <vector>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/model.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz {

// What the user asked for: layers by module path (--layer, repeatable), or
// every feature stage (--all-layers), or neither (the default layer).
struct LayerRequest {
  std::vector<std::string> layers;
  bool all_layers = false;
};

// The feature stages of `model`: the metadata's feature_layers when it names
// them, else feature_stages() of the module tree described in `d`; then the
// ONNX values loaded as layers (ModelInfo::layer_aliases), when any were.
std::vector<std::string> feature_layers(const Model& model, const Engine::Description& d);
// The same, describing the model (one forward pass) only when the metadata
// does not name them.
std::vector<std::string> feature_layers(const Model& model);

// The default layer of the layer methods: the metadata's default_layer, else
// the last feature stage (a segmenter's: the one before its last, which is
// the head); empty when there is none.
std::string default_layer(const Model& model, const Engine::Description& d);
// The same, describing the model only when the metadata does not name it.
std::string default_layer(const Model& model);

// The layers `method` needs on `model` for `request`, in the order an Engine
// takes them: the requested ones, every feature stage, or the default layer
// (LayerUse::kChosen); kGlobalPoolInput (kGlobalPoolInput); kAttentionLayers
// (kAttention); none (kNone).
// Describes the model (an extra forward pass) only when neither the request
// nor the metadata names the layers. Throws Error(kUnsupported) when the
// method needs layers and the model shows none; the Engine built from the
// result reports unknown paths.
std::vector<std::string> method_layers(const Model& model, const MethodDef& method,
                                       const LayerRequest& request);

// The layers `method` needs on `model` for `request` when the target is
// `unit` (--unit): as method_layers(), but without a request the unit's own
// layer (where that channel is active), and with --all-layers only the
// feature stages whose output comes before the unit's in the forward pass
// (no gradient reaches later ones from it). Checks the unit against the
// model first (one forward pass): its layer exists, runs once and reads as a
// map (Error(kUnsupported) otherwise), and its channel and position are in
// range (Error(kUsage)). Throws Error(kUsage) for a requested layer whose
// output comes after the unit's, and for a method that cannot explain units.
std::vector<std::string> unit_method_layers(const Model& model, const MethodDef& method,
                                            const LayerRequest& request, const Unit& unit);

}  // namespace cnnviz

#endif  // CNNVIZ_METHODS_LAYERS_H_
