#include "cnnviz/core/targets.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <limits>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/predict.h"

namespace cnnviz {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

Error out_of_range(const std::string& subject, const std::string& text, int64_t classes) {
  return Error(ErrorCode::kUsage, subject + " " + text + ": out of range (the model has " +
                                      std::to_string(classes) + " classes, 0 to " +
                                      std::to_string(classes - 1) + ")");
}

void check_class(int64_t k, int64_t classes) {
  if (k != kNoTarget && (k < 0 || k >= classes)) {
    throw out_of_range("class", std::to_string(k), classes);
  }
}

// A class the choosers may pick by rank: one whose logit is not -inf.
bool choosable(const at::Tensor& logits, int64_t image, int64_t cls) {
  const double v = logits[image][cls].item<double>();
  return !(std::isinf(v) && v < 0);
}

}  // namespace

std::string Unit::spec() const {
  std::string s = layer + ":" + std::to_string(channel);
  if (neuron()) s += ":" + std::to_string(y) + ":" + std::to_string(x);
  return s;
}

std::string Unit::tag() const {
  std::string s = "u-" + layer + "-" + std::to_string(channel);
  if (neuron()) s += "-" + std::to_string(y) + "-" + std::to_string(x);
  return s;
}

Unit parse_unit(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::kUsage, "--unit '" + text + "': " + why +
                                        " (expected LAYER:CHANNEL or LAYER:CHANNEL:Y:X, e.g. "
                                        "features.12:5)");
  };
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t colon; (colon = text.find(':', start)) != std::string::npos; start = colon + 1) {
    parts.push_back(text.substr(start, colon - start));
  }
  parts.push_back(text.substr(start));
  if (parts.size() != 2 && parts.size() != 4) throw bad("wrong number of fields");
  if (parts[0].empty()) throw bad("no layer");
  std::vector<int64_t> numbers;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    if (p.empty() || p.size() > 9 ||
        !std::all_of(p.begin(), p.end(), [](unsigned char c) { return std::isdigit(c); })) {
      throw bad("'" + p + "' is not a non-negative integer");
    }
    numbers.push_back(std::stoll(p));
  }
  Unit u;
  u.layer = parts[0];
  u.channel = numbers[0];
  if (numbers.size() == 3) {
    u.y = numbers[1];
    u.x = numbers[2];
  }
  return u;
}

void check_unit_range(const Unit& u, int64_t channels, int64_t height, int64_t width) {
  auto out_of_range = [&](const std::string& what) {
    return Error(ErrorCode::kUsage, "--unit '" + u.spec() + "': " + what +
                                        " out of range (layer '" + u.layer + "' is read as " +
                                        std::to_string(channels) + " channels of " +
                                        std::to_string(height) + "x" + std::to_string(width) + ")");
  };
  if (u.channel >= channels) throw out_of_range("channel " + std::to_string(u.channel));
  if (u.neuron() && (u.y >= height || u.x >= width)) {
    throw out_of_range("position (" + std::to_string(u.y) + ", " + std::to_string(u.x) + ")");
  }
}

const std::vector<std::string>& score_names() {
  static const std::vector<std::string> names{"logit", "probability", "log-probability", "sigmoid"};
  return names;
}

const std::string& score_name(ScoreKind kind) {
  return score_names().at(static_cast<size_t>(kind));
}

ScoreKind parse_score(const std::string& name) {
  const std::vector<std::string>& names = score_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return static_cast<ScoreKind>(i);
  }
  throw Error(ErrorCode::kUsage,
              "--score '" + name + "': unknown (logit, probability, log-probability or sigmoid)");
}

