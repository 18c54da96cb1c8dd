#include "cnnviz/io/render.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <opencv2/imgproc.hpp>

#include "cnnviz/core/error.h"
#include "cnnviz/io/resize.h"

namespace cnnviz {

namespace {

const std::map<std::string, int>& colormaps() {
  static const std::map<std::string, int> maps = {
      {"autumn", cv::COLORMAP_AUTUMN},     {"bone", cv::COLORMAP_BONE},
      {"jet", cv::COLORMAP_JET},           {"winter", cv::COLORMAP_WINTER},
      {"rainbow", cv::COLORMAP_RAINBOW},   {"ocean", cv::COLORMAP_OCEAN},
      {"summer", cv::COLORMAP_SUMMER},     {"spring", cv::COLORMAP_SPRING},
      {"cool", cv::COLORMAP_COOL},         {"hsv", cv::COLORMAP_HSV},
      {"pink", cv::COLORMAP_PINK},         {"hot", cv::COLORMAP_HOT},
      {"parula", cv::COLORMAP_PARULA},     {"magma", cv::COLORMAP_MAGMA},
      {"inferno", cv::COLORMAP_INFERNO},   {"plasma", cv::COLORMAP_PLASMA},
      {"viridis", cv::COLORMAP_VIRIDIS},   {"cividis", cv::COLORMAP_CIVIDIS},
      {"twilight", cv::COLORMAP_TWILIGHT}, {"turbo", cv::COLORMAP_TURBO},
  };
  return maps;
}

// v in [0,1] (clamped) to 8 bits, as (v * 255).round() in float32: round
// half to even. Adding and subtracting 1.5 * 2^23 rounds a float in [0, 2^22)
// to an integer in the current (round-to-nearest-even) mode, without the
// library call std::nearbyint is on baseline x86-64.
inline uint8_t to8(float v) {
  v = std::min(1.0f, std::max(0.0f, v)) * 255.0f;
  const float shifted = v + 12582912.0f;  // not folded: no -ffast-math
  return static_cast<uint8_t>(shifted - 12582912.0f);
}

// Source index and weights of bilinear resampling with half-pixel centres,
// as ATen computes them for upsample_bilinear2d(align_corners=false).
struct Tap {
  int i0, i1;
  float w0, w1;
};
std::vector<Tap> bilinear_taps(int in, int out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  std::vector<Tap> taps(static_cast<size_t>(out));
  for (int d = 0; d < out; ++d) {
    const float src = std::max(scale * (static_cast<float>(d) + 0.5f) - 0.5f, 0.0f);
    const int i0 = static_cast<int>(src);
    const float l1 = src - static_cast<float>(i0);
    taps[d] = {i0, i0 + (i0 < in - 1 ? 1 : 0), 1.0f - l1, l1};
  }
  return taps;
}

}  // namespace

MapRange map_range(const FloatArray& map) {
  if (map.data.empty()) return {};
  auto [lo, hi] = std::minmax_element(map.data.begin(), map.data.end());
  return {*lo, *hi};
}

const char* rescale_name(Rescale r) {
  switch (r) {
    case Rescale::kAll:
      return "all";
    case Rescale::kPos:
      return "pos";
    case Rescale::kNeg:
      return "neg";
  }
  return "?";
}

cv::Mat signed_heatmap(const FloatArray& g, bool& degenerate) {
  if (g.shape.size() != 3) throw Error(ErrorCode::kRuntime, "signed_heatmap: expected [C,H,W]");
  const size_t c = g.shape[0];
  const int h = static_cast<int>(g.shape[1]), w = static_cast<int>(g.shape[2]);
  const size_t plane = static_cast<size_t>(h) * w;
  std::vector<float> sum(plane, 0.0f);
  for (size_t k = 0; k < c; ++k) {
    for (size_t i = 0; i < plane; ++i) sum[i] += g.data[k * plane + i];
  }
  float top = 0.0f;
  for (float v : sum) top = std::max(top, std::abs(v));
  degenerate = !(top > 0.0f);
  cv::Mat out(h, w, CV_8UC3, cv::Scalar(255, 255, 255));
  if (degenerate) return out;
  for (int y = 0; y < h; ++y) {
    cv::Vec3b* rgb = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < w; ++x) {
      const float t = std::max(-1.0f, std::min(1.0f, sum[static_cast<size_t>(y) * w + x] / top));
      const uint8_t fade = to8(1.0f - std::abs(t));
      rgb[x] = t >= 0 ? cv::Vec3b(255, fade, fade) : cv::Vec3b(fade, fade, 255);
    }
  }
  return out;
}

