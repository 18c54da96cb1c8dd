#include "cnnviz/io/preprocess.h"

#include <ATen/ATen.h>

#include <cmath>

#include "cnnviz/core/error.h"
#include "cnnviz/io/resize.h"

namespace cnnviz {

namespace {

// The resized image's longer side must fit the 32-bit sizes of the crop's
// geometry (only the crop is ever resized, so memory does not grow with it):
// with a shorter side of 256, images up to 4,194,304:1 fit.
constexpr int64_t kMaxResizedSide = int64_t{1} << 30;

// Python's round(): to nearest, ties to even.
// std::nearbyint rounds in the current mode, which is to-nearest-even unless a
// program changes it; cnnviz never does.
int round_half_even(double v) { return static_cast<int>(std::nearbyint(v)); }

}  // namespace

namespace {

// The letterbox: the longer side becomes p.resize, the shorter
// floor(short * resize / long + 0.5) (at least 1), centred on the square
// (the padding before it rounded down).
CropBox letterbox_box(int src_w, int src_h, const Preprocessing& p) {
  CropBox box;
  box.src_w = src_w;
  box.src_h = src_h;
  const int64_t longer = std::max(src_w, src_h), shorter = std::min(src_w, src_h);
  const auto side = static_cast<int>(
      std::max<int64_t>(1, (2 * shorter * p.resize + longer) / (2 * longer)));
  box.resized_w = src_w >= src_h ? p.resize : side;
  box.resized_h = src_w >= src_h ? side : p.resize;
  box.width = box.height = p.resize;
  box.left = -((p.resize - box.resized_w) / 2);
  box.top = -((p.resize - box.resized_h) / 2);
  return box;
}

// The letterboxed image: the resized source on a grey (114) square.
cv::Mat letterboxed(const cv::Mat& rgb, const CropBox& box) {
  cv::Mat canvas(box.height, box.width, CV_8UC3, cv::Scalar(114, 114, 114));
  resize_bilinear_pil(rgb, box.resized_w, box.resized_h)
      .copyTo(canvas(cv::Rect(-box.left, -box.top, box.resized_w, box.resized_h)));
  return canvas;
}

// torchvision's detection resize: scale = min(resize / shorter, max_size /
// longer), each side floor(side * scale). As torchvision computes it: in
// float32 tensors, where a number over a tensor is the tensor's reciprocal
// times the number (so 853 px at 800 gives 799), then the floor in double.
CropBox capped_box(int src_w, int src_h, const Preprocessing& p) {
  CropBox box;
  box.src_w = src_w;
  box.src_h = src_h;
  const auto over = [](int number, int side) {
    return (1.0f / static_cast<float>(side)) * static_cast<float>(number);
  };
  const float scale = std::min(over(p.resize, std::min(src_w, src_h)),
                               over(p.max_size, std::max(src_w, src_h)));
  const auto side = [scale](int v) {
    return static_cast<int>(std::max(1.0, std::floor(static_cast<double>(v) * scale)));
  };
  box.width = box.resized_w = side(src_w);
  box.height = box.resized_h = side(src_h);
  return box;
}

}  // namespace

CropBox crop_box(int src_w, int src_h, const Preprocessing& p) {
  if (src_w < 1 || src_h < 1) throw Error(ErrorCode::kInput, "image is empty");
  if (p.letterbox) return letterbox_box(src_w, src_h, p);
  if (p.max_size > 0) return capped_box(src_w, src_h, p);
  CropBox box;
  box.src_w = src_w;
  box.src_h = src_h;
  const int64_t shorter = std::min(src_w, src_h);
  const int64_t longer = std::max(src_w, src_h);
  // torchvision: new_long = int(size * long / short), in floating point.
  const int64_t new_long = static_cast<int64_t>(
      static_cast<double>(p.resize) * static_cast<double>(longer) / static_cast<double>(shorter));
  if (new_long > kMaxResizedSide) {
    throw Error(ErrorCode::kInput,
                std::to_string(src_w) + "x" + std::to_string(src_h) +
                    " pixels: too elongated (resized to a shorter side of " +
                    std::to_string(p.resize) + ", its longer side would be " +
                    std::to_string(new_long) + " pixels, beyond the fixed limit of " +
                    std::to_string(kMaxResizedSide) + ")");
  }
  if (src_w <= src_h) {
    box.resized_w = p.resize;
    box.resized_h = static_cast<int>(new_long);
  } else {
    box.resized_w = static_cast<int>(new_long);
    box.resized_h = p.resize;
  }
  if (p.crop <= 0) {  // no crop: the whole resized image
    box.width = box.resized_w;
    box.height = box.resized_h;
    return box;
  }
  box.width = box.height = p.crop;
  box.left = round_half_even((box.resized_w - p.crop) / 2.0);
  box.top = round_half_even((box.resized_h - p.crop) / 2.0);
  return box;
}

cv::Mat network_view(const cv::Mat& rgb, const CropBox& box) {
  if (box.left < 0 || box.top < 0) return letterboxed(rgb, box);
  return resize_bilinear_pil(rgb, box.resized_w, box.resized_h,
                             cv::Rect(box.left, box.top, box.width, box.height));
}

cv::Mat luma_601(const cv::Mat& rgb) {
  cv::Mat out(rgb.rows, rgb.cols, CV_8UC1);
  for (int y = 0; y < rgb.rows; ++y) {
    const uint8_t* in = rgb.ptr<uint8_t>(y);
    uint8_t* o = out.ptr<uint8_t>(y);
    for (int x = 0; x < rgb.cols; ++x) {
      const uint32_t r = in[3 * x], g = in[3 * x + 1], b = in[3 * x + 2];
      o[x] = static_cast<uint8_t>((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16);
    }
  }
  return out;
}

bool is_grey(const cv::Mat& rgb) {
  for (int y = 0; y < rgb.rows; ++y) {
    const uint8_t* in = rgb.ptr<uint8_t>(y);
    for (int x = 0; x < rgb.cols; ++x) {
      if (in[3 * x] != in[3 * x + 1] || in[3 * x] != in[3 * x + 2]) return false;
    }
  }
  return true;
}

at::Tensor preprocess(const cv::Mat& rgb, const Preprocessing& p) {
  if (rgb.empty() || rgb.type() != CV_8UC3) {
    throw Error(ErrorCode::kRuntime, "preprocess: expected a non-empty 8-bit RGB image");
  }
  const CropBox box = crop_box(rgb.cols, rgb.rows, p);
  if (p.channels == 1 && p.letterbox) {
    throw Error(ErrorCode::kRuntime, "preprocess: no letterbox for a grey model");
  }
  if (p.channels == 1) {
    // Luma first, then the resize, as Grayscale() before Resize() on a PIL image.
    cv::Mat crop = resize_bilinear_pil(luma_601(rgb), box.resized_w, box.resized_h,
                                       cv::Rect(box.left, box.top, box.width, box.height));
    float table[256];
    for (int v = 0; v < 256; ++v)
      table[v] = (static_cast<float>(v) / 255.0f - p.mean[0]) / p.std[0];
    at::Tensor x = at::empty({1, box.height, box.width}, at::kFloat);
    float* out = x.data_ptr<float>();
    for (int y = 0; y < box.height; ++y) {
      const uint8_t* row = crop.ptr<uint8_t>(y);
      for (int xx = 0; xx < box.width; ++xx)
        out[static_cast<size_t>(y) * box.width + xx] = table[row[xx]];
    }
    return x;
  }
  // Resize and crop in one step: only the kept rectangle is computed.
  const cv::Mat crop = network_view(rgb, box);
  // Plain loops rather than tensor ops: this runs on loader threads, where
  // LibTorch's intra-op parallelism must not start, and it is one pass. The
  // float operations are torchvision's, v / 255 then (x - mean) / std,
  // evaluated once per channel and byte value into a table.
  float table[3][256];
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      table[c][v] = (static_cast<float>(v) / 255.0f - p.mean[c]) / p.std[c];
    }
  }
  at::Tensor x = at::empty({3, box.height, box.width}, at::kFloat);
  const size_t plane = static_cast<size_t>(box.height) * box.width;
  float* r = x.data_ptr<float>();
  float* g = r + plane;
  float* b = g + plane;
  for (int y = 0; y < box.height; ++y) {
    const uint8_t* row = crop.ptr<uint8_t>(y);
    const size_t o = static_cast<size_t>(y) * box.width;
    for (int xx = 0; xx < box.width; ++xx) {
      r[o + xx] = table[0][row[xx * 3]];
      g[o + xx] = table[1][row[xx * 3 + 1]];
      b[o + xx] = table[2][row[xx * 3 + 2]];
    }
  }
  return x;
}

}  // namespace cnnviz
