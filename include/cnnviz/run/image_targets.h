// Each image's targets for a run, from --class, --targets and --top: resolved
// once, before any work, so that a class that does not exist fails its image
// only, and so that explain and classify agree on what a targets file means.
#ifndef CNNVIZ_RUN_IMAGE_TARGETS_H_
#define CNNVIZ_RUN_IMAGE_TARGETS_H_

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/model.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/progress.h"

namespace cnnviz {

// What one image's maps (or scores) are for.
struct ImageTargets {
  std::string source = "top";      // "top", "class" (--class) or "targets" (the file)
  std::vector<int64_t> classes;    // resolved; empty for "top" (chosen from the logits)
  std::vector<std::string> specs;  // as written, one per class
  std::string error;               // a class that does not exist: the image fails
};

struct TargetRequest {
  std::vector<std::string> classes;  // --class (repeatable): indices or labels
  std::string targets_file;          // --targets; empty: none
  int top = 1;  // --top: the default when no class is given; 0: none (classify)
};

class TargetPlan {
 public:
  // Reads the targets file and resolves the targets of images[p] for each p
  // in `positions` (sorted). Throws Error(kUsage) for a --class that does not
  // exist and Error(kInput) for a targets file that cannot be read or
  // parsed. Notes through `progress` how many images the file does not name
  // (they get --class, else their top classes) and its rows that name no
  // image.
  TargetPlan(const ModelInfo& info, const std::vector<std::string>& images,
             const std::vector<size_t>& positions, const TargetRequest& request,
             Progress& progress);

  const ImageTargets& of(size_t position) const { return per_image_.at(position); }
  // The most classes any image can get: maps per image, at most.
  size_t max_ranks() const { return max_ranks_; }
  // Images of `positions` the file does not name (0 without a file).
  size_t not_in_file() const { return not_in_file_; }
  bool has_file() const { return file_.has_value(); }
  // The classes of a batch's images at these positions (chosen from the
  // logits for "top" images).
  TargetChooser chooser(const std::vector<size_t>& batch_positions) const;
  // The manifest's "class", "targets" and "top" options.
  nlohmann::ordered_json options() const;

 private:
  std::vector<ImageTargets> per_image_;  // by input position
  std::optional<TargetsFile> file_;
  std::vector<int64_t> fixed_;  // --class, without repeats
  std::vector<std::string> fixed_specs_;
  int top_ = 1;
  size_t max_ranks_ = 1;
  size_t not_in_file_ = 0;
};

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_IMAGE_TARGETS_H_