// The value where the sorted running sum reaches the target, found by
// selection rather than a full sort (expected linear time: a sort cost the
// writers 19 ms of CPU per guided-backprop image): the answer's index stays
// in [lo, hi), and `before` is the sum of the values sorted below lo.
float outlier_threshold(std::vector<float> values) {
  double total = 0.0;
  for (float v : values) total += v;
  if (!(total > 0.0)) return 0.0f;
  const double target = total * (100.0 - kOutlierPercent) / 100.0;
  size_t lo = 0, hi = values.size();
  double before = 0.0;
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    std::nth_element(values.begin() + static_cast<std::ptrdiff_t>(lo),
                     values.begin() + static_cast<std::ptrdiff_t>(mid),
                     values.begin() + static_cast<std::ptrdiff_t>(hi));
    double below = before;  // values[lo, mid) are the ones sorted below mid
    for (size_t i = lo; i < mid; ++i) below += values[i];
    if (below >= target) {
      hi = mid;
    } else if (below + values[mid] >= target) {
      return values[mid];
    } else {
      before = below + values[mid];
      lo = mid + 1;
    }
  }
  return *std::max_element(values.begin(), values.end());  // not reached: the target <= total
}

RescaledMap rescale_gradient(const FloatArray& g, Rescale mode) {
  if (g.shape.size() != 3 || (g.shape[0] != 3 && g.shape[0] != 1)) {
    throw Error(ErrorCode::kRuntime, "rescale_gradient: expected a [3,H,W] or [1,H,W] map");
  }
  const bool one = g.shape[0] == 1;  // a grey model's input: colour is its grey copied
  const int h = static_cast<int>(g.shape[1]), w = static_cast<int>(g.shape[2]);
  RescaledMap out;
  out.rgb = cv::Mat::zeros(h, w, CV_8UC3);
  out.gray = cv::Mat::zeros(h, w, CV_8UC1);
  std::vector<float> positive, negative;
  for (float v : g.data) {
    if (v > 0.0f) positive.push_back(v);
    if (v < 0.0f) negative.push_back(-v);
  }
  const float top = mode == Rescale::kNeg ? 0.0f : outlier_threshold(std::move(positive));
  const float bottom = mode == Rescale::kPos ? 0.0f : outlier_threshold(std::move(negative));
  const float den = mode == Rescale::kAll ? top + bottom : mode == Rescale::kPos ? top : bottom;
  out.degenerate = !(den > 0.0f);
  if (out.degenerate) return out;
  const size_t plane = static_cast<size_t>(h) * w;
  const float* r = g.data.data();
  const float* gr = one ? r : r + plane;
  const float* b = one ? r : gr + plane;
  auto value = [&](float m) {  // clipped, so that grey is of the colours shown
    float v = 0.0f;
    switch (mode) {
      case Rescale::kAll:
        v = (m + bottom) / den;
        break;
      case Rescale::kPos:
        v = std::max(m, 0.0f) / den;
        break;
      case Rescale::kNeg:
        v = std::max(-m, 0.0f) / den;
        break;
    }
    return std::min(1.0f, std::max(0.0f, v));
  };
  for (int y = 0; y < h; ++y) {
    cv::Vec3b* rgb = out.rgb.ptr<cv::Vec3b>(y);
    uint8_t* gray = out.gray.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x) {
      const size_t i = static_cast<size_t>(y) * w + x;
      const float vr = value(r[i]), vg = value(gr[i]), vb = value(b[i]);
      rgb[x] = cv::Vec3b(to8(vr), to8(vg), to8(vb));
      gray[x] = to8(vr * 0.299f + vg * 0.587f + vb * 0.114f);
    }
  }
  return out;
}

