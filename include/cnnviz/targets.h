// What a map explains: the target class of each image, given on the command
// line or chosen from the logits.
#ifndef CNNVIZ_TARGETS_H_
#define CNNVIZ_TARGETS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cnnviz/model.h"

namespace cnnviz {

// The classes a batch's maps explain, chosen once its logits [N,C] are
// known: result[r][n] is image n's class at rank r; every rank has one class
// per image.
using TargetChooser = std::function<std::vector<std::vector<int64_t>>(const at::Tensor& logits)>;

// Rank 1 only: class k for every image. Throws Error(kUsage) naming the
// class when k is not below the model's number of classes.
TargetChooser fixed_class(int64_t k);
// Ranks 1..n: each image's n most probable classes (at most C).
TargetChooser top_classes(int n);
// Rank 1 only: image n's class is per_image[n].
TargetChooser given_classes(std::vector<int64_t> per_image);

// A class given as an index ("281", leading zeros allowed) or a label
// (case-insensitive, "Tabby"). `classes` is the model's number of classes.
// Throws Error(kUsage) for an empty text, an index out of range, or a label
// that names no class (with the nearest labels as a hint).
int64_t parse_class(const std::string& text, const ModelInfo& info, int64_t classes);

}  // namespace cnnviz

#endif  // CNNVIZ_TARGETS_H_
