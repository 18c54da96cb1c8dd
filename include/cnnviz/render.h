// Turning raw method maps into images: the seed tutorial's rescaling and
// grayscale conversion, colormaps, overlays and contact sheets. Rendering
// never touches the model.
#ifndef CNNVIZ_RENDER_H_
#define CNNVIZ_RENDER_H_

#include <ATen/core/Tensor.h>

#include <opencv2/core/mat.hpp>
#include <string>
#include <utility>
#include <vector>

#include "cnnviz/preprocess.h"

namespace cnnviz {

// The seed's rescale_grads on a [3,H,W] gradient, to [0,1]:
//   kAll  (m - min) / (max - min)
//   kPos  max(0, m) / max(m)
//   kNeg  max(0, -m) / -min(m)
// When the denominator is not positive (a constant map, no positive or no
// negative values) the result is all zeros and *degenerate is set.
enum class Rescale { kAll, kPos, kNeg };
const char* rescale_name(Rescale r);
at::Tensor rescale_gradient(const at::Tensor& gradient, Rescale mode, bool* degenerate);

// The seed's rgb2gray: dot(rgb, [0.299, 0.587, 0.114]) over the channels of a
// [3,H,W] map. Returns [H,W].
at::Tensor rgb_to_gray(const at::Tensor& rgb);

// [3,H,W] in [0,1] -> 8-bit BGR (for cv::imwrite); [H,W] in [0,1] -> 8-bit grey.
cv::Mat to_bgr8(const at::Tensor& rgb01);
cv::Mat to_gray8(const at::Tensor& gray01);

// OpenCV colormaps by lower-case name ("jet", "turbo", "viridis", ...).
// Throws Error(kUsage) listing the names for an unknown one.
int colormap_id(const std::string& name);
std::vector<std::string> colormap_names();

// A [H,W] map in [0,1] through a colormap: 8-bit BGR.
cv::Mat colorize(const at::Tensor& map01, int colormap);

// alpha * heat + (1 - alpha) * image, both 8-bit BGR of the same size.
cv::Mat blend(const cv::Mat& image_bgr, const cv::Mat& heat_bgr, double alpha);

// The overlay of a crop-sized [S,S] map in [0,1] on the whole source image:
// the map is placed where the crop lies in the resized image and resized
// with it back to the source size; outside the crop the image is unchanged.
cv::Mat overlay_on_source(const cv::Mat& source_rgb, const at::Tensor& crop_map01,
                          const CropBox& box, int colormap, double alpha);

// The crop the network saw, as 8-bit BGR (for overlays at input size).
cv::Mat network_view_bgr(const cv::Mat& source_rgb, const CropBox& box);

// A grid of equally sized BGR tiles, each captioned below, `columns` wide.
cv::Mat contact_sheet(const std::vector<std::pair<std::string, cv::Mat>>& tiles, int columns);

// Encodes `image` as PNG and writes it atomically. Throws Error(kOutput).
void write_png(const std::string& path, const cv::Mat& image);

}  // namespace cnnviz

#endif  // CNNVIZ_RENDER_H_
