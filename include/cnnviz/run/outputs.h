// The files a visualization run writes for each map: which ones (--write),
// their names, and rendering them (render.h) into PNG and .npy files with
// their manifest entries. Everything here follows from the method's MapKind;
// no method is named.
#ifndef CNNVIZ_RUN_OUTPUTS_H_
#define CNNVIZ_RUN_OUTPUTS_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <opencv2/core/mat.hpp>
#include <array>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cnnviz/io/npy.h"
#include "cnnviz/io/render.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz {

// The variants a map of `kind` can be written as, in the order a run writes
// them (file suffix in brackets):
//   kInputGradient  npy (.npy), all, all_gray, pos, pos_gray, neg, neg_gray (_<v>.png)
//   kInputProduct   npy, color, gray, contact
//   kLayerMap       npy, gray, heatmap, overlay, overlay_full, contact
// "contact" is one sheet per class of every layer's overlay (or grey map),
// written when there are several layers. The manifest calls npy "raw".
const std::vector<std::string>& map_variants(MapKind kind);

// Every name --write accepts: the variants, and "gray" for the grey files
// of any kind.
std::vector<std::string> write_names();

// What a run writes for each map.
struct OutputSelection {
  std::vector<std::string> variants;  // in map_variants() order
  // Those of the layer maps of a method with MethodDef::layer_maps.
  std::vector<std::string> layer_variants;
  bool has(const std::string& variant) const;
  // In either list.
  bool any(const std::string& variant) const;
};

// The variants `names` (--write; empty: all of the method's kind) select for
// `method`, without npy when `raw` is false (--no-raw). "gray" selects every
// grey file (all_gray, pos_gray and neg_gray for input gradients). Throws
// Error(kUsage) for an unknown name and for a selection that writes nothing
// for this method (naming the variants it has).
OutputSelection select_outputs(const MethodDef& method, const std::vector<std::string>& names,
                               bool raw);

// How maps are drawn.
struct OutputStyle {
  Colormap colormap{"jet"};
  double alpha = 0.5;  // heatmap weight in overlays
};

// What a map explains, as its files are named and listed: a class
// ("_c281") or a unit ("_u-features.12-5", Unit::tag()).
struct MapTarget {
  int64_t cls = 0;
  std::optional<Unit> unit;
  int64_t detection = -1;  // a detector's: the detection's index in its image (cls its class)
  int64_t query = -1;      // or the box query's, in the image's list (cls its label)
  std::array<double, 4> box{};  // that box's x1, y1, x2, y2 in the source's pixels
  // A segmenter's class target: its pixels on the network's output grid
  // (CV_8UC1, 255 inside), outlined on the overlays; empty otherwise.
  cv::Mat pixels{};

  bool has_box() const { return detection >= 0 || query >= 0; }
  std::string tag() const;  // "c281", "d3-c2", "b0-c2" or "u-features.12-5"
  // Its manifest fields: {"class": 281}, {"class": 2, "detection": 3},
  // {"class": 2, "query": 0}, or {"class": null, "unit": "features.12:5"}.
  nlohmann::ordered_json fields() const;
};

// Where one image's files go: OUTDIR/<subdir>/<method>[_<layer>]_<target tag>...
struct ImageDir {
  std::string outdir, subdir;
  std::string path(const std::string& file) const { return outdir + "/" + subdir + "/" + file; }
  std::string relative(const std::string& file) const { return subdir + "/" + file; }
};

// What writing one map produced.
struct MapFiles {
  nlohmann::ordered_json files = nlohmann::ordered_json::array();  // manifest entries
  std::vector<std::string> warnings;
  cv::Mat tile;  // its contact-sheet tile, when "contact" is selected
};

// Renders `raw` (the map of `layer` for `target`, [3,H,W] or [h,w] as
// method.output says) and writes the selected files atomically. `view` is
// the image it was computed from (needed for overlays and layer-map tiles).
// Uses no LibTorch. Throws Error(kOutput) when a file cannot be written.
MapFiles write_map(const ImageDir& dir, const MethodDef& method, const std::string& layer,
                   const MapTarget& target, const FloatArray& raw, const SourceView& view,
                   const OutputSelection& selection, const OutputStyle& style);

// The contact sheet of one target's tiles (layer name, tile), when there are
// several, titled `title`: its manifest entry, or null when none was written.
nlohmann::ordered_json write_contact_sheet(
    const ImageDir& dir, const MethodDef& method, const MapTarget& target,
    const std::vector<std::pair<std::string, cv::Mat>>& tiles, const std::string& title);

// A contact sheet's title: "cat.jpg  gradcam  282 tiger cat 37.8%  score
// 29.4", from an image's manifest entry and one of its targets.
std::string contact_title(const nlohmann::ordered_json& entry, const nlohmann::ordered_json& target,
                          const MethodDef& method);

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_OUTPUTS_H_
