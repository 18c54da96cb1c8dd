#include "cnnviz/render.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cnnviz/error.h"
#include "cnnviz/files.h"
#include "cnnviz/resize.h"

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

cv::Mat to8(const at::Tensor& hwc01, int channels) {
  at::Tensor bytes = (hwc01.clamp(0.0, 1.0) * 255.0).round().to(at::kByte).contiguous();
  cv::Mat view(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8UC(channels),
               bytes.data_ptr<uint8_t>());
  return view.clone();
}

}  // namespace

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

at::Tensor rescale_gradient(const at::Tensor& m, Rescale mode, bool* degenerate) {
  at::Tensor num, den;
  switch (mode) {
    case Rescale::kAll:
      num = m - m.min();
      den = m.max() - m.min();
      break;
    case Rescale::kPos:
      num = m.clamp_min(0);
      den = m.max();
      break;
    case Rescale::kNeg:
      num = (-m).clamp_min(0);
      den = -m.min();
      break;
  }
  const double d = den.item<double>();
  if (degenerate) *degenerate = !(d > 0.0);
  if (!(d > 0.0)) return at::zeros_like(m);
  return num / d;
}

at::Tensor rgb_to_gray(const at::Tensor& rgb) {
  at::Tensor w = at::tensor({0.299f, 0.587f, 0.114f}).to(rgb.dtype()).view({3, 1, 1});
  return (rgb * w).sum(0);
}

cv::Mat to_bgr8(const at::Tensor& rgb01) {
  cv::Mat rgb = to8(rgb01.permute({1, 2, 0}), 3);
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

cv::Mat to_gray8(const at::Tensor& gray01) { return to8(gray01, 1); }

int colormap_id(const std::string& name) {
  auto it = colormaps().find(name);
  if (it != colormaps().end()) return it->second;
  std::string known;
  for (const std::string& n : colormap_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error(ErrorCode::kUsage, "--colormap " + name + ": unknown (known: " + known + ")");
}

std::vector<std::string> colormap_names() {
  std::vector<std::string> names;
  for (const auto& [n, id] : colormaps()) names.push_back(n);
  return names;
}

cv::Mat colorize(const at::Tensor& map01, int colormap) {
  cv::Mat heat;
  cv::applyColorMap(to_gray8(map01), heat, colormap);
  return heat;
}

cv::Mat blend(const cv::Mat& image_bgr, const cv::Mat& heat_bgr, double alpha) {
  cv::Mat out;
  cv::addWeighted(heat_bgr, alpha, image_bgr, 1.0 - alpha, 0.0, out);
  return out;
}

cv::Mat network_view_bgr(const cv::Mat& source_rgb, const CropBox& box) {
  cv::Mat crop = resize_bilinear_pil(source_rgb, box.resized_w, box.resized_h,
                                     cv::Rect(box.left, box.top, box.size, box.size));
  cv::Mat bgr;
  cv::cvtColor(crop, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

cv::Mat overlay_on_source(const cv::Mat& source_rgb, const at::Tensor& crop_map01,
                          const CropBox& box, int colormap, double alpha) {
  // The map in resized-image coordinates, then scaled back to the source.
  cv::Mat map8 = to_gray8(crop_map01);
  cv::Mat canvas = cv::Mat::zeros(box.resized_h, box.resized_w, CV_8UC1);
  cv::Mat mask = cv::Mat::zeros(box.resized_h, box.resized_w, CV_8UC1);
  const cv::Rect crop(box.left, box.top, box.size, box.size);
  map8.copyTo(canvas(crop));
  mask(crop).setTo(255);
  const cv::Size source(box.src_w, box.src_h);
  cv::resize(canvas, canvas, source, 0, 0, cv::INTER_LINEAR);
  cv::resize(mask, mask, source, 0, 0, cv::INTER_NEAREST);
  cv::Mat heat, image;
  cv::applyColorMap(canvas, heat, colormap);
  cv::cvtColor(source_rgb, image, cv::COLOR_RGB2BGR);
  cv::Mat out = image.clone();
  blend(image, heat, alpha).copyTo(out, mask);
  return out;
}

cv::Mat contact_sheet(const std::vector<std::pair<std::string, cv::Mat>>& tiles, int columns) {
  if (tiles.empty()) return cv::Mat();
  const int tw = tiles[0].second.cols, th = tiles[0].second.rows;
  const int caption = 22;
  const int cols = std::max(1, std::min<int>(columns, static_cast<int>(tiles.size())));
  const int rows = (static_cast<int>(tiles.size()) + cols - 1) / cols;
  cv::Mat sheet(rows * (th + caption), cols * tw, CV_8UC3, cv::Scalar(255, 255, 255));
  for (size_t i = 0; i < tiles.size(); ++i) {
    const int x = static_cast<int>(i) % cols * tw, y = static_cast<int>(i) / cols * (th + caption);
    cv::Mat tile = tiles[i].second;
    if (tile.channels() == 1) cv::cvtColor(tile, tile, cv::COLOR_GRAY2BGR);
    if (tile.size() != cv::Size(tw, th)) cv::resize(tile, tile, cv::Size(tw, th));
    tile.copyTo(sheet(cv::Rect(x, y, tw, th)));
    // Shrink long names to fit the tile width.
    double scale = 0.45;
    int baseline = 0;
    while (scale > 0.2 &&
           cv::getTextSize(tiles[i].first, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &baseline).width >
               tw - 6) {
      scale -= 0.05;
    }
    cv::putText(sheet, tiles[i].first, cv::Point(x + 3, y + th + caption - 7),
                cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }
  return sheet;
}

void write_png(const std::string& path, const cv::Mat& image) {
  std::vector<uint8_t> bytes;
  bool ok = false;
  try {
    // OpenCV's defaults (level 1 with the Z_RLE strategy) are its fastest;
    // naming a level explicitly switches to the default strategy, 2x slower.
    ok = cv::imencode(".png", image, bytes);
  } catch (const cv::Exception& e) {
    throw Error(ErrorCode::kOutput, "cannot encode '" + path + "': " + first_line(e.what()));
  }
  if (!ok) throw Error(ErrorCode::kOutput, "cannot encode '" + path + "' as PNG");
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace cnnviz
