#include "cnnviz/outputs.h"

#include <algorithm>
#include <set>

#include "cnnviz/error.h"
#include "cnnviz/png.h"

namespace cnnviz {

namespace {

using json = nlohmann::ordered_json;

constexpr int kContactColumns = 6;

const char* kind_name(MapKind kind) {
  switch (kind) {
    case MapKind::kInputGradient:
      return "input gradient";
    case MapKind::kInputProduct:
      return "gradient x CAM";
    case MapKind::kLayerMap:
      return "layer map";
  }
  return "?";
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// "<method>[_<layer>]_<target tag>": the name every file of a map starts with.
std::string stem(const MethodDef& method, const std::string& layer, const MapTarget& target) {
  std::string n = method.name;
  if (!layer.empty() && layer != kGlobalPoolInput) n += "_" + layer;
  return n + "_" + target.tag();
}

class Writer {
 public:
  Writer(const ImageDir& dir, const MethodDef& method, const std::string& layer,
         const MapTarget& target, const MapRange& range, MapFiles& out)
      : dir_(dir), method_(method), layer_(layer), target_(target), range_(range), out_(out) {}

  void png(const std::string& variant, const cv::Mat& image) {
    const std::string file = stem(method_, layer_, target_) + "_" + variant + ".png";
    write_png(dir_.path(file), image, PixelOrder::kRgb);
    record(file, variant, "png");
  }
  void npy(const FloatArray& raw) {
    const std::string file = stem(method_, layer_, target_) + ".npy";
    write_npy(dir_.path(file), raw);
    record(file, "raw", "npy");
  }
  void warn(const std::string& what, const std::string& problem) {
    out_.warnings.push_back(what + ": " + problem);
  }
  std::string prefix() const { return stem(method_, layer_, target_); }

 private:
  void record(const std::string& file, const std::string& variant, const char* format) {
    json entry = {{"path", dir_.relative(file)},
                  {"method", method_.name},
                  {"layer", layer_.empty() ? json(nullptr) : json(layer_)}};
    entry.update(target_.fields());
    entry.update(
        json{{"variant", variant}, {"format", format}, {"min", range_.min}, {"max", range_.max}});
    out_.files.push_back(std::move(entry));
  }

  const ImageDir& dir_;
  const MethodDef& method_;
  const std::string& layer_;
  const MapTarget& target_;
  MapRange range_;
  MapFiles& out_;
};

}  // namespace

const std::vector<std::string>& map_variants(MapKind kind) {
  static const std::vector<std::string> gradient = {"npy",      "all", "all_gray", "pos",
                                                    "pos_gray", "neg", "neg_gray", "signed"};
  static const std::vector<std::string> product = {"npy", "color", "gray", "contact"};
  static const std::vector<std::string> layer = {"npy",     "gray",         "heatmap",
                                                 "overlay", "overlay_full", "contact"};
  switch (kind) {
    case MapKind::kInputGradient:
      return gradient;
    case MapKind::kInputProduct:
      return product;
    case MapKind::kLayerMap:
      return layer;
  }
  return layer;
}

std::vector<std::string> write_names() {
  std::vector<std::string> names;
  for (MapKind k : {MapKind::kInputGradient, MapKind::kInputProduct, MapKind::kLayerMap}) {
    for (const std::string& v : map_variants(k)) {
      if (std::find(names.begin(), names.end(), v) == names.end()) names.push_back(v);
    }
  }
  return names;
}

bool OutputSelection::has(const std::string& variant) const {
  return std::find(variants.begin(), variants.end(), variant) != variants.end();
}

bool OutputSelection::any(const std::string& variant) const {
  return has(variant) ||
         std::find(layer_variants.begin(), layer_variants.end(), variant) != layer_variants.end();
}

OutputSelection select_outputs(const MethodDef& method, const std::vector<std::string>& names,
                               bool raw) {
  const std::vector<std::string>& available = map_variants(method.output);
  const std::vector<std::string> known = write_names();
  std::set<std::string> wanted;
  for (const std::string& n : names) {
    if (std::find(known.begin(), known.end(), n) == known.end()) {
      throw Error(ErrorCode::kUsage,
                  "--write " + n + ": no such output (known: " + join(known) + ")");
    }
    wanted.insert(n);
  }
  auto choose = [&](const std::vector<std::string>& from) {
    std::vector<std::string> out;
    for (const std::string& v : from) {
      const bool grey = v == "gray" || (v.size() > 5 && v.compare(v.size() - 5, 5, "_gray") == 0);
      const bool chosen = names.empty() || wanted.count(v) || (grey && wanted.count("gray"));
      if (chosen && (raw || v != "npy")) out.push_back(v);
    }
    return out;
  };
  OutputSelection s;
  s.variants = choose(available);
  if (method.layer_maps) s.layer_variants = choose(map_variants(MapKind::kLayerMap));
  if (s.variants.empty() && s.layer_variants.empty()) {
    throw Error(ErrorCode::kUsage, "--write " + join(names) + ": " + method.name +
                                       " writes none "
                                       "of these (its maps are " +
                                       kind_name(method.output) + "s: " + join(available) + ")");
  }
  return s;
}

MapFiles write_map(const ImageDir& dir, const MethodDef& method, const std::string& layer,
                   const MapTarget& target, const FloatArray& raw, const SourceView& view,
                   const OutputSelection& selection, const OutputStyle& style) {
  MapFiles out;
  const MapRange range = map_range(raw);
  Writer w(dir, method, layer, target, range, out);
  // A method's maps at layers may be of another kind than its own.
  const bool at_layer = method.layer_maps && !layer.empty();
  OutputSelection layer_selection;
  layer_selection.variants = selection.layer_variants;
  const OutputSelection& chosen = at_layer ? layer_selection : selection;
  if (chosen.has("npy")) w.npy(raw);
  switch (at_layer ? MapKind::kLayerMap : method.output) {
    case MapKind::kInputGradient:
      for (Rescale r : {Rescale::kAll, Rescale::kPos, Rescale::kNeg}) {
        const std::string v = rescale_name(r);
        const bool colour = chosen.has(v), grey = chosen.has(v + "_gray");
        if (!colour && !grey) continue;
        RescaledMap m = rescale_gradient(raw, r, range);
        if (m.degenerate) w.warn(w.prefix() + " " + v, "no values to rescale, written as zeros");
        if (colour) w.png(v, m.rgb);
        if (grey) w.png(v + "_gray", m.gray);
      }
      if (chosen.has("signed")) {
        bool degenerate = false;
        const cv::Mat heat = signed_heatmap(raw, degenerate);
        if (degenerate) w.warn(w.prefix() + " signed", "all zero, written as white");
        w.png("signed", heat);
      }
      break;
    case MapKind::kInputProduct: {
      if (!chosen.has("color") && !chosen.has("gray") && !chosen.has("contact")) break;
      RescaledMap m = rescale_gradient(raw, Rescale::kAll, range);
      if (m.degenerate) w.warn(w.prefix(), "constant map, written as zeros");
      if (chosen.has("color")) w.png("color", m.rgb);
      if (chosen.has("gray")) w.png("gray", m.gray);
      if (chosen.has("contact")) out.tile = m.gray;
      break;
    }
    case MapKind::kLayerMap: {
      if (!(range.max - range.min > 0.0f)) {
        w.warn(w.prefix(), "map is all zero (or constant), written as zeros");
      }
      const bool overlay = chosen.has("overlay") || chosen.has("contact");
      if (!chosen.has("gray") && !chosen.has("heatmap") && !overlay &&
          !chosen.has("overlay_full")) {
        break;
      }
      const cv::Mat gray = to_gray8(normalize_map(raw, range, view.box.size));
      if (chosen.has("gray")) w.png("gray", gray);
      if (chosen.has("heatmap") || overlay) {
        const cv::Mat heat = style.colormap.apply(gray);
        if (chosen.has("heatmap")) w.png("heatmap", heat);
        if (overlay) {
          cv::Mat over = blend(view.network_rgb, heat, style.alpha);
          if (chosen.has("overlay")) w.png("overlay", over);
          if (chosen.has("contact")) out.tile = over;
        }
      }
      if (chosen.has("overlay_full")) {
        // Source-sized: the thread's buffer from the last image is reused.
        thread_local cv::Mat full;
        overlay_on_source(view, gray, style.colormap, style.alpha, full);
        w.png("overlay_full", full);
      }
      break;
    }
  }
  return out;
}

json write_contact_sheet(const ImageDir& dir, const MethodDef& method, const MapTarget& target,
                         const std::vector<std::pair<std::string, cv::Mat>>& all_tiles) {
  std::vector<std::pair<std::string, cv::Mat>> tiles;
  for (const auto& t : all_tiles) {
    if (!t.second.empty()) tiles.push_back(t);
  }
  if (tiles.size() < 2) return nullptr;
  const std::string file = method.name + "_" + target.tag() + "_contact.png";
  write_png(dir.path(file), contact_sheet(tiles, kContactColumns), PixelOrder::kRgb);
  json entry = {{"path", dir.relative(file)}, {"method", method.name}, {"layer", nullptr}};
  entry.update(target.fields());
  entry.update(json{{"variant", "contact"}, {"format", "png"}});
  return entry;
}

std::string MapTarget::tag() const { return unit ? unit->tag() : "c" + std::to_string(cls); }

json MapTarget::fields() const {
  if (unit) return {{"class", nullptr}, {"unit", unit->spec()}};
  return {{"class", cls}};
}

}  // namespace cnnviz
