// Turning raw method maps into images, and drawing the other pictures a run
// writes (contact sheets, evaluation curves). Rendering never touches the
// model, and it runs on the run's writer threads: it uses plain loops and
// OpenCV calls only, never LibTorch, so that no writer starts a thread pool
// of its own (the CLI turns OpenCV's own threading off). Images are 8-bit
// RGB (CV_8UC3) or grey (CV_8UC1) cv::Mat: write them with
// write_png(..., PixelOrder::kRgb).
#ifndef CNNVIZ_IO_RENDER_H_
#define CNNVIZ_IO_RENDER_H_

#include <array>
#include <map>
#include <opencv2/core/mat.hpp>
#include <string>
#include <utility>
#include <vector>

#include "cnnviz/core/maps.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/preprocess.h"

namespace cnnviz {

// The smallest and largest value of a map (both 0 for an empty map).
struct MapRange {
  float min = 0.0f, max = 0.0f;
};
MapRange map_range(const FloatArray& map);

// The share of a map's mass left out of the top of its colour scale, as
// Captum's outlier_perc (default 2%): a few extreme pixels, common in
// gradients, no longer push every other pixel into the dark.
constexpr float kOutlierPercent = 2.0f;

// The value at which the sorted values' running sum first reaches
// (100 - kOutlierPercent)% of their total (Captum's cumulative-sum
// threshold); 0 when there are none or all are 0. `values` are >= 0.
float outlier_threshold(std::vector<float> values);

// A [3,H,W] gradient to [0,1], clipped at the outlier thresholds P (of the
// positive values) and N (of the negative values' magnitudes):
//   kAll  (m + N) / (P + N)
//   kPos  max(0, m) / P
//   kNeg  max(0, -m) / N
// clamped to [0,1], in float32, then to 8 bits (round half to even). `gray`
// is 0.299 R + 0.587 G + 0.114 B of the rescaled map (pytorch-cnn-
// visualizations' rgb2gray). When the denominator is not positive (a
// constant zero map, no positive or no negative values) both are all zeros
// and `degenerate` is set. The raw .npy keeps every value.
enum class Rescale { kAll, kPos, kNeg };
const char* rescale_name(Rescale r);
struct RescaledMap {
  cv::Mat rgb;   // H x W CV_8UC3, RGB
  cv::Mat gray;  // H x W CV_8UC1
  bool degenerate = false;
};
RescaledMap rescale_gradient(const FloatArray& gradient, Rescale mode);

// A signed input-space map [C,H,W] summed over channels and drawn with a
// diverging blue-white-red scale centred on zero (as LRP papers draw
// relevance): v / max |v| = -1 is blue (0,0,255), 0 white, +1 red (255,0,0),
// linear in between; RGB, 8 bits. All white, with `degenerate` set, when the
// map is all zero.
cv::Mat signed_heatmap(const FloatArray& map, bool& degenerate);

// A [h,w] map min-max normalized to [0,1] by `range` (a constant map becomes
// all zeros), upsampled bilinearly to width x height with half-pixel centres
// (as at::upsample_bilinear2d without align_corners, OpenCV's INTER_LINEAR
// and pytorch-grad-cam's cv2.resize) and clamped to [0,1]: CV_32FC1.
cv::Mat normalize_map(const FloatArray& map, const MapRange& range, int width, int height);

// CV_32FC1 in [0,1] -> CV_8UC1, v * 255 rounded half to even.
cv::Mat to_gray8(const cv::Mat& map01);

// An OpenCV colormap as a 256-entry RGB table.
class Colormap {
 public:
  // By lower-case name ("jet", "turbo", "viridis", ...). Throws
  // Error(kUsage) listing colormap_names() for an unknown one.
  explicit Colormap(const std::string& name);
  const std::string& name() const { return name_; }
  // CV_8UC1 -> the same size CV_8UC3, RGB.
  cv::Mat apply(const cv::Mat& gray8) const;
  // The table itself: entry v is the RGB colour of map value v.
  const std::array<cv::Vec3b, 256>& table() const { return rgb_; }

