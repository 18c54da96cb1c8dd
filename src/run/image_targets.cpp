#include "cnnviz/run/image_targets.h"

#include <algorithm>

#include "cnnviz/core/error.h"

namespace cnnviz {

TargetPlan::TargetPlan(const ModelInfo& info, const std::vector<std::string>& images,
                       const std::vector<size_t>& positions, const TargetRequest& request,
                       Progress& progress)
    : per_image_(images.size()), top_(std::max(1, request.top)) {
  const int64_t known = known_classes(info);
  for (const std::string& s : request.classes) {
    const int64_t k = parse_class(s, info, known);
    if (std::find(fixed_.begin(), fixed_.end(), k) != fixed_.end()) continue;
    fixed_.push_back(k);
    fixed_specs_.push_back(s);
  }
  if (!request.targets_file.empty()) file_ = read_targets(request.targets_file);
  max_ranks_ = fixed_.empty() ? static_cast<size_t>(top_) : fixed_.size();
  if (!file_) {
    if (!fixed_.empty()) {
      for (size_t p : positions) per_image_[p] = ImageTargets{"class", fixed_, fixed_specs_, ""};
    }
    return;
  }
  std::vector<bool> row_used(file_->rows.size());
  for (size_t p = 0; p < images.size(); ++p) {
    const TargetRow* row = file_->find(images[p]);
    if (row) row_used[static_cast<size_t>(row - file_->rows.data())] = true;
    if (!std::binary_search(positions.begin(), positions.end(), p)) continue;
    ImageTargets& t = per_image_[p];
    if (!row) {
      ++not_in_file_;
      if (!fixed_.empty()) t = ImageTargets{"class", fixed_, fixed_specs_, ""};
      continue;
    }
    t.source = "targets";
    for (const std::string& spec : row->classes) {
      int64_t k = 0;
      try {
        k = parse_class(
            spec, info, known,
            "targets file '" + file_->path + "' line " + std::to_string(row->line) + ": class");
      } catch (const Error& e) {
        t.error = "image '" + images[p] + "': " + e.what();
        break;
      }
      if (std::find(t.classes.begin(), t.classes.end(), k) != t.classes.end()) continue;
      t.classes.push_back(k);
      t.specs.push_back(spec);
    }
    max_ranks_ = std::max(max_ranks_, t.classes.size());
  }
  if (not_in_file_ > 0) {
    const std::string fallback = !fixed_.empty()    ? "the --class targets"
                                 : request.top <= 0 ? "their predictions only"
                                 : top_ == 1        ? "their top-1 class"
                                             : "their top " + std::to_string(top_) + " classes";
    progress.note("targets: " + std::to_string(not_in_file_) + " of " +
                  std::to_string(positions.size()) + " images are not in '" + file_->path +
                  "'; they get " + fallback);
  }
  const auto unused = std::find(row_used.begin(), row_used.end(), false);
  if (unused != row_used.end()) {
    const TargetRow& first = file_->rows[static_cast<size_t>(unused - row_used.begin())];
    progress.note("targets: " + std::to_string(std::count(unused, row_used.end(), false)) +
                  " rows of '" + file_->path + "' name no input image (first: line " +
                  std::to_string(first.line) + ", '" + first.image + "')");
  }
}

TargetChooser TargetPlan::chooser(const std::vector<size_t>& batch_positions) const {
  if (file_) {
    std::vector<std::optional<std::vector<int64_t>>> per_image;
    for (size_t p : batch_positions) {
      const ImageTargets& t = per_image_.at(p);
      per_image.push_back(t.source == "top" ? std::nullopt : std::optional(t.classes));
    }
    return per_image_classes(std::move(per_image), top_);
  }
  if (!fixed_.empty()) return fixed_classes(fixed_);
  return top_classes(top_);
}

nlohmann::ordered_json TargetPlan::options() const {
  using json = nlohmann::ordered_json;
  json file = nullptr;
  if (file_) {
    file = {{"file", file_->path}, {"rows", file_->rows.size()}, {"digest", file_->digest}};
  }
  return {{"class", fixed_specs_.empty() ? json(nullptr) : json(fixed_specs_)},
          {"targets", file},
          {"top", fixed_.empty() ? json(top_) : json(nullptr)}};
}

}  // namespace cnnviz
