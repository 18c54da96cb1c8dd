#include "cnnviz/run/outputs.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <opencv2/imgproc.hpp>
#include <set>

#include "cnnviz/core/error.h"
#include "cnnviz/io/boxes.h"
#include "cnnviz/io/png.h"

namespace cnnviz {

namespace fs = std::filesystem;

namespace {

using json = nlohmann::ordered_json;

constexpr int kContactColumns = 6;

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
  // The raw array, the pictures of the map alone, then those drawn over the
  // image or across layers; indexed by MapKind.
  auto with = [](MapKind k, std::vector<std::string> after) {
    std::vector<std::string> v = {"npy"};
    for (const std::string& p : MapPictures::variants(k)) v.push_back(p);
    v.insert(v.end(), after.begin(), after.end());
    return v;
  };
  static const std::vector<std::string> by_kind[] = {
      with(MapKind::kInputGradient, {}), with(MapKind::kInputProduct, {"contact"}),
      with(MapKind::kLayerMap, {"overlay", "overlay_full", "contact"})};
  return by_kind[static_cast<int>(kind)];
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
                                       map_kind_words(method.output) + "s: " + join(available) +
                                       ")");
  }
  return s;
}

namespace {

// A detection target's box outline (no text) in the source's pixels, or on
// the network's view of it.
LabelledBox target_outline(const MapTarget& t, const CropBox& box, bool network) {
  LabelledBox b{t.box[0], t.box[1], t.box[2], t.box[3], t.cls + 1, ""};
  if (network) {
    const double sx = static_cast<double>(box.resized_w) / box.src_w;
    const double sy = static_cast<double>(box.resized_h) / box.src_h;
    b.x1 = b.x1 * sx - box.left;
    b.x2 = b.x2 * sx - box.left;
    b.y1 = b.y1 * sy - box.top;
    b.y2 = b.y2 * sy - box.top;
  }
  return b;
}

// A segmenter's target pixels as a mask of the network's view (network) or
// of the whole source, placed as the maps are.
cv::Mat target_mask(const MapTarget& t, const SourceView& view, bool network) {
  cv::Mat crop;
  cv::resize(t.pixels, crop, view.network_rgb.size(), 0, 0, cv::INTER_NEAREST);
  if (network) return crop;
  cv::Mat full = cv::Mat::zeros(view.source_rgb.size(), CV_8UC1);
  const cv::Rect& area = view.crop_in_source;
  if (area.empty()) return full;
  const cv::Mat shown = view.source_in_crop.empty() ? crop : crop(view.source_in_crop);
  cv::Mat scaled;
  cv::resize(shown, scaled, area.size(), 0, 0, cv::INTER_NEAREST);
  scaled.copyTo(full(area));
  return full;
}

// The pictures that need the image under the map, for a layer map: overlays
// on the network's view and on the whole source, and the contact-sheet tile.
void write_overlays(Writer& w, MapPictures& pictures, const OutputSelection& chosen,
                    const SourceView& view, const OutputStyle& style, const MapTarget& target,
                    MapFiles& out) {
  const bool overlay = chosen.has("overlay") || chosen.has("contact");
  if (overlay) {
    cv::Mat over = blend(view.network_rgb, pictures.get("heatmap"), style.alpha);
    if (target.has_box()) over = draw_boxes(over, {target_outline(target, view.box, true)});
    if (!target.pixels.empty()) draw_outline(over, target_mask(target, view, true), target.cls);
    if (chosen.has("overlay")) w.png("overlay", over);
    if (chosen.has("contact")) out.tile = over;
  }
  if (chosen.has("overlay_full")) {
    // Source-sized: the thread's buffer from the last image is reused.
    thread_local cv::Mat full;
    overlay_on_source(view, pictures.get("gray"), style.colormap, style.alpha, full);
    if (target.has_box()) full = draw_boxes(full, {target_outline(target, view.box, false)});
    if (!target.pixels.empty()) draw_outline(full, target_mask(target, view, false), target.cls);
    w.png("overlay_full", full);
  }
}

// Why a map's pictures are blank, said once per picture family as runs
// always have.
void warn_blank(Writer& w, MapPictures& pictures, MapKind kind, const OutputSelection& chosen,
                bool one_signed) {
  switch (kind) {
    case MapKind::kInputGradient:
      for (const char* v : {"all", "pos", "neg"}) {
        const std::string mode = v;
        if (one_signed && mode != "all") continue;  // not written (sign_missing)
        if ((chosen.has(mode) || chosen.has(mode + "_gray")) && pictures.blank(mode)) {
          w.warn(w.prefix() + " " + mode, "no values to rescale, written as zeros");
        }
      }
      if (chosen.has("signed") && pictures.blank("signed")) {
        w.warn(w.prefix() + " signed", "all zero, written as white");
      }
      break;
    case MapKind::kInputProduct:
      if ((chosen.has("color") || chosen.has("gray") || chosen.has("contact")) &&
          pictures.blank("color")) {
        w.warn(w.prefix(), "constant map, written as zeros");
      }
      break;
    case MapKind::kLayerMap:
      if (!(pictures.range().max - pictures.range().min > 0.0f)) {
        w.warn(w.prefix(), "map is all zero (or constant), written as zeros");
      }
      break;
  }
}

// Whether `variant` is the picture of a sign the map does not have, for a
// method whose maps may hold one sign only: such pictures are not written.
bool sign_missing(MapPictures& pictures, const std::string& variant) {
  for (const char* sign : {"pos", "neg"}) {
    const std::string s = sign;
    if ((variant == s || variant == s + "_gray") && pictures.blank(s)) return true;
  }
  return false;
}

}  // namespace