 private:
  std::string name_;
  std::array<cv::Vec3b, 256> rgb_;
};
std::vector<std::string> colormap_names();

// alpha * heat + (1 - alpha) * image, both 8-bit of the same size and type.
cv::Mat blend(const cv::Mat& image, const cv::Mat& heat, double alpha);

// The pictures of one map that need nothing but the map, by variant name:
// the files run/outputs.h writes and the views the explorer serves are drawn
// here, and only here.
//   input gradient  all, all_gray, pos, pos_gray, neg, neg_gray (rescale_gradient),
//                   signed (signed_heatmap)
//   input product   color, gray (rescale_gradient, kAll)
//   layer map       gray (normalize_map to size x size, to_gray8), heatmap (gray in
//                   the colormap)
// Each picture is drawn on first use; one rescaling gives a mode's colour and
// grey picture together. Uses no LibTorch (it runs on writer threads).
class MapPictures {
 public:
  // `raw` and `colormap` must outlive this object. `width` x `height`: the
  // size of a layer map's pictures (the network's input).
  MapPictures(const FloatArray& raw, MapKind kind, int width, int height,
              const Colormap& colormap);

  // The variants `kind` has, in the order above.
  static const std::vector<std::string>& variants(MapKind kind);

  const MapRange& range() const { return range_; }
  // RGB (CV_8UC3) or grey (CV_8UC1). Throws Error(kUsage) naming the variants
  // of the kind for one it does not have.
  const cv::Mat& get(const std::string& variant);
  // Whether `variant`'s picture is blank because the map gives it nothing to
  // show (no positive values for pos, all zero for signed, a constant map).
  bool blank(const std::string& variant);

 private:
  struct Picture {
    cv::Mat image;
    bool blank = false;
  };
  Picture& draw(const std::string& variant);

  const FloatArray& raw_;
  MapKind kind_;
  int width_, height_;
  const Colormap& colormap_;
  MapRange range_;
  std::map<std::string, Picture> drawn_;
};

// What every map of one image is drawn over, computed once per image.
struct SourceView {
  cv::Mat source_rgb;       // the decoded image, RGB
  CropBox box;              // where the network's input lies in it
  cv::Mat network_rgb;      // that crop as the network saw it (box.width x box.height), RGB
  cv::Rect crop_in_source;  // the crop's area in source pixels
  cv::Rect source_in_crop;  // a letterbox's: the source's area in the crop (empty: all of it)
};
// The crop's area in source pixels: those whose nearest resized pixel lies
// in the crop.
cv::Rect source_rect(const CropBox& box);
// `source_rgb`: the decoded image the input `box` was cut from.
SourceView make_source_view(const cv::Mat& source_rgb, const CropBox& box);

// The overlay of a crop-sized map (box.width x box.height, CV_8UC1) on the whole
// source image at its own size: the map is scaled (bilinear) onto the crop's
// area in the source and blended there; outside it the image is unchanged.
// A letterbox's map is cut to the source's area first (no padding shown).
cv::Mat overlay_on_source(const SourceView& view, const cv::Mat& crop_gray8,
                          const Colormap& colormap, double alpha);
// The same into `out` (its buffer reused when it has the source's size).
void overlay_on_source(const SourceView& view, const cv::Mat& crop_gray8, const Colormap& colormap,
                       double alpha, cv::Mat& out);

// A grid of tiles (RGB or grey, resized to the first one's size), each
// captioned below, at most `columns` wide and with as few empty cells as
// that many rows allow (13 tiles at most 6 wide: 5, 5 and 3, not 6, 6 and
// 1), under `title` when it is not empty: RGB.
cv::Mat contact_sheet(const std::vector<std::pair<std::string, cv::Mat>>& tiles, int columns,
                      const std::string& title = "");

// A plot of a deletion and an insertion curve (each a probability per step,
// drawn over [0, 1]) with their areas in the legend: 480 x 320 RGB.
cv::Mat plot_curves(const std::string& title, const std::vector<double>& deletion,
                    double deletion_auc, const std::vector<double>& insertion,
                    double insertion_auc);

}  // namespace cnnviz

#endif  // CNNVIZ_IO_RENDER_H_
