// What the methods made for attention share (attention, rollout,
// attention-grad): a pass's attentions as one [N,H,T,T] tensor per block,
// checked to attend over all of the image's tokens, and the reading of a
// token-by-token matrix as a map on the token grid.
#ifndef CNNVIZ_METHODS_ATTENTION_BLOCKS_H_
#define CNNVIZ_METHODS_ATTENTION_BLOCKS_H_

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "cnnviz/methods/methods.h"

namespace cnnviz::method_util {

struct AttentionBlock {
  std::string path;     // the module that computes it
  at::Tensor weights;   // [N,H,T,T]: image, head, query token, key token
  at::Tensor gradient;  // the same shape; undefined unless asked for
};

// The capture's attentions in forward order (N: its images). With
// `gradients`, after the plain backward of the capture's target. Throws
// Error(kUnsupported), naming `method` and the layer, for an attention that
// does not attend over every token of its input (Swin's windows, MaxViT's
// blocks and grids: its input is not [N,T,C] or [T,N,C] with its T tokens),
// that runs more than once, or whose blocks differ in their token count.
std::vector<AttentionBlock> attention_blocks(Capture& capture, const std::string& method,
                                             bool gradients);

// A token-by-token matrix [N,T,T] read as a map on the token grid [N,g,g]:
// the class token's row (token 0) over the patch tokens when T = 1 + g*g,
// the mean of the rows when T = g*g. Throws Error(kUnsupported) naming
// `layer` when T is neither.
at::Tensor token_grid_map(const at::Tensor& matrix, const std::string& layer);

}  // namespace cnnviz::method_util

#endif  // CNNVIZ_METHODS_ATTENTION_BLOCKS_H_
