#include "cnnviz/core/feature_map.h"

#include <ATen/ATen.h>

#include <cmath>

#include "cnnviz/core/error.h"

namespace cnnviz {

namespace {

// s when n == s*s for an integer s >= 2, else 0.
int64_t square_side(int64_t n) {
  if (n < 4) return 0;
  int64_t s = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  while (s * s > n) --s;
  while ((s + 1) * (s + 1) <= n) ++s;
  return s * s == n ? s : 0;
}

}  // namespace

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

const char* FeatureLayout::name() const {
  switch (layout) {
    case Layout::kChannelsFirst:
      return "channels-first";
    case Layout::kChannelsLast:
      return "channels-last";
    case Layout::kTokens:
      return "tokens";
    case Layout::kClassAndTokens:
      return "class-token+tokens";
  }
  return "?";
}

std::string FeatureLayout::describe() const {
  const std::string grid = std::to_string(height) + "x" + std::to_string(width) + " grid";
  switch (layout) {
    case Layout::kChannelsFirst:
      return "as is";
    case Layout::kChannelsLast:
      return "channels last, permuted";
    case Layout::kTokens:
      return "tokens as a " + grid;
    case Layout::kClassAndTokens:
      return "class token dropped, tokens as a " + grid;
  }
  return "?";
}

std::optional<FeatureLayout> infer_layout(const std::vector<int64_t>& shape) {
  if (shape.size() == 4) {
    FeatureLayout l;
    if (shape[1] == shape[2] && shape[2] != shape[3]) {
      l = {Layout::kChannelsLast, shape[3], shape[1], shape[2]};
    } else {
      l = {Layout::kChannelsFirst, shape[1], shape[2], shape[3]};
    }
    if (l.height * l.width <= 1) return std::nullopt;
    return l;
  }
  if (shape.size() == 3) {
    if (int64_t s = square_side(shape[1])) return FeatureLayout{Layout::kTokens, shape[2], s, s};
    if (int64_t s = square_side(shape[1] - 1)) {
      return FeatureLayout{Layout::kClassAndTokens, shape[2], s, s};
    }
  }
  return std::nullopt;
}

at::Tensor to_feature_map(const at::Tensor& t, const std::string& layer, const std::string& model) {
  const std::vector<int64_t> shape = t.sizes().vec();
  std::optional<FeatureLayout> l = infer_layout(shape);
  if (!l) {
    std::string why;
    if (shape.size() == 3) {
      why = std::to_string(shape[1]) + " tokens do not form a square grid, with or without a " +
            "class token";
    } else if (shape.size() == 4) {
      why = "a single position, no spatial map";
    } else {
      why = "not a feature map ([N,C,h,w], [N,h,w,C] or [N,tokens,C])";
    }
    throw Error(ErrorCode::kUnsupported, "layer '" + layer + "' outputs " + shape_text(shape) +
                                             ": " + why + "; pick another layer with --layer (`" +
                                             "cnnviz layers -m " + model +
                                             "` shows how each layer is read)");
  }
  const int64_t n = shape[0];
  switch (l->layout) {
    case Layout::kChannelsFirst:
      return t;
    case Layout::kChannelsLast:
      return t.permute({0, 3, 1, 2});
    case Layout::kTokens:
      return t.permute({0, 2, 1}).reshape({n, l->channels, l->height, l->width});
    case Layout::kClassAndTokens:
      return t.slice(1, 1).permute({0, 2, 1}).reshape({n, l->channels, l->height, l->width});
  }
  return t;
}

}  // namespace cnnviz
