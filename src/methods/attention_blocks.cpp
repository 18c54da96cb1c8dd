#include "attention_blocks.h"

#include <ATen/ATen.h>

#include <cmath>

#include "cnnviz/core/error.h"
#include "cnnviz/core/feature_map.h"

namespace cnnviz::method_util {

namespace {

int64_t square_side(int64_t n) {
  const auto g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  return g > 0 && g * g == n ? g : 0;
}

// [..., T, T] weights of one attention as [N,H,T,T], checked.
at::Tensor per_head(const AttentionRecord& a, int64_t n, const std::string& method) {
  const std::string subject = method + ": layer '" + a.path + "'";
  if (a.calls != 1) {
    throw Error(ErrorCode::kUnsupported, subject + " runs " + std::to_string(a.calls) +
                                             " times in one forward pass (its attention is "
                                             "not one per image)");
  }
  const at::Tensor& w = a.weights;
  const int64_t t = w.dim() >= 2 ? w.size(-1) : 0;
  const std::vector<int64_t>& in = a.input_shape;
  const bool all_tokens =
      in.size() == 3 && ((in[0] == n && in[1] == t) || (in[0] == t && in[1] == n));
  if (!all_tokens || w.size(-2) != t || w.numel() % (n * t * t) != 0) {
    throw Error(ErrorCode::kUnsupported,
                subject + " attends within windows (" + std::to_string(t) +
                    " tokens at a time; its input is " + shape_text(in) + "): " + method +
                    " needs attention over all of the image's tokens, as in ViT");
  }
  return w.reshape({n, -1, t, t});
}

}  // namespace

std::vector<AttentionBlock> attention_blocks(Capture& capture, const std::string& method,
                                             bool gradients) {
  const auto n = static_cast<int64_t>(capture.classes().size());
  if (gradients) capture.input_gradient(Backprop::kPlain);
  std::vector<AttentionBlock> blocks;
  for (const AttentionRecord& a : capture.pass().attention()) {
    AttentionBlock b{a.path, per_head(a, n, method), {}};
    if (gradients) {
      b.gradient =
          a.gradient.defined() ? a.gradient.reshape(b.weights.sizes()) : at::zeros_like(b.weights);
    }
    if (!blocks.empty() && blocks.front().weights.size(-1) != b.weights.size(-1)) {
      throw Error(ErrorCode::kUnsupported, method + ": layer '" + a.path + "' attends over " +
                                               std::to_string(b.weights.size(-1)) +
                                               " tokens, layer '" + blocks.front().path +
                                               "' over " +
                                               std::to_string(blocks.front().weights.size(-1)) +
                                               " (the blocks must share one token sequence)");
    }
    blocks.push_back(std::move(b));
  }
  return blocks;
}

at::Tensor token_grid_map(const at::Tensor& matrix, const std::string& layer) {
  const int64_t t = matrix.size(-1);
  if (const int64_t g = square_side(t - 1); g > 0) {
    return matrix.select(1, 0).slice(1, 1).reshape({matrix.size(0), g, g});
  }
  if (const int64_t g = square_side(t); g > 0) {
    return matrix.mean(1).reshape({matrix.size(0), g, g});
  }
  throw Error(ErrorCode::kUnsupported,
              "layer '" + layer + "': its " + std::to_string(t) +
                  " tokens do not form a square grid (with or without one class token first)");
}

}  // namespace cnnviz::method_util