cv::Mat normalize_map(const FloatArray& map, const MapRange& range, int width, int height) {
  if (map.shape.size() != 2) throw Error(ErrorCode::kRuntime, "normalize_map: expected [h,w]");
  const int h = static_cast<int>(map.shape[0]), w = static_cast<int>(map.shape[1]);
  cv::Mat out = cv::Mat::zeros(height, width, CV_32FC1);
  const float span = range.max - range.min;
  // A constant map carries no location: zeros, never NaN.
  if (!(span > 0.0f)) return out;
  std::vector<float> norm(map.data.size());
  for (size_t i = 0; i < norm.size(); ++i) {
    norm[i] = (map.data[i] - range.min) / std::max(span, 1e-30f);
  }
  const std::vector<Tap> ys = bilinear_taps(h, height), xs = bilinear_taps(w, width);
  for (int y = 0; y < height; ++y) {
    const Tap& ty = ys[y];
    const float* r0 = norm.data() + static_cast<size_t>(ty.i0) * w;
    const float* r1 = norm.data() + static_cast<size_t>(ty.i1) * w;
    float* o = out.ptr<float>(y);
    for (int x = 0; x < width; ++x) {
      const Tap& tx = xs[x];
      const float v = ty.w0 * (tx.w0 * r0[tx.i0] + tx.w1 * r0[tx.i1]) +
                      ty.w1 * (tx.w0 * r1[tx.i0] + tx.w1 * r1[tx.i1]);
      o[x] = std::min(1.0f, std::max(0.0f, v));
    }
  }
  return out;
}

cv::Mat to_gray8(const cv::Mat& map01) {
  cv::Mat out(map01.rows, map01.cols, CV_8UC1);
  for (int y = 0; y < map01.rows; ++y) {
    const float* in = map01.ptr<float>(y);
    uint8_t* o = out.ptr<uint8_t>(y);
    for (int x = 0; x < map01.cols; ++x) o[x] = to8(in[x]);
  }
  return out;
}

Colormap::Colormap(const std::string& name) : name_(name) {
  auto it = colormaps().find(name);
  if (it == colormaps().end()) {
    std::string known;
    for (const std::string& n : colormap_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::kUsage, "--colormap " + name + ": unknown (known: " + known + ")");
  }
  cv::Mat ramp(1, 256, CV_8UC1), bgr;
  for (int i = 0; i < 256; ++i) ramp.at<uint8_t>(0, i) = static_cast<uint8_t>(i);
  cv::applyColorMap(ramp, bgr, it->second);
  for (int i = 0; i < 256; ++i) {
    const cv::Vec3b c = bgr.at<cv::Vec3b>(0, i);
    rgb_[i] = cv::Vec3b(c[2], c[1], c[0]);
  }
}

cv::Mat Colormap::apply(const cv::Mat& gray8) const {
  cv::Mat out(gray8.rows, gray8.cols, CV_8UC3);
  for (int y = 0; y < gray8.rows; ++y) {
    const uint8_t* in = gray8.ptr<uint8_t>(y);
    cv::Vec3b* o = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < gray8.cols; ++x) o[x] = rgb_[in[x]];
  }
  return out;
}

std::vector<std::string> colormap_names() {
  std::vector<std::string> names;
  for (const auto& [n, id] : colormaps()) names.push_back(n);
  return names;
}

cv::Mat blend(const cv::Mat& image, const cv::Mat& heat, double alpha) {
  cv::Mat out;
  cv::addWeighted(heat, alpha, image, 1.0 - alpha, 0.0, out);
  return out;
}

cv::Rect source_rect(const CropBox& box) {
  // The source pixels whose nearest resized pixel lies in the crop: x with
  // floor(x * resized_w / src_w) in [left, left + width), in exact integers.
  auto first = [](int64_t resized_edge, int64_t src, int64_t resized) {
    return static_cast<int>((resized_edge * src + resized - 1) / resized);
  };
  const int x0 = first(box.left, box.src_w, box.resized_w);
  const int x1 = first(box.left + box.width, box.src_w, box.resized_w);
  const int y0 = first(box.top, box.src_h, box.resized_h);
  const int y1 = first(box.top + box.height, box.src_h, box.resized_h);
  return cv::Rect(x0, y0, std::max(0, x1 - x0), std::max(0, y1 - y0)) &
         cv::Rect(0, 0, box.src_w, box.src_h);
}

SourceView make_source_view(const cv::Mat& source_rgb, const CropBox& box) {
  SourceView v;
  v.source_rgb = source_rgb;
  v.box = box;
  v.network_rgb = network_view(source_rgb, box);
  v.crop_in_source = source_rect(box);
  if (box.left < 0 || box.top < 0) {
    v.source_in_crop = cv::Rect(-box.left, -box.top, box.resized_w, box.resized_h);
  }
  return v;
}