at::Tensor target_scores(const at::Tensor& logits, const std::vector<int64_t>& classes,
                         const Score& score) {
  const int64_t n = logits.size(0), c = logits.size(1);
  if (static_cast<int64_t>(classes.size()) != n) {
    throw Error(ErrorCode::kRuntime, "targets: one class per image expected");
  }
  if (c == 1 &&
      (score.kind == ScoreKind::kProbability || score.kind == ScoreKind::kLogProbability)) {
    throw Error(ErrorCode::kUsage, "--score " + score_name(score.kind) +
                                       ": the model has one output, whose softmax is always 1 "
                                       "(use --score logit or sigmoid)");
  }
  std::vector<int64_t> index(classes.size());
  std::vector<float> present(classes.size());
  for (size_t i = 0; i < classes.size(); ++i) {
    check_class(classes[i], c);
    index[i] = classes[i] == kNoTarget ? 0 : classes[i];
    present[i] = classes[i] == kNoTarget ? 0.0f : 1.0f;
  }
  const at::Tensor idx = at::tensor(index, at::kLong).view({-1, 1}).to(logits.device());
  at::Tensor s;
  switch (score.kind) {
    case ScoreKind::kLogit:
      s = logits.gather(1, idx);
      break;
    case ScoreKind::kProbability:
      s = at::softmax(logits, 1).gather(1, idx);
      break;
    case ScoreKind::kLogProbability:
      s = at::log_softmax(logits, 1).gather(1, idx);
      break;
    case ScoreKind::kSigmoid:
      s = at::sigmoid(logits.gather(1, idx));
      break;
  }
  s = s.squeeze(1);
  if (score.counterfactual) s = -s;
  if (std::find(classes.begin(), classes.end(), kNoTarget) != classes.end()) {
    s = s * at::tensor(present, s.options());
  }
  return s;
}

TargetChooser fixed_classes(std::vector<int64_t> classes) {
  return [classes = std::move(classes)](const at::Tensor& logits) {
    const int64_t c = logits.size(1);
    std::vector<std::vector<int64_t>> ranks;
    for (int64_t k : classes) {
      if (k < 0 || k >= c) throw out_of_range("--class", std::to_string(k), c);
      ranks.emplace_back(logits.size(0), k);
    }
    return ranks;
  };
}

TargetChooser top_classes(int n) {
  return [n](const at::Tensor& logits) {
    const int k = static_cast<int>(std::min<int64_t>(std::max(1, n), logits.size(1)));
    // The order of the predictions manifests list (ties: the lower index).
    const std::vector<std::vector<Prediction>> top = top_k(logits, k);
    std::vector<std::vector<int64_t>> ranks(static_cast<size_t>(k));
    for (int r = 0; r < k; ++r) {
      for (size_t i = 0; i < top.size(); ++i) {
        const int64_t cls = top[i][static_cast<size_t>(r)].index;
        ranks[r].push_back(choosable(logits, static_cast<int64_t>(i), cls) ? cls : kNoTarget);
      }
    }
    return ranks;
  };
}

TargetChooser given_classes(std::vector<int64_t> per_image) {
  return [per_image = std::move(per_image)](const at::Tensor& logits) {
    if (static_cast<int64_t>(per_image.size()) != logits.size(0)) {
      throw Error(ErrorCode::kRuntime, "targets: one class per image expected");
    }
    for (int64_t k : per_image) {
      if (k < 0 || k >= logits.size(1)) {
        throw out_of_range("--class", std::to_string(k), logits.size(1));
      }
    }
    return std::vector<std::vector<int64_t>>{per_image};
  };
}

TargetChooser per_image_classes(std::vector<std::optional<std::vector<int64_t>>> per_image,
                                int top) {
  return [per_image = std::move(per_image), top](const at::Tensor& logits) {
    const int64_t n = logits.size(0), c = logits.size(1);
    if (static_cast<int64_t>(per_image.size()) != n) {
      throw Error(ErrorCode::kRuntime, "targets: one list of classes per image expected");
    }
    const int k = static_cast<int>(std::min<int64_t>(std::max(1, top), c));
    const std::vector<std::vector<Prediction>> best = top_k(logits, k);
    std::vector<std::vector<int64_t>> lists;
    size_t ranks = 0;
    for (int64_t i = 0; i < n; ++i) {
      std::vector<int64_t> list;
      if (per_image[i]) {
        list = *per_image[i];
        for (int64_t cls : list) {
          if (cls < 0 || cls >= c) throw out_of_range("class", std::to_string(cls), c);
        }
      } else {
        for (const Prediction& p : best[i]) {
          if (choosable(logits, i, p.index)) list.push_back(p.index);
        }
      }
      ranks = std::max(ranks, list.size());
      lists.push_back(std::move(list));
    }
    std::vector<std::vector<int64_t>> out(ranks, std::vector<int64_t>(n, kNoTarget));
    for (int64_t i = 0; i < n; ++i) {
      for (size_t r = 0; r < lists[i].size(); ++r) out[r][i] = lists[i][r];
    }
    return out;
  };
}

