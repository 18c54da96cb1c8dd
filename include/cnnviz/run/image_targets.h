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

#include "cnnviz/core/detections.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/progress.h"

namespace cnnviz {

// A detector's target as written (--box, a targets file's field): its
// detection K (best first, from 0), or the detections matching a box given
// in the source image's pixels, of one label when it names one
// (core/detections.h, BoxQuery).
struct BoxSpec {
  std::string text;              // as written
  std::string where;             // "--box", or "targets file 'F' line N"
  int64_t index = -1;            // K; -1 for a box
  std::optional<BoxQuery> box;   // x1,y1,x2,y2[:label], in the source's pixels
};

// Parses K or x1,y1,x2,y2[:label] (a label by index or name, as --class).
// Throws Error(kUsage) starting with `where` and the text for anything
// else, for x2 <= x1 or y2 <= y1, a negative or non-finite coordinate, and a
// label the model does not have.
BoxSpec parse_box_spec(const std::string& text, const ModelInfo& info,
                       const std::string& where = "--box");

// What one image's maps (or scores) are for.
struct ImageTargets {
  std::string source = "top";      // "top", "class" (--class), "box" (--box) or "targets" (the file)
  std::vector<int64_t> classes;    // resolved; empty for "top" (chosen from the logits)
  std::vector<std::string> specs;  // as written, one per class
  std::string error;               // a class that does not exist: the image fails
  std::vector<BoxSpec> boxes;      // a detector's, as given; empty: every detection
};

struct TargetRequest {
  std::vector<std::string> classes;  // --class (repeatable): indices or labels
  std::string targets_file;          // --targets; empty: none
  int top = 1;  // --top: the default when no class is given; 0: none (classify)
  std::vector<std::string> boxes;    // a detector's --box (repeatable)
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
  // logits for "top" images). A detector's are columns of its target
  // scores (engine.h): its --box or file targets (a box query's column is
  // its place in the list), else its first `detections` detections.
  TargetChooser chooser(const std::vector<size_t>& batch_positions,
                        int64_t detections = kMaxDetections) const;
  // The manifest's "class", "targets" and "top" options (and a detector's
  // "box").
  nlohmann::ordered_json options() const;

 private:
  ImageTargets class_row(const TargetRow& row, const std::string& image, const ModelInfo& info,
                         int64_t known) const;
  ImageTargets box_row(const TargetRow& row, const std::string& image,
                       const ModelInfo& info) const;
  void note_file_coverage(const std::vector<bool>& row_used, size_t images,
                          const std::string& fallback, Progress& progress) const;

  std::vector<ImageTargets> per_image_;  // by input position
  std::optional<TargetsFile> file_;
  std::vector<int64_t> fixed_;  // --class, without repeats
  std::vector<std::string> fixed_specs_;
  std::vector<BoxSpec> fixed_boxes_;  // a detector's --box
  bool detector_ = false;
  int top_ = 1;
  size_t max_ranks_ = 1;
  size_t not_in_file_ = 0;
};

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_IMAGE_TARGETS_H_
