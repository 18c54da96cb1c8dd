#include "layers.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/feature_map.h"
#include "cnnviz/core/formats.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/onnx.h"
#include "cnnviz/methods/layers.h"

namespace cnnviz::cli {

namespace {

// A layer's shape, "-" when unknown.
std::string shape_or_dash(const std::vector<int64_t>& shape) {
  return shape.empty() ? "-" : shape_text(shape);
}

}  // namespace

CLI::App* setup_layers(CLI::App& app, LayersOptions& opts) {
  CLI::App* sub = app.add_subcommand(
      "layers", "List every layer (module path, type, output shape for one input)");
  add_model_options(*sub, opts.model);
  sub->add_flag("--json", opts.json, "Print JSON instead of a table");
  return sub;
}

namespace {

// How an ONNX model's stage found from the graph's structure was found;
// null for every other layer.
nlohmann::ordered_json found_by(const ModelInfo& info, const std::string& path) {
  auto it = info.structural_stages.find(path);
  if (it == info.structural_stages.end()) return nullptr;
  return it->second;
}

nlohmann::ordered_json layers_json(const ModelInfo& info, const Engine::Description& d,
                                   const std::set<std::string>& features,
                                   const std::string& default_path) {
  nlohmann::ordered_json doc;
  doc["format"] = format_name(Format::kLayers);
  doc["format_version"] = format_version(Format::kLayers);
  doc["model"] = info.name;
  doc["default_layer"] = default_path;
  doc["gradcam_layer"] = default_path;  // the same, under its first name
  doc["guided_relus"] = d.report.guided_relus;
  doc["guided_relu6s"] = d.report.guided_relu6s;
  doc["unguided_activations"] = d.report.unguided;
  doc["layers"] = nlohmann::ordered_json::array();
  for (const LayerInfo& l : d.layers) {
    nlohmann::ordered_json map = nullptr;
    if (std::optional<FeatureLayout> f = infer_layout(l.shape)) {
      map = {{"layout", f->name()},
             {"shape", {f->channels, f->height, f->width}},
             {"reshape", f->describe()}};
    }
    doc["layers"].push_back({{"path", l.path},
                             {"type", l.type},
                             {"shape", l.shape},
                             {"map", map},
                             {"calls", l.calls},
                             {"feature_layer", features.count(l.path) > 0},
                             {"default", l.path == default_path},
                             {"found_by", found_by(info, l.path)}});
  }
  return doc;
}

void print_layer_rows(const ModelInfo& info, const Engine::Description& d,
                      const std::set<std::string>& features, const std::string& default_path,
                      std::ostream& out) {
  size_t width = 4;
  for (const LayerInfo& l : d.layers) width = std::max(width, l.path.size());
  char line[768];
  std::snprintf(line, sizeof(line), "%-*s  %-22s  %-20s  %-44s  %s\n", static_cast<int>(width),
                "path", "type", "output", "read as map [C,h,w]", "notes");
  out << line;
  for (const LayerInfo& l : d.layers) {
    std::string notes;
    if (features.count(l.path)) notes += "feature ";
    if (l.path == default_path) notes += "default ";
    if (l.path == kGlobalPoolInput) notes += "CAM ";
    if (l.calls > 1) notes += "runs " + std::to_string(l.calls) + "x ";
    if (l.calls == 0) notes += "not run ";
    if (auto it = info.structural_stages.find(l.path); it != info.structural_stages.end()) {
      notes += "(" + it->second + ")";
    }
    std::string map = "-";
    if (std::optional<FeatureLayout> f = infer_layout(l.shape)) {
      map = shape_text({f->channels, f->height, f->width});
      if (f->layout != Layout::kChannelsFirst) map += " (" + f->describe() + ")";
    }
    std::snprintf(line, sizeof(line), "%-*s  %-22s  %-20s  %-44s  %s\n", static_cast<int>(width),
                  l.path.c_str(), l.type.c_str(), shape_or_dash(l.shape).c_str(), map.c_str(),
                  notes.c_str());
    out << line;
  }
}

}  // namespace

int run_layers(const LayersOptions& opts, std::ostream& out, std::ostream& err) {
  Model model = open_model(opts.model, err);
  const ModelInfo& info = model.info();
  Engine::Description d = Engine::describe(model);
  const std::vector<std::string> stages = feature_layers(model, d);
  const std::set<std::string> features(stages.begin(), stages.end());
  const std::string default_path = default_layer(model, d);
  if (opts.json) {
    out << dump_json(layers_json(info, d, features, default_path), 2) << "\n";
    return 0;
  }
  std::string unguided;
  for (const auto& [op, n] : d.report.unguided) {
    unguided += (unguided.empty() ? "" : ", ") + op + " x" + std::to_string(n);
  }
  out << "model " << info.name << ": " << d.report.guided_relus << " ReLUs guided; "
      << (d.report.guided_relu6s ? std::to_string(d.report.guided_relu6s) + " ReLU6s guided; " : "")
      << (unguided.empty() ? "no activations that cannot be guided" : "cannot guide " + unguided)
      << "\n";
  if (is_onnx_path(info.path) && info.structural_stages.empty()) {
    out << "ONNX model: its layers are the module scopes in its node names (\"/features/"
           "features.3/Concat\" is in features.3), one per run of consecutive nodes\n";
  } else if (is_onnx_path(info.path)) {
    out << "ONNX model whose node names carry no module scopes: its stages come from the "
           "graph's structure, each ending at a residual merge or at the last node before the "
           "spatial size changes (how, in the notes)\n";
  }
  print_layer_rows(info, d, features, default_path, out);
  out << "feature = taken by --all-layers; default = the layer methods' default layer; CAM = the "
         "map CAM weighs; read as map = what the layer methods see (- : not a spatial map)\n";
  if (std::none_of(d.layers.begin(), d.layers.end(),
                   [](const LayerInfo& l) { return l.path != kGlobalPoolInput; })) {
    out << "no submodules: the model was flattened (traced and frozen, or inlined); methods "
           "that need layers (gradcam and the other CAMs but cam) cannot be used, the gradient "
           "methods and cam can\n";
  }
  return 0;
}

}  // namespace cnnviz::cli
