// How a layer's output is read as a spatial feature map [N,C,h,w]: the one
// reshape rule the layer methods (Grad-CAM and the CAM family) apply, for
// every architecture alike, with no per-model code.
//
//   [N,C,h,w]    convolutional maps: as they are.
//   [N,h,w,C]    channels-last maps (Swin's stages, ConvNeXt's block
//                internals): permuted. A 4-D output is channels-last when
//                its dims 1 and 2 are equal and dims 2 and 3 are not (inputs
//                are square crops, so a map's h equals its w).
//   [N,T,C]      token sequences (ViT's encoder blocks): when T = s*s the
//                tokens are an s x s grid; when T = 1 + s*s the first one is
//                a class token and is dropped. Any other T is not a map.
//
// A map must have more than one position (h*w > 1) to count as spatial.
#ifndef CNNVIZ_CORE_FEATURE_MAP_H_
#define CNNVIZ_CORE_FEATURE_MAP_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cnnviz {

enum class Layout {
  kChannelsFirst,   // [N,C,h,w]
  kChannelsLast,    // [N,h,w,C]
  kTokens,          // [N,h*w,C]
  kClassAndTokens,  // [N,1+h*w,C]
};

struct FeatureLayout {
  Layout layout = Layout::kChannelsFirst;
  int64_t channels = 0, height = 0, width = 0;

  // "as is", "channels last, permuted", "tokens as a 14x14 grid", "class
  // token dropped, tokens as a 14x14 grid".
  std::string describe() const;
  // "channels-first", "channels-last", "tokens", "class-token+tokens".
  const char* name() const;
};

// The layout of an output of `shape` (batch dimension first), or nullopt
// when the rule does not read it as a map with more than one position.
std::optional<FeatureLayout> infer_layout(const std::vector<int64_t>& shape);

// "[1, 3, 224, 224]", as messages write shapes.
std::string shape_text(const std::vector<int64_t>& shape);

// `layer`'s output `t` as [N,C,h,w] (a view where it can be). Throws
// Error(kUnsupported) naming the layer, its shape and why, and pointing to
// `cnnviz layers -m MODEL` (model: the model's name), when the rule does not
// read it as a map.
at::Tensor to_feature_map(const at::Tensor& t, const std::string& layer, const std::string& model);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_FEATURE_MAP_H_
