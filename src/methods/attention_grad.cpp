// Gradient-weighted attention (Chefer, Gur & Wolf 2021, "Generic
// Attention-model Explainability for Interpreting Bi-Modal and
// Encoder-Decoder Transformers", the self-attention rule): with A a block's
// attention [H,T,T] and dA the gradient of the target score at it,
// Abar = E_h[(dA * A)^+], and the relevance of token to token starts at the
// identity and grows per block as R <- R + Abar R. Its map at block k is R
// through block k read on the token grid (the class token's row). It is
// class-specific: the gradient is of the explained score (--class,
// --targets, --score, --counterfactual), from one backward pass.
#include <ATen/ATen.h>

#include "attention_blocks.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> attention_grad(Capture& capture) {
  std::vector<MethodMap> maps;
  at::Tensor r;
  for (const method_util::AttentionBlock& b :
       method_util::attention_blocks(capture, "attention-grad", true)) {
    const at::Tensor abar = (b.gradient * b.weights).clamp_min(0).mean(1);
    if (!r.defined()) {
      r = at::eye(abar.size(-1), abar.options()).unsqueeze(0).expand_as(abar).clone();
    }
    r = r + at::bmm(abar, r);
    maps.push_back({b.path, method_util::token_grid_map(r, b.path)});
  }
  return maps;
}

}  // namespace cnnviz::methods
