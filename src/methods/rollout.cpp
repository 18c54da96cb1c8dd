// Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in
// Transformers"), as jacobgil/vit-explain computes it for ViT: per block,
// the heads are fused (--head-fusion mean, max or min), the weakest
// --discard-ratio of the fused matrix's entries are set to zero (never the
// class token's attention to itself; of equal values, those first in index
// order), the identity is added for the
// residual connection, a = (A + I) / 2, and the rows are renormalized to sum
// to 1; the rollout is the product a_k ... a_1. Its map at block k is the
// rollout through block k read on the token grid (the class token's row),
// so the last block's map is the rollout of the whole network. It depends on
// the image only, not on the class.
#include <ATen/ATen.h>

#include <cmath>

#include "attention_blocks.h"
#include "cnnviz/core/error.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

namespace {

at::Tensor fuse_heads(const at::Tensor& a, const std::string& how) {
  if (how == "max") return std::get<0>(a.max(1));
  if (how == "min") return std::get<0>(a.min(1));
  return a.mean(1);
}

// Sets the `ratio` share of smallest entries of each image's [T,T] matrix to
// zero (n = floor(T * T * ratio) of them, equal values taken in index order),
// then restores entry (0, 0) if it was among them.
at::Tensor discard_weakest(const at::Tensor& fused, double ratio) {
  const int64_t n = fused.size(0), t = fused.size(1);
  const auto k = static_cast<int64_t>(static_cast<double>(t * t) * ratio);
  if (k <= 0) return fused;
  const at::Tensor flat = fused.reshape({n, t * t});
  // The k-th smallest value; everything below it goes, and of the values
  // equal to it, the first ones until k are gone.
  const at::Tensor kth = std::get<0>(flat.kthvalue(k, 1, /*keepdim=*/true));
  const at::Tensor below = flat < kth;
  const at::Tensor equal = flat == kth;
  const at::Tensor room = k - below.sum(1, /*keepdim=*/true);
  at::Tensor gone = below | (equal & (equal.cumsum(1) <= room));
  gone.select(1, 0).fill_(false);
  return flat.masked_fill(gone, 0.0).reshape({n, t, t});
}

}  // namespace

void check_rollout(const MethodParams& p, int64_t, int64_t) {
  if (!(p.discard_ratio >= 0.0 && p.discard_ratio < 1.0)) {
    throw Error(ErrorCode::kUsage, "--discard-ratio " + std::to_string(p.discard_ratio) +
                                       ": must be in [0, 1) (1 would discard every attention)");
  }
  if (p.head_fusion != "mean" && p.head_fusion != "max" && p.head_fusion != "min") {
    throw Error(ErrorCode::kUsage,
                "--head-fusion '" + p.head_fusion + "': must be mean, max or min");
  }
}

std::vector<MethodMap> rollout(Capture& capture) {
  const MethodParams& p = capture.params();
  check_rollout(p, 0, 0);
  std::vector<MethodMap> maps;
  at::Tensor result;
  for (const method_util::AttentionBlock& b :
       method_util::attention_blocks(capture, "rollout", false)) {
    const int64_t t = b.weights.size(-1);
    const at::Tensor eye = at::eye(t, b.weights.options()).unsqueeze(0);
    at::Tensor a =
        (discard_weakest(fuse_heads(b.weights, p.head_fusion), p.discard_ratio) + eye) / 2;
    a = a / a.sum(-1, /*keepdim=*/true);
    result = result.defined() ? at::bmm(a, result) : a;
    maps.push_back({b.path, method_util::token_grid_map(result, b.path)});
  }
  return maps;
}

}  // namespace cnnviz::methods
