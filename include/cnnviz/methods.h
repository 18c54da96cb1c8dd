// Visualization methods: the registry and the per-class view of a capture
// pass they compute from. Methods return raw float maps; they never touch
// files, colormaps or images (that is render.h's job).
#ifndef CNNVIZ_METHODS_H_
#define CNNVIZ_METHODS_H_

#include <ATen/core/Tensor.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/engine.h"

namespace cnnviz {

// One capture pass seen for one target class per image: memoizes the
// backward passes so that methods sharing one (Grad-CAM and guided Grad-CAM,
// say) do not repeat it.
class Capture {
 public:
  // classes: one target class per image of the pass.
  Capture(const Engine& engine, Pass& pass, std::vector<int64_t> classes);

  const std::vector<int64_t>& classes() const { return classes_; }
  const std::vector<std::string>& layers() const { return engine_.layers(); }
  std::optional<size_t> layer_index(const std::string& path) const;
  const at::Tensor& logits() const { return pass_.logits(); }

  // d logit[classes] / d input with every ReLU's backward in `mode`, [N,3,H,W].
  at::Tensor input_gradient(Backprop mode);
  // The output of layer i and the plain gradient there, [N,...].
  const at::Tensor& activation(size_t i) const;
  at::Tensor layer_gradient(size_t i);

 private:
  const Engine& engine_;
  Pass& pass_;
  std::vector<int64_t> classes_;
  std::map<Backprop, at::Tensor> input_grads_;
  std::vector<at::Tensor> layer_grads_;  // from the plain backward
};

// A method's result for one layer (or none): either input-space, [N,3,H,W]
// (saliency, guided backprop, deconvnet, guided Grad-CAM), or a class
// activation map at the layer's resolution, [N,h,w] (Grad-CAM, CAM).
// float32, unnormalized.
struct MethodMap {
  std::string layer;  // empty for input-space gradients of the whole network
  at::Tensor value;
  bool input_space() const { return value.dim() == 4; }
};

struct MethodDef {
  const char* name;         // subcommand name, e.g. "guided-gradcam"
  const char* summary;      // one line for --help and the README
  bool uses_layers;         // computes one map per requested layer
  const char* fixed_layer;  // a layer the method always needs (CAM), or nullptr
  std::vector<MethodMap> (*compute)(Capture& capture);
};

// The registry: every method, in the order the CLI lists them.
const std::vector<MethodDef>& method_table();

// Throws Error(kUsage) listing the known names when `name` is unknown.
const MethodDef& find_method(const std::string& name);

// Helpers shared by the methods (methods/common.cpp).
namespace method_util {
// Grad-CAM at layer i: relu(sum_k w_k A_k), w_k = spatial mean of the plain
// gradient. [N,h,w]. Throws Error(kUnsupported) for a non 4-D layer output.
at::Tensor gradcam(Capture& capture, size_t i);
// Per-image min-max normalization of [N,h,w] to [0,1]; an image whose map is
// constant becomes all zeros.
at::Tensor normalize_per_image(const at::Tensor& maps);
// Bilinear resize of [N,h,w] to [N,H,W] (half-pixel centres, as OpenCV's
// INTER_LINEAR and pytorch-grad-cam's cv2.resize).
at::Tensor upsample(const at::Tensor& maps, int64_t height, int64_t width);
}  // namespace method_util

}  // namespace cnnviz

#endif  // CNNVIZ_METHODS_H_
