#include "cnnviz/targets.h"

#include <algorithm>
#include <cctype>

#include "cnnviz/engine.h"
#include "cnnviz/error.h"
#include "cnnviz/predict.h"

namespace cnnviz {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

Error out_of_range(const std::string& text, int64_t classes) {
  return Error(ErrorCode::kUsage, "--class " + text + ": out of range (the model has " +
                                      std::to_string(classes) + " classes, 0 to " +
                                      std::to_string(classes - 1) + ")");
}

}  // namespace

TargetChooser fixed_class(int64_t k) {
  return [k](const at::Tensor& logits) {
    const int64_t classes = logits.size(1);
    if (k < 0 || k >= classes) throw out_of_range(std::to_string(k), classes);
    return std::vector<std::vector<int64_t>>{std::vector<int64_t>(logits.size(0), k)};
  };
}

TargetChooser top_classes(int n) {
  return [n](const at::Tensor& logits) {
    const int k = static_cast<int>(std::min<int64_t>(std::max(1, n), logits.size(1)));
    // The order of the predictions manifests list (ties: the lower index).
    const std::vector<std::vector<Prediction>> top = top_k(logits, k);
    std::vector<std::vector<int64_t>> ranks(static_cast<size_t>(k));
    for (int r = 0; r < k; ++r) {
      for (const std::vector<Prediction>& image : top) ranks[r].push_back(image[r].index);
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
      if (k < 0 || k >= logits.size(1)) throw out_of_range(std::to_string(k), logits.size(1));
    }
    return std::vector<std::vector<int64_t>>{per_image};
  };
}

int64_t parse_class(const std::string& text, const ModelInfo& info, int64_t classes) {
  if (text.empty()) {
    throw Error(ErrorCode::kUsage, "--class '': empty (give a class index or a label)");
  }
  if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
    const size_t first = std::min(text.find_first_not_of('0'), text.size() - 1);
    const std::string digits = text.substr(first);
    // More than 18 digits cannot be a class of any model (nor fit int64).
    if (digits.size() > 18) throw out_of_range(text, classes);
    const int64_t k = std::stoll(digits);
    if (k >= classes) throw out_of_range(text, classes);
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
  throw Error(ErrorCode::kUsage, "--class '" + text + "': no such class" +
                                     (hint.empty() ? "" : " (nearest labels: " + hint + ")"));
}

}  // namespace cnnviz