cv::Mat overlay_on_source(const SourceView& view, const cv::Mat& crop_gray8,
                          const Colormap& colormap, double alpha) {
  cv::Mat out;
  overlay_on_source(view, crop_gray8, colormap, alpha, out);
  return out;
}

void overlay_on_source(const SourceView& view, const cv::Mat& crop_gray8, const Colormap& colormap,
                       double alpha, cv::Mat& out) {
  view.source_rgb.copyTo(out);  // reuses out's buffer when it has the size
  const cv::Rect& area = view.crop_in_source;
  if (area.empty()) return;
  cv::Mat scaled;
  const cv::Mat shown = view.source_in_crop.empty() ? crop_gray8 : crop_gray8(view.source_in_crop);
  cv::resize(shown, scaled, area.size(), 0, 0, cv::INTER_LINEAR);
  cv::Mat region = out(area);
  cv::addWeighted(colormap.apply(scaled), alpha, region, 1.0 - alpha, 0.0, region);
}

// `text` in `width` pixels at `origin`, its scale shrunk until it fits.
static void fitted_text(cv::Mat& img, const std::string& text, cv::Point origin, int width,
                        double scale) {
  int baseline = 0;
  while (scale > 0.2 &&
         cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &baseline).width > width) {
    scale -= 0.05;
  }
  cv::putText(img, text, origin, cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(0, 0, 0), 1,
              cv::LINE_AA);
}

cv::Mat contact_sheet(const std::vector<std::pair<std::string, cv::Mat>>& tiles, int columns,
                      const std::string& title) {
  if (tiles.empty()) return cv::Mat();
  const int tw = tiles[0].second.cols, th = tiles[0].second.rows;
  const int caption = 22, head = title.empty() ? 0 : 30;
  const int n = static_cast<int>(tiles.size());
  const int rows = (n + std::max(1, columns) - 1) / std::max(1, columns);
  const int cols = (n + rows - 1) / rows;  // the fewest empty cells in `rows` rows
  cv::Mat sheet(head + rows * (th + caption), cols * tw, CV_8UC3, cv::Scalar(255, 255, 255));
  if (head > 0) fitted_text(sheet, title, cv::Point(6, 21), cols * tw - 12, 0.6);
  for (size_t i = 0; i < tiles.size(); ++i) {
    const int x = static_cast<int>(i) % cols * tw;
    const int y = head + static_cast<int>(i) / cols * (th + caption);
    cv::Mat tile = tiles[i].second;
    if (tile.channels() == 1) cv::cvtColor(tile, tile, cv::COLOR_GRAY2RGB);
    if (tile.size() != cv::Size(tw, th)) cv::resize(tile, tile, cv::Size(tw, th));
    tile.copyTo(sheet(cv::Rect(x, y, tw, th)));
    fitted_text(sheet, tiles[i].first, cv::Point(x + 3, y + th + caption - 7), tw - 6, 0.45);
  }
  return sheet;
}

