// Faithfulness metrics for saliency maps (compute core, no image IO):
// deletion and insertion curves (Petsiuk et al. 2018, RISE), Average Drop
// and Increase in Confidence (Chattopadhay et al. 2018, Grad-CAM++), and the
// model-randomization sanity check (Adebayo et al. 2018).
#ifndef CNNVIZ_CORE_FAITHFULNESS_H_
#define CNNVIZ_CORE_FAITHFULNESS_H_

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "cnnviz/core/model.h"

namespace cnnviz {

// Logits [M,C] of normalized inputs [M,3,H,W].
using LogitsFn = std::function<at::Tensor(const at::Tensor&)>;

struct Faithfulness {
  std::vector<double> deletion;   // steps + 1 probabilities of the class
  std::vector<double> insertion;  // steps + 1 probabilities of the class
  double deletion_auc = 0;        // lower is better
  double insertion_auc = 0;       // higher is better
  double confidence = 0;          // p_c(x)
  double masked_confidence = 0;   // p_c(x * E), E = the map scaled to [0, 1]
  double drop = 0;                // max(0, confidence - masked) / confidence
  bool increase = false;          // masked > confidence
};

struct FaithfulnessOptions {
  int steps = 224;         // points of each curve, besides the start
  double blur_sigma = 10;  // the insertion curve's starting image
  int batch = 32;          // images per forward pass
};

// Curves and confidence metrics of `map` [H,W] (higher = more important)
// for class `cls` of one normalized image x [1,3,H,W]. Pixels are taken in
// the order of the map, descending (stable: ties in raster order), ceil(H W
// / steps) per step. Deletion sets them to 0 in the normalized tensor (the
// mean colour, as RISE); insertion starts from gaussian_blur(x, blur_sigma)
// and restores them. AUC: trapezoids on a uniform grid over [0, 1].
Faithfulness measure_faithfulness(const LogitsFn& logits, const at::Tensor& x,
                                  const at::Tensor& map, int64_t cls,
                                  const FaithfulnessOptions& options);

// A method's output for one image as one [H,W] importance map: input-space
// maps [3,H,W] by the maximum over channels of |value| (Simonyan et al.),
// layer maps [h,w] upsampled bilinearly to H x W.
at::Tensor importance_map(const at::Tensor& value, int64_t height, int64_t width);

// Spearman's rank correlation of two maps of the same size (ties get their
// average rank). 0 when either map is constant.
double spearman(const at::Tensor& a, const at::Tensor& b);

// The modules that own a weight of 2 or more dimensions (convolutions and
// linear layers), in the module tree's order (for torchvision models, the
// forward order).
std::vector<std::string> parametrized_layers(const Model& model);

// A fresh copy of `model` (loaded again from its file, with its info) whose
// last `top` parametrized layers have new weights and biases drawn from
// N(0, sd^2), sd = the standard deviation of the tensor they replace
// (Adebayo et al.'s cascading randomization). Returns the randomized paths.
Model randomized_copy(const Model& model, size_t top, uint64_t seed,
                      std::vector<std::string>* randomized = nullptr);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_FAITHFULNESS_H_