MapFiles write_map(const ImageDir& dir, const MethodDef& method, const std::string& layer,
                   const MapTarget& target, const FloatArray& raw, const SourceView& view,
                   const OutputSelection& selection, const OutputStyle& style) {
  MapFiles out;
  // A method's maps at layers may be of another kind than its own.
  const bool at_layer = method.layer_maps && !layer.empty();
  const MapKind kind = at_layer ? MapKind::kLayerMap : method.output;
  OutputSelection layer_selection;
  layer_selection.variants = selection.layer_variants;
  const OutputSelection& chosen = at_layer ? layer_selection : selection;
  MapPictures pictures(raw, kind, view.box.width, view.box.height, style.colormap);
  Writer w(dir, method, layer, target, pictures.range(), out);
  if (chosen.has("npy")) w.npy(raw);
  const bool one_signed = method.one_signed && kind == MapKind::kInputGradient;
  warn_blank(w, pictures, kind, chosen, one_signed);
  for (const std::string& v : MapPictures::variants(kind)) {
    if (!chosen.has(v) || (one_signed && sign_missing(pictures, v))) continue;
    w.png(v, pictures.get(v));
  }
  if (kind == MapKind::kInputProduct && chosen.has("contact")) out.tile = pictures.get("gray");
  if (kind == MapKind::kLayerMap) write_overlays(w, pictures, chosen, view, style, target, out);
  return out;
}

std::string contact_title(const json& entry, const json& target, const MethodDef& method) {
  std::string title = fs::path(entry.value("image", "")).filename().string() + "  " + method.name;
  if (target.contains("unit") && !target["unit"].is_null()) {
    title += "  unit " + target["unit"].dump();
  } else if (target.contains("class") && target["class"].is_number_integer()) {
    title += "  " + std::to_string(target["class"].get<int64_t>());
    if (target.contains("label") && target["label"].is_string()) {
      title += " " + target["label"].get<std::string>();
    }
    if (target.contains("probability") && target["probability"].is_number()) {
      char pct[32];
      std::snprintf(pct, sizeof pct, " %.1f%%", 100.0 * target["probability"].get<double>());
      title += pct;
    }
  }
  if (target.contains("score") && target["score"].is_number()) {
    char score[48];
    std::snprintf(score, sizeof score, "  score %.4g", target["score"].get<double>());
    title += score;
  }
  return title;
}

json write_contact_sheet(const ImageDir& dir, const MethodDef& method, const MapTarget& target,
                         const std::vector<std::pair<std::string, cv::Mat>>& all_tiles,
                         const std::string& title) {
  std::vector<std::pair<std::string, cv::Mat>> tiles;
  for (const auto& t : all_tiles) {
    if (!t.second.empty()) tiles.push_back(t);
  }
  if (tiles.size() < 2) return nullptr;
  const std::string file = method.name + "_" + target.tag() + "_contact.png";
  write_png(dir.path(file), contact_sheet(tiles, kContactColumns, title), PixelOrder::kRgb);
  json entry = {{"path", dir.relative(file)}, {"method", method.name}, {"layer", nullptr}};
  entry.update(target.fields());
  entry.update(json{{"variant", "contact"}, {"format", "png"}});
  return entry;
}

std::string MapTarget::tag() const {
  if (unit) return unit->tag();
  const std::string c = "c" + std::to_string(cls);
  if (query >= 0) return "b" + std::to_string(query) + "-" + c;
  return detection >= 0 ? "d" + std::to_string(detection) + "-" + c : c;
}

json MapTarget::fields() const {
  if (unit) return {{"class", nullptr}, {"unit", unit->spec()}};
  if (detection >= 0) return {{"class", cls}, {"detection", detection}};
  if (query >= 0) return {{"class", cls}, {"query", query}};
  return {{"class", cls}};
}

}  // namespace cnnviz