cv::Mat plot_curves(const std::string& title, const std::vector<double>& deletion,
                    double deletion_auc, const std::vector<double>& insertion,
                    double insertion_auc) {
  const int w = 480, h = 320, left = 48, right = 16, top = 36, bottom = 40;
  cv::Mat img(h, w, CV_8UC3, cv::Scalar(255, 255, 255));
  const cv::Scalar axis(60, 60, 60), grid(225, 225, 225);
  auto px = [&](double x, double y) {
    return cv::Point(left + static_cast<int>(x * (w - left - right)),
                     h - bottom - static_cast<int>(y * (h - top - bottom)));
  };
  for (int i = 0; i <= 4; ++i) {
    const double v = i / 4.0;
    cv::line(img, px(0, v), px(1, v), grid, 1);
    cv::line(img, px(v, 0), px(v, 1), grid, 1);
    char label[16];
    std::snprintf(label, sizeof(label), "%.2f", v);
    cv::putText(img, label, px(0, v) + cv::Point(-40, 4), cv::FONT_HERSHEY_SIMPLEX, 0.35, axis, 1,
                cv::LINE_AA);
    cv::putText(img, label, px(v, 0) + cv::Point(-12, 16), cv::FONT_HERSHEY_SIMPLEX, 0.35, axis, 1,
                cv::LINE_AA);
  }
  cv::rectangle(img, px(0, 1), px(1, 0), axis, 1);
  auto draw = [&](const std::vector<double>& curve, const cv::Scalar& colour) {
    if (curve.size() < 2) return;
    std::vector<cv::Point> pts;
    for (size_t k = 0; k < curve.size(); ++k) {
      pts.push_back(px(static_cast<double>(k) / static_cast<double>(curve.size() - 1),
                       std::clamp(curve[k], 0.0, 1.0)));
    }
    cv::polylines(img, pts, false, colour, 2, cv::LINE_AA);
  };
  const cv::Scalar red(220, 40, 40), green(40, 160, 60);  // RGB
  draw(deletion, red);
  draw(insertion, green);
  cv::putText(img, title, cv::Point(left, 16), cv::FONT_HERSHEY_SIMPLEX, 0.45, axis, 1,
              cv::LINE_AA);
  char legend[96];
  std::snprintf(legend, sizeof(legend), "deletion AUC %.3f", deletion_auc);
  cv::putText(img, legend, cv::Point(left, 30), cv::FONT_HERSHEY_SIMPLEX, 0.4, red, 1, cv::LINE_AA);
  std::snprintf(legend, sizeof(legend), "insertion AUC %.3f", insertion_auc);
  cv::putText(img, legend, cv::Point(left + 200, 30), cv::FONT_HERSHEY_SIMPLEX, 0.4, green, 1,
              cv::LINE_AA);
  cv::putText(img, "fraction of pixels deleted / inserted", cv::Point(left + 90, h - 8),
              cv::FONT_HERSHEY_SIMPLEX, 0.4, axis, 1, cv::LINE_AA);
  return img;
}

MapPictures::MapPictures(const FloatArray& raw, MapKind kind, int width, int height,
                         const Colormap& colormap)
    : raw_(raw),
      kind_(kind),
      width_(width),
      height_(height),
      colormap_(colormap),
      range_(map_range(raw)) {}

const std::vector<std::string>& MapPictures::variants(MapKind kind) {
  static const std::vector<std::string> gradient = {"all", "all_gray", "pos",   "pos_gray",
                                                    "neg", "neg_gray", "signed"};
  static const std::vector<std::string> product = {"color", "gray"};
  static const std::vector<std::string> layer = {"gray", "heatmap"};
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

const cv::Mat& MapPictures::get(const std::string& variant) { return draw(variant).image; }

bool MapPictures::blank(const std::string& variant) { return draw(variant).blank; }

MapPictures::Picture& MapPictures::draw(const std::string& variant) {
  if (auto it = drawn_.find(variant); it != drawn_.end()) return it->second;
  const std::vector<std::string>& known = variants(kind_);
  if (std::find(known.begin(), known.end(), variant) == known.end()) {
    std::string names;
    for (const std::string& v : known) names += (names.empty() ? "" : ", ") + v;
    throw Error(ErrorCode::kUsage,
                "view '" + variant + "': a " + map_kind_words(kind_) + " is drawn as " + names);
  }
  if (variant == "signed") {
    Picture& p = drawn_[variant];
    p.image = signed_heatmap(raw_, p.blank);
    return p;
  }
  if (kind_ == MapKind::kLayerMap) {
    Picture& gray = drawn_["gray"];
    if (gray.image.empty()) {
      gray.image = to_gray8(normalize_map(raw_, range_, width_, height_));
      gray.blank = !(range_.max - range_.min > 0.0f);
    }
    if (variant == "gray") return gray;
    Picture& heat = drawn_["heatmap"];
    heat.image = colormap_.apply(gray.image);
    heat.blank = gray.blank;
    return heat;
  }
  // Input space: one rescaling gives the colour and the grey picture.
  const bool product = kind_ == MapKind::kInputProduct;
  const std::string mode = product ? "" : variant.substr(0, 3);
  const Rescale r = mode == "pos" ? Rescale::kPos : mode == "neg" ? Rescale::kNeg : Rescale::kAll;
  RescaledMap m = rescale_gradient(raw_, r);
  Picture& colour = drawn_[product ? "color" : mode];
  Picture& grey = drawn_[product ? "gray" : mode + "_gray"];
  colour = Picture{m.rgb, m.degenerate};
  grey = Picture{m.gray, m.degenerate};
  return drawn_[variant];
}

}  // namespace cnnviz
