// The arithmetic here follows Pillow's Resample.c (its documented behaviour:
// triangle filter scaled by max(scale, 1), taps centred at (i + 0.5) * scale,
// coefficients normalised to sum 1 and stored as round(c * 2^22), accumulation
// from 2^21 so that the final >> 22 rounds to nearest), because torchvision's
// Resize on a PIL image is that code, and matching it bit for bit is what makes
// cnnviz's top-5 identical to the Python pipeline's.
#include "cnnviz/io/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cnnviz/core/error.h"

namespace cnnviz {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

// For each output index in [lo, lo + first.size()): the first input index
// and the fixed-point weights of the `count` inputs from there on. Only the
// outputs asked for are held, so a crop of a very long image costs the crop.
struct Taps {
  int ksize = 0;
  int lo = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // ksize per output index
  int first_of(int o) const { return first[o - lo]; }
  int count_of(int o) const { return count[o - lo]; }
  const int32_t* weights_of(int o) const { return &weights[static_cast<size_t>(o - lo) * ksize]; }
};

double triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// The taps of outputs [lo, hi) of a resize from in_size to out_size.
Taps make_taps(int in_size, int out_size, int lo_out, int hi_out) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;  // the triangle's support is 1
  Taps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.lo = lo_out;
  const int n_out = hi_out - lo_out;
  t.first.resize(n_out);
  t.count.resize(n_out);
  t.weights.assign(static_cast<size_t>(n_out) * t.ksize, 0);
  std::vector<double> k(t.ksize);
  for (int o = lo_out; o < hi_out; ++o) {
    const double center = (o + 0.5) * scale;
    int lo = static_cast<int>(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = static_cast<int>(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int n = hi - lo;
    double sum = 0.0;
    std::fill(k.begin(), k.end(), 0.0);
    for (int i = 0; i < n; ++i) {
      k[i] = triangle((i + lo - center + 0.5) / filter_scale);
      sum += k[i];
    }
    for (int i = 0; i < t.ksize; ++i) {
      double c = sum != 0.0 && i < n ? k[i] / sum : 0.0;
      c *= static_cast<double>(1 << kPrecisionBits);
      t.weights[static_cast<size_t>(o - lo_out) * t.ksize + i] =
          static_cast<int32_t>(c < 0 ? std::trunc(c - 0.5) : std::trunc(c + 0.5));
    }
    t.first[o - lo_out] = lo;
    t.count[o - lo_out] = n;
  }
  return t;
}

inline uint8_t clip8(int32_t acc) {
  int32_t v = acc >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One row of the horizontal pass: output columns [x0, x0 + width) of an
// image with C interleaved channels. The channel count is a template
// argument so that the channels of a pixel share each weight load in
// registers; about 2.5x faster than a loop over channels at run time.
template <int C>
void resize_row(const uint8_t* in, uint8_t* out, const Taps& t, int x0, int width) {
  for (int xo = 0; xo < width; ++xo) {
    const int x = x0 + xo;
    const int32_t* w = t.weights_of(x);
    const uint8_t* px = in + static_cast<size_t>(t.first_of(x)) * C;
    int32_t acc[C];
    for (int c = 0; c < C; ++c) acc[c] = 1 << (kPrecisionBits - 1);
    const int n = t.count_of(x);
    for (int i = 0; i < n; ++i) {
      const int32_t wi = w[i];
      for (int c = 0; c < C; ++c) acc[c] += px[i * C + c] * wi;
    }
    for (int c = 0; c < C; ++c) out[xo * C + c] = clip8(acc[c]);
  }
}

}  // namespace

cv::Mat resize_bilinear_pil(const cv::Mat& src, int out_w, int out_h, cv::Rect roi) {
  if (src.empty() || src.depth() != CV_8U || src.channels() > 4 || out_w < 1 || out_h < 1) {
    throw Error(ErrorCode::kRuntime,
                "resize: expected a non-empty 8-bit image and a positive size");
  }
  if (roi.area() == 0) roi = cv::Rect(0, 0, out_w, out_h);
  if ((roi & cv::Rect(0, 0, out_w, out_h)) != roi) {
    throw Error(ErrorCode::kRuntime, "resize: region of interest outside the output image");
  }
  const int channels = src.channels();
  const bool resize_x = out_w != src.cols, resize_y = out_h != src.rows;
  cv::Mat input = src.isContinuous() ? src : src.clone();

  // Horizontal pass, on the input rows the vertical pass will read.
  const Taps ty = resize_y ? make_taps(src.rows, out_h, roi.y, roi.y + roi.height) : Taps();
  const int last = roi.y + roi.height - 1;
  const int row_lo = resize_y ? ty.first_of(roi.y) : roi.y;
  const int row_hi = resize_y ? ty.first_of(last) + ty.count_of(last) : roi.y + roi.height;
  cv::Mat horizontal;
  if (resize_x) {
    const Taps tx = make_taps(src.cols, out_w, roi.x, roi.x + roi.width);
    horizontal.create(row_hi - row_lo, roi.width, src.type());
    auto row = channels == 1   ? resize_row<1>
               : channels == 2 ? resize_row<2>
               : channels == 3 ? resize_row<3>
                               : resize_row<4>;
    for (int y = row_lo; y < row_hi; ++y) {
      row(input.ptr<uint8_t>(y), horizontal.ptr<uint8_t>(y - row_lo), tx, roi.x, roi.width);
    }
  } else {
    horizontal = input.rowRange(row_lo, row_hi).colRange(roi.x, roi.x + roi.width);
  }
  if (!resize_y) return horizontal.clone();

  // Vertical pass over the horizontally resized rows.
  cv::Mat out(roi.height, roi.width, src.type());
  const int row_bytes = roi.width * channels;
  std::vector<int32_t> acc(row_bytes);
  for (int yo = 0; yo < roi.height; ++yo) {
    const int y = roi.y + yo;
    const int32_t* w = ty.weights_of(y);
    const int first = ty.first_of(y) - row_lo;
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int i = 0; i < ty.count_of(y); ++i) {
      const uint8_t* in = horizontal.ptr<uint8_t>(first + i);
      for (int b = 0; b < row_bytes; ++b) acc[b] += in[b] * w[i];
    }
    uint8_t* dst = out.ptr<uint8_t>(yo);
    for (int b = 0; b < row_bytes; ++b) dst[b] = clip8(acc[b]);
  }
  return out;
}

}  // namespace cnnviz
