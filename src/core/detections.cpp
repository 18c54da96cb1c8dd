#include "cnnviz/core/detections.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <climits>

#include "cnnviz/core/error.h"

namespace cnnviz {

namespace {

std::string shape_text(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

void check_fits(const at::Tensor& raw, DetectLayout layout, int64_t classes,
                const std::string& path) {
  const bool v8 = layout == DetectLayout::kYolov8;
  const int64_t fixed = v8 ? 4 : 5;
  const int64_t axis = v8 ? 1 : 2;  // the one that holds the box, (objectness) and classes
  const bool fits = raw.dim() == 3 && raw.size(axis) > fixed &&
                    (classes == INT64_MAX || raw.size(axis) == fixed + classes);
  if (fits) return;
  const std::string c = classes == INT64_MAX ? "C" : "C = " + std::to_string(classes);
  throw Error(ErrorCode::kModel,
              "model '" + path + "': its output " + shape_text(raw) + " does not fit layout " +
                  layout_name(layout) + " (" + (v8 ? "[N, 4+C, A]" : "[N, A, 5+C]") + " with " +
                  c + " classes)");
}

// Better first: by score, then the earlier anchor, then the lower label.
bool better(const Detection& a, const Detection& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.anchor != b.anchor ? a.anchor < b.anchor : a.label < b.label;
}

// The best kMaxNmsCandidates of `candidates` (in no order): what suppress()
// would keep, so that every class of every anchor never sits in memory at
// once (RetinaNet at 800 x 1,066 px: 14.6 million at a threshold of 0).
void keep_best(std::vector<Detection>& candidates) {
  if (static_cast<int64_t>(candidates.size()) <= kMaxNmsCandidates) return;
  std::nth_element(candidates.begin(), candidates.begin() + kMaxNmsCandidates, candidates.end(),
                   better);
  candidates.resize(static_cast<size_t>(kMaxNmsCandidates));
}

// Greedy non-maximum suppression per label over `candidates`, best first.
std::vector<Detection> suppress(std::vector<Detection> candidates, const DetectSettings& s) {
  std::sort(candidates.begin(), candidates.end(), better);
  if (static_cast<int64_t>(candidates.size()) > kMaxNmsCandidates) {
    candidates.resize(static_cast<size_t>(kMaxNmsCandidates));
  }
  std::vector<Detection> kept;
  for (const Detection& d : candidates) {
    if (static_cast<int>(kept.size()) >= s.max_detections) break;
    const bool overlaps = std::any_of(kept.begin(), kept.end(), [&](const Detection& k) {
      return k.label == d.label && box_iou(k, d) > s.iou;
    });
    if (!overlaps) kept.push_back(d);
  }
  return kept;
}

// Each class of the row `r` (of an anchor) scoring above min_score.
void add_every_class(const double* r, int64_t width, int64_t anchor, double min_score,
                     std::vector<Detection>& candidates) {
  for (int64_t c = 5; c < width; ++c) {
    const double score = r[4] * r[c];
    if (!(score > min_score)) continue;
    candidates.push_back(Detection{r[0] - r[2] / 2, r[1] - r[3] / 2, r[0] + r[2] / 2,
                                   r[1] + r[3] / 2, score, c - 5, anchor});
  }
}

}  // namespace

DetectSettings detect_defaults(const ModelInfo& info) {
  DetectSettings s;
  if (info.nms_iou > 0) s.iou = info.nms_iou;
  s.multi_label = info.multi_label;
  return s;
}

double box_iou(const Detection& a, const Detection& b) {
  const double w = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  const double h = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  const double inter = w > 0 && h > 0 ? w * h : 0.0;
  const double area_a = std::max(0.0, a.x2 - a.x1) * std::max(0.0, a.y2 - a.y1);
  const double area_b = std::max(0.0, b.x2 - b.x1) * std::max(0.0, b.y2 - b.y1);
  const double united = area_a + area_b - inter;
  return united > 0 ? inter / united : 0.0;
}

at::Tensor prediction_rows(const at::Tensor& raw, DetectLayout layout, int64_t classes,
                           const std::string& path) {
  check_fits(raw, layout, classes, path);
  if (layout == DetectLayout::kYolov5) return raw;
  const at::Tensor rows = raw.transpose(1, 2);  // [N, A, 4+C]
  return at::cat({rows.narrow(2, 0, 4), at::ones_like(rows.narrow(2, 0, 1)),
                  rows.narrow(2, 4, rows.size(2) - 4)},
                 2);
}

std::vector<std::vector<Detection>> decode_rows(const at::Tensor& rows_in,
                                                const DetectSettings& settings) {
  const at::Tensor rows = rows_in.detach().to(at::kCPU, at::kDouble).contiguous();
  const int64_t anchors = rows.size(1), width = rows.size(2);
  std::vector<std::vector<Detection>> result;
  for (int64_t n = 0; n < rows.size(0); ++n) {
    const double* p = rows[n].data_ptr<double>();
    std::vector<Detection> candidates;
    for (int64_t a = 0; a < anchors; ++a) {
      const double* r = p + a * width;
      if (settings.multi_label) {
        add_every_class(r, width, a, settings.min_score, candidates);
        if (static_cast<int64_t>(candidates.size()) >= 2 * kMaxNmsCandidates) keep_best(candidates);
        continue;
      }
      const double* best = std::max_element(r + 5, r + width);  // the first of equal scores
      const double score = r[4] * *best;
      if (!(score > settings.min_score)) continue;
      candidates.push_back(Detection{r[0] - r[2] / 2, r[1] - r[3] / 2, r[0] + r[2] / 2,
                                     r[1] + r[3] / 2, score, best - (r + 5), a});
    }
    result.push_back(suppress(std::move(candidates), settings));
  }
  return result;
}

std::vector<std::vector<Detection>> decode_detections(const at::Tensor& raw, DetectLayout layout,
                                                      int64_t classes,
                                                      const DetectSettings& settings,
                                                      const std::string& path) {
  return decode_rows(prediction_rows(raw, layout, classes, path), settings);
}

std::vector<size_t> matching_detections(const std::vector<Detection>& found,
                                        const BoxQuery& query, double match_iou) {
  const Detection box{query.x1, query.y1, query.x2, query.y2};
  auto clip = [](double v, double lo, double hi) { return std::min(std::max(v, lo), hi); };
  std::vector<size_t> match;
  for (size_t k = 0; k < found.size(); ++k) {
    if (query.label >= 0 && found[k].label != query.label) continue;
    Detection d = found[k];
    d.x1 = clip(d.x1, query.area_x1, query.area_x2);
    d.x2 = clip(d.x2, query.area_x1, query.area_x2);
    d.y1 = clip(d.y1, query.area_y1, query.area_y2);
    d.y2 = clip(d.y2, query.area_y1, query.area_y2);
    if (box_iou(d, box) >= match_iou) match.push_back(k);
  }
  return match;
}

DetectionGroups detection_groups(const std::vector<std::vector<Detection>>& detections,
                                 const DetectSettings& settings) {
  DetectionGroups groups(detections.size());
  for (size_t n = 0; n < detections.size(); ++n) {
    const bool queried = n < settings.queries.size() && !settings.queries[n].empty();
    if (!queried) {
      for (size_t k = 0; k < detections[n].size(); ++k) groups[n].push_back({k});
      continue;
    }
    for (const BoxQuery& q : settings.queries[n]) {
      groups[n].push_back(matching_detections(detections[n], q, settings.match_iou));
    }
  }
  return groups;
}

at::Tensor detection_score(const at::Tensor& rows, int64_t n, const Detection& d) {
  const at::Tensor row = rows[n][d.anchor];
  return row[4] * row[5 + d.label];
}

at::Tensor detection_scores(const at::Tensor& rows,
                            const std::vector<std::vector<Detection>>& detections,
                            const DetectionGroups& groups, double fill) {
  size_t most = 1;
  for (const auto& g : groups) most = std::max(most, g.size());
  std::vector<at::Tensor> per_image;
  for (int64_t n = 0; n < rows.size(0); ++n) {
    const auto& found = detections.at(static_cast<size_t>(n));
    const auto& targets = groups.at(static_cast<size_t>(n));
    // Connected to the rows' graph, with a zero gradient: a batch whose
    // targets all lack detections still has a score to differentiate.
    const at::Tensor none = rows.requires_grad() ? rows[n][0][0] * 0.0 + fill
                                                 : at::full({}, fill, rows.options());
    std::vector<at::Tensor> scores;
    for (const std::vector<size_t>& group : targets) {
      at::Tensor s = none;
      for (size_t i = 0; i < group.size(); ++i) {
        const at::Tensor one = detection_score(rows, n, found.at(group[i]));
        s = i == 0 ? one : s + one;
      }
      scores.push_back(s);
    }
    at::Tensor s = scores.empty() ? at::empty({0}, rows.options()) : at::stack(scores);
    if (targets.size() < most) {
      s = at::cat({s, none.expand({static_cast<int64_t>(most - targets.size())})});
    }
    per_image.push_back(s);
  }
  return at::stack(per_image);
}

}  // namespace cnnviz
