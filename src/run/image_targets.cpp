#include "cnnviz/run/image_targets.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include <ATen/ATen.h>

#include "cnnviz/core/error.h"
#include "cnnviz/core/limits.h"

namespace cnnviz {

namespace {

bool all_digits(const std::string& text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

// x1,y1,x2,y2 of a --box, each a finite number >= 0; throws Error(kUsage)
// starting with `subject`.
BoxQuery parse_corners(const std::string& text, const std::string& subject) {
  std::vector<std::string> fields(1);
  for (char c : text) {
    if (c == ',') {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  double v[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < fields.size() && fields.size() == 4; ++i) {
    const std::string& f = fields[i];
    char* end = nullptr;
    v[i] = f.empty() || std::isspace(static_cast<unsigned char>(f[0])) ? NAN
                                                                        : std::strtod(f.c_str(), &end);
    if (end == nullptr || *end != '\0' || !std::isfinite(v[i])) v[i] = NAN;
  }
  if (fields.size() != 4 || !std::all_of(v, v + 4, [](double x) { return std::isfinite(x); })) {
    throw Error(ErrorCode::kUsage, subject + ": expected K (a detection, from 0) or "
                                             "x1,y1,x2,y2[:label] (a box in the image's pixels)");
  }
  if (std::any_of(v, v + 4, [](double x) { return x < 0; })) {
    throw Error(ErrorCode::kUsage, subject + ": lies outside the image (a coordinate is negative)");
  }
  if (!(v[2] > v[0]) || !(v[3] > v[1])) {
    throw Error(ErrorCode::kUsage, subject + ": an empty box (x2 must be above x1, y2 above y1)");
  }
  return BoxQuery{v[0], v[1], v[2], v[3], -1};
}

}  // namespace

BoxSpec parse_box_spec(const std::string& text, const ModelInfo& info, const std::string& where) {
  const std::string subject = where + " '" + text + "'";
  BoxSpec spec{text, where, -1, std::nullopt};
  if (all_digits(text)) {
    if (text.size() > 5 || std::stoll(text) >= kMaxDetections) {
      throw Error(ErrorCode::kUsage, subject + ": a detection index is below " +
                                         std::to_string(kMaxDetections));
    }
    spec.index = std::stoll(text);
    return spec;
  }
  const size_t colon = text.find(':');
  BoxQuery box = parse_corners(text.substr(0, colon), subject);
  if (colon != std::string::npos) {
    box.label = parse_class(text.substr(colon + 1), info, known_classes(info), subject + ": label");
  }
  spec.box = box;
  return spec;
}

namespace {

// One kind of detector target per list: indices or boxes.
void check_box_kinds(const std::vector<BoxSpec>& specs, const std::string& subject) {
  const bool boxes = std::any_of(specs.begin(), specs.end(), [](const BoxSpec& b) { return b.box; });
  const bool indices =
      std::any_of(specs.begin(), specs.end(), [](const BoxSpec& b) { return !b.box; });
  if (boxes && indices) {
    throw Error(ErrorCode::kUsage, subject + ": give detection indices or boxes, not both");
  }
}

// Adds `spec` unless the list has the same target already (`0` and `00`,
// or one box written two ways).
void add_box(std::vector<BoxSpec>& list, BoxSpec spec) {
  const auto same = [&](const BoxSpec& b) {
    if (b.box.has_value() != spec.box.has_value()) return false;
    if (!b.box) return b.index == spec.index;
    const BoxQuery& x = *b.box;
    const BoxQuery& y = *spec.box;
    return x.x1 == y.x1 && x.y1 == y.y1 && x.x2 == y.x2 && x.y2 == y.y2 && x.label == y.label;
  };
  if (std::none_of(list.begin(), list.end(), same)) list.push_back(std::move(spec));
}

// A CSV row whose four fields are all numbers: most likely a box written
// without quotes, which reads as four detection indices.
bool looks_like_unquoted_box(const TargetRow& row) {
  return row.classes.size() == 4 &&
         std::all_of(row.classes.begin(), row.classes.end(), all_digits);
}

std::vector<std::string> box_texts(const std::vector<BoxSpec>& specs) {
  std::vector<std::string> texts;
  for (const BoxSpec& b : specs) texts.push_back(b.text);
  return texts;
}

}  // namespace

TargetPlan::TargetPlan(const ModelInfo& info, const std::vector<std::string>& images,
                       const std::vector<size_t>& positions, const TargetRequest& request,
                       Progress& progress)
    : per_image_(images.size()),
      top_(std::max(1, request.top)),
      detector_(info.task == Task::kDetect) {
  const int64_t known = known_classes(info);
  for (const std::string& s : request.classes) {
    const int64_t k = parse_class(s, info, known);
    if (std::find(fixed_.begin(), fixed_.end(), k) != fixed_.end()) continue;
    fixed_.push_back(k);
    fixed_specs_.push_back(s);
  }
  for (const std::string& s : request.boxes) add_box(fixed_boxes_, parse_box_spec(s, info));
  check_box_kinds(fixed_boxes_, "--box");
  if (!request.targets_file.empty()) file_ = read_targets(request.targets_file);
  max_ranks_ = detector_ ? std::max<size_t>(1, fixed_boxes_.size())
               : fixed_.empty() ? static_cast<size_t>(top_)
                                : fixed_.size();
  std::vector<bool> row_used(file_ ? file_->rows.size() : 0);
  bool noted_unquoted = false;
  for (size_t p = 0; p < images.size(); ++p) {
    const TargetRow* row = file_ ? file_->find(images[p]) : nullptr;
    if (row) row_used[static_cast<size_t>(row - file_->rows.data())] = true;
    if (!std::binary_search(positions.begin(), positions.end(), p)) continue;
    ImageTargets& t = per_image_[p];
    if (!row) {
      if (file_) ++not_in_file_;
      if (!fixed_boxes_.empty()) t = ImageTargets{"box", {}, box_texts(fixed_boxes_), "", fixed_boxes_};
      if (!fixed_.empty()) t = ImageTargets{"class", fixed_, fixed_specs_, ""};
      continue;
    }
    t = detector_ ? box_row(*row, images[p], info) : class_row(*row, images[p], info, known);
    if (detector_ && !noted_unquoted && looks_like_unquoted_box(*row)) {
      noted_unquoted = true;
      progress.note("targets file '" + file_->path + "' line " + std::to_string(row->line) +
                    ": four detection indices; a box is one field (quote \"x1,y1,x2,y2\" in a "
                    "CSV, or separate the fields with tabs)");
    }
    max_ranks_ = std::max(max_ranks_, detector_ ? t.boxes.size() : t.classes.size());
  }
  if (!file_) return;
  const std::string fallback = detector_ ? (fixed_boxes_.empty() ? "every detection"
                                                                  : "the --box targets")
                               : !fixed_.empty()    ? "the --class targets"
                               : request.top <= 0 ? "their predictions only"
                               : top_ == 1        ? "their top-1 class"
                                           : "their top " + std::to_string(top_) + " classes";
  note_file_coverage(row_used, positions.size(), fallback, progress);
}

ImageTargets TargetPlan::class_row(const TargetRow& row, const std::string& image,
                                   const ModelInfo& info, int64_t known) const {
  ImageTargets t;
  t.source = "targets";
  for (const std::string& spec : row.classes) {
    int64_t k = 0;
    try {
      k = parse_class(spec, info, known,
                      "targets file '" + file_->path + "' line " + std::to_string(row.line) +
                          ": class");
    } catch (const Error& e) {
      t.error = "image '" + image + "': " + e.what();
      break;
    }
    if (std::find(t.classes.begin(), t.classes.end(), k) != t.classes.end()) continue;
    t.classes.push_back(k);
    t.specs.push_back(spec);
  }
  return t;
}

ImageTargets TargetPlan::box_row(const TargetRow& row, const std::string& image,
                                 const ModelInfo& info) const {
  ImageTargets t;
  t.source = "targets";
  const std::string where = "targets file '" + file_->path + "' line " + std::to_string(row.line);
  try {
    for (const std::string& spec : row.classes) add_box(t.boxes, parse_box_spec(spec, info, where));
    check_box_kinds(t.boxes, where);
  } catch (const Error& e) {
    t.error = "image '" + image + "': " + e.what();
    t.boxes.clear();
  }
  t.specs = box_texts(t.boxes);
  return t;
}

void TargetPlan::note_file_coverage(const std::vector<bool>& row_used, size_t images,
                                    const std::string& fallback, Progress& progress) const {
  if (not_in_file_ > 0) {
    progress.note("targets: " + std::to_string(not_in_file_) + " of " + std::to_string(images) +
                  " images are not in '" + file_->path + "'; they get " + fallback);
  }
  const auto unused = std::find(row_used.begin(), row_used.end(), false);
  if (unused != row_used.end()) {
    const TargetRow& first = file_->rows[static_cast<size_t>(unused - row_used.begin())];
    progress.note("targets: " + std::to_string(std::count(unused, row_used.end(), false)) +
                  " rows of '" + file_->path + "' name no input image (first: line " +
                  std::to_string(first.line) + ", '" + first.image + "')");
  }
}

namespace {

// A detector's targets are columns of its scores [N,K] (engine.h): image
// n's are `per_image[n]` (kNoTarget where its score is -inf or it has no
// such column), else its first `count` columns that have a target.
TargetChooser detection_columns(std::vector<std::optional<std::vector<int64_t>>> per_image,
                                int64_t count) {
  return [per_image = std::move(per_image), count](const at::Tensor& scores) {
    std::vector<std::vector<int64_t>> ranks;
    for (int64_t n = 0; n < scores.size(0); ++n) {
      const auto& given = per_image.at(static_cast<size_t>(n));
      const at::Tensor row = scores[n].contiguous();
      const float* s = row.data_ptr<float>();
      const auto has = [&](int64_t k) { return k >= 0 && k < row.size(0) && !std::isinf(s[k]); };
      std::vector<int64_t> mine;
      if (given) {
        for (int64_t k : *given) mine.push_back(has(k) ? k : kNoTarget);
      } else {
        for (int64_t k = 0; k < row.size(0) && static_cast<int64_t>(mine.size()) < count; ++k) {
          if (has(k)) mine.push_back(k);
        }
      }
      for (size_t r = 0; r < mine.size(); ++r) {
        if (r >= ranks.size()) ranks.emplace_back(static_cast<size_t>(scores.size(0)), kNoTarget);
        ranks[r][static_cast<size_t>(n)] = mine[r];
      }
    }
    return ranks;
  };
}

}  // namespace

TargetChooser TargetPlan::chooser(const std::vector<size_t>& batch_positions,
                                  int64_t detections) const {
  if (detector_) {
    std::vector<std::optional<std::vector<int64_t>>> per_image;
    for (size_t p : batch_positions) {
      const std::vector<BoxSpec>& boxes = per_image_.at(p).boxes;
      if (boxes.empty()) {
        per_image.emplace_back();
        continue;
      }
      per_image.emplace_back(std::vector<int64_t>());
      for (size_t k = 0; k < boxes.size(); ++k) {
        per_image.back()->push_back(boxes[k].box ? static_cast<int64_t>(k) : boxes[k].index);
      }
    }
    return detection_columns(std::move(per_image), detections);
  }
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
  json options = {{"class", fixed_specs_.empty() ? json(nullptr) : json(fixed_specs_)},
                  {"targets", file},
                  {"top", fixed_.empty() && !detector_ ? json(top_) : json(nullptr)}};
  if (detector_) {
    options["box"] = fixed_boxes_.empty() ? json(nullptr) : json(box_texts(fixed_boxes_));
  }
  return options;
}

}  // namespace cnnviz
