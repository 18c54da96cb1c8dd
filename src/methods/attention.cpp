// Raw attention: at each attention block, how much the class token attends
// to each patch token (the mean over query tokens when the model has no
// class token), averaged over the heads or of one head (--head), drawn on the
// token grid. It depends on the image only, not on the class.
#include <ATen/ATen.h>

#include "attention_blocks.h"
#include "cnnviz/core/error.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> attention(Capture& capture) {
  const int head = capture.params().head;
  std::vector<MethodMap> maps;
  for (const method_util::AttentionBlock& b :
       method_util::attention_blocks(capture, "attention", false)) {
    const int64_t heads = b.weights.size(1);
    if (head >= heads) {
      throw Error(ErrorCode::kUsage, "--head " + std::to_string(head) + ": layer '" + b.path +
                                         "' has " + std::to_string(heads) + " heads (0 to " +
                                         std::to_string(heads - 1) + ", or -1 for their mean)");
    }
    const at::Tensor a = head < 0 ? b.weights.mean(1) : b.weights.select(1, head);
    maps.push_back({b.path, method_util::token_grid_map(a, b.path)});
    for (int h = 0; capture.params().every_head && h < heads; ++h) {
      maps.push_back({b.path, method_util::token_grid_map(b.weights.select(1, h), b.path), h});
    }
  }
  return maps;
}

}  // namespace cnnviz::methods