at::Tensor pixel_labels(const at::Tensor& pixel_logits, const at::Tensor& region) {
  at::Tensor labels = pixel_logits.detach().argmax(1);  // [N,h,w]
  if (!region.defined()) return labels;
  const int64_t h = labels.size(1), w = labels.size(2);
  at::Tensor inside = region.to(labels.device(), at::kFloat).view({1, 1, region.size(0), region.size(1)});
  if (region.size(0) != h || region.size(1) != w) inside = at::upsample_nearest2d(inside, {h, w});
  return labels.masked_fill(inside.view({1, h, w}) < 0.5, -1);
}

at::Tensor class_scores(const at::Tensor& pixel_logits, const at::Tensor& labels) {
  const int64_t n = pixel_logits.size(0), k = pixel_logits.size(1);
  const at::Tensor index = labels.clamp_min(0).unsqueeze(1);            // [N,1,h,w]
  const at::Tensor counted = (labels >= 0).unsqueeze(1).to(pixel_logits.scalar_type());
  const at::Tensor own = pixel_logits.gather(1, index) * counted;       // each pixel's own logit
  return at::zeros({n, k}, pixel_logits.options())
      .scatter_add(1, index.flatten(1), own.flatten(1));
}

at::Tensor log_area_shares(const at::Tensor& labels, int64_t classes) {
  const at::Tensor flat = labels.detach().to(at::kCPU).flatten(1);
  const at::Tensor counted = (flat >= 0).to(at::kFloat);
  at::Tensor areas = at::zeros({flat.size(0), classes}).scatter_add(1, flat.clamp_min(0), counted);
  const at::Tensor total = counted.sum(1, /*keepdim=*/true).clamp_min(1.0);
  return (areas / total).log();
}

TargetChooser excluding_class(TargetChooser inner, int64_t excluded) {
  return [inner = std::move(inner), excluded](const at::Tensor& logits) {
    if (excluded < 0 || excluded >= logits.size(1)) return inner(logits);
    at::Tensor without = logits.clone();
    without.select(1, excluded).fill_(-std::numeric_limits<float>::infinity());
    return inner(without);
  };
}

int64_t parse_class(const std::string& text, const ModelInfo& info, int64_t classes,
                    const std::string& subject) {
  if (text.empty()) {
    throw Error(ErrorCode::kUsage, subject + " '': empty (give a class index or a label)");
  }
  if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
    const size_t first = std::min(text.find_first_not_of('0'), text.size() - 1);
    const std::string digits = text.substr(first);
    // More than 18 digits cannot be a class of any model (nor fit int64).
    if (digits.size() > 18) throw out_of_range(subject, text, classes);
    const int64_t k = std::stoll(digits);
    if (k >= classes) throw out_of_range(subject, text, classes);
    return k;
  }
  for (size_t i = 0; i < info.labels.size(); ++i) {
    if (lower(info.labels[i]) == lower(text)) return static_cast<int64_t>(i);
  }
  std::vector<std::string> labels;
  for (const std::string& s : info.labels) labels.push_back(lower(s));
  std::string hint;
  for (const std::string& m : near_matches(lower(text), labels, 3)) {
    hint += (hint.empty() ? "" : ", ") + m;
  }
  throw Error(ErrorCode::kUsage, subject + " '" + text + "': no such class" +
                                     (hint.empty() ? "" : " (nearest labels: " + hint + ")"));
}

int64_t known_classes(const ModelInfo& info) {
  if (info.num_classes > 0) return info.num_classes;
  if (!info.labels.empty()) return static_cast<int64_t>(info.labels.size());
  return INT64_MAX;
}

}  // namespace cnnviz
