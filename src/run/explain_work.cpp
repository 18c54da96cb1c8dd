#include "explain_work.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include "arrays.h"
#include "cnnviz/core/predict.h"
#include "cnnviz/run/detect.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {

namespace {

constexpr int kManifestPredictions = 5;

json predictions_json(const std::vector<Prediction>& top, const ModelInfo& info) {
  json out = json::array();
  for (size_t k = 0; k < top.size(); ++k) {
    out.push_back({{"rank", k + 1},
                   {"index", top[k].index},
                   {"label", info.label(top[k].index)},
                   {"probability", top[k].probability}});
  }
  return out;
}

json unit_target_json(const Unit& unit, const json& score, double value) {
  return {{"class", nullptr},
          {"label", "unit " + unit.spec()},
          {"rank", nullptr},
          {"source", "unit"},
          {"spec", unit.spec()},
          {"unit",
           {{"layer", unit.layer},
            {"channel", unit.channel},
            {"y", unit.neuron() ? json(unit.y) : json(nullptr)},
            {"x", unit.neuron() ? json(unit.x) : json(nullptr)}}},
          {"score", score},
          {"value", value}};
}

json class_target_json(const BatchFacts& f, size_t n, size_t rank, int64_t cls,
                       const ImageTargets& given, const json& score) {
  const bool chosen = given.source == "top";
  const auto i = static_cast<int64_t>(n);
  json target = {{"class", cls},
          {"label", f.info.label(cls)},
          {"rank", chosen ? json(rank + 1) : json(nullptr)},
          {"source", given.source},
          {"spec", chosen ? json(nullptr) : json(given.specs.at(rank))},
          {"score", score}};
  if (f.info.task == Task::kSegment) {
    // A segmenter's "logits" are the log of each class's area (targets.h).
    target["area"] = f.probabilities[i][cls].item<double>();
  } else {
    target["logit"] = f.maps.logits[i][cls].item<double>();
    target["probability"] = f.probabilities[i][cls].item<double>();
  }
  return target;
}

// Detection `k` of image n as a target: its class, its box in the source's
// pixels, and its score as the model gave it.
json detection_target_json(const BatchFacts& f, size_t n, int64_t k, const CropBox& box,
                           const json& score) {
  const Detection d = to_source(f.maps.detections.at(n).at(static_cast<size_t>(k)), box);
  return {{"class", d.label},
          {"label", f.info.label(d.label)},
          {"rank", k + 1},
          {"source", "detection"},
          {"spec", nullptr},
          {"score", score},
          {"detection", k},
          {"box", {d.x1, d.y1, d.x2, d.y2}},
          {"detection_score", d.score}};
}

// Box query `k` of image n as a target (--box x1,y1,x2,y2): the detections
// it matched, their summed score, and its label (the query's, else its best
// match's).
json query_target_json(const BatchFacts& f, size_t n, int64_t k, const BoxSpec& spec,
                       const json& score, MapTarget& target) {
  const std::vector<size_t>& group = f.maps.groups.at(n).at(static_cast<size_t>(k));
  const std::vector<Detection>& found = f.maps.detections.at(n);
  const BoxQuery& q = *spec.box;
  const int64_t label = q.label >= 0 ? q.label : found.at(group.at(0)).label;
  double sum = 0;
  for (size_t d : group) sum += found.at(d).score;
  target = MapTarget{label, std::nullopt, -1, k, {q.x1, q.y1, q.x2, q.y2}, {}};
  return {{"class", label},
          {"label", f.info.label(label)},
          {"rank", nullptr},
          {"source", spec.where == "--box" ? "box" : "targets"},
          {"spec", spec.text},
          {"score", score},
          {"query", k},
          {"box", {q.x1, q.y1, q.x2, q.y2}},
          {"detections", group},
          {"detection_score", sum}};
}

// The pixels labelled `cls` of one image's labels [h,w]: CV_8UC1, 255 there.
cv::Mat class_pixels(const at::Tensor& labels, int64_t cls) {
  const at::Tensor mask = (labels == cls).to(at::kByte).mul(255).contiguous();
  return cv::Mat(static_cast<int>(mask.size(0)), static_cast<int>(mask.size(1)), CV_8UC1,
                 mask.data_ptr<uint8_t>())
      .clone();
}

// Image n's maps of every rank it has a target at, and those targets.
json take_maps_and_targets(const BatchFacts& f, size_t n, size_t position, ImageWork& w) {
  json targets = json::array();
  const auto i = static_cast<int64_t>(n);
  for (size_t r = 0; r < f.maps.classes.size(); ++r) {
    const int64_t cls = f.maps.classes[r][n];
    if (cls == kNoTarget) continue;  // another image of the batch has more targets
    const json score =
        f.method.scores.empty() ? json(nullptr) : json(f.rank_scores[r][i].item<double>());
    w.raw.emplace_back();
    for (const MethodMap& m : f.maps.maps[r]) w.raw.back().push_back(to_float_array(m.value[i]));
    if (f.unit) {
      w.targets.push_back(MapTarget{0, f.unit, -1, -1, {}, {}});
      targets.push_back(unit_target_json(*f.unit, score, f.maps.explained[i][0].item<double>()));
    } else if (!f.maps.detections.empty() && !f.plan.of(position).boxes.empty() &&
               f.plan.of(position).boxes.front().box) {
      const BoxSpec& spec = f.plan.of(position).boxes.at(static_cast<size_t>(cls));
      w.targets.emplace_back();
      targets.push_back(query_target_json(f, n, cls, spec, score, w.targets.back()));
    } else if (!f.maps.detections.empty()) {
      const Detection d = to_source(f.maps.detections.at(n).at(static_cast<size_t>(cls)), w.box);
      w.targets.push_back(MapTarget{d.label, std::nullopt, cls, -1, {d.x1, d.y1, d.x2, d.y2}, {}});
      targets.push_back(detection_target_json(f, n, cls, w.box, score));
    } else {
      w.targets.push_back(MapTarget{cls, std::nullopt, -1, -1, {}, {}});
      if (f.maps.labels.defined()) w.targets.back().pixels = class_pixels(f.maps.labels[i], cls);
      targets.push_back(class_target_json(f, n, r, cls, f.plan.of(position), score));
    }
  }
  return targets;
}

}  // namespace

const SourceView& ImageWork::view() {
  std::call_once(view_once_, [this] {
    if (full_view) {
      view_ = make_source_view(source_rgb, box);
    } else {
      view_.box = box;
    }
  });
  return view_;
}

size_t ImageWork::jobs() const {
  size_t n = 0;
  for (const auto& maps : raw) n += maps.size();
  return n;
}

BatchFacts batch_facts(const ModelInfo& info, const TargetPlan& plan, const MethodDef& method,
                       const std::optional<Unit>& unit, const BatchMaps& maps, const Score& score) {
  BatchFacts f{info, plan, method, unit, maps, {}, {}, {}};
  for (const std::vector<int64_t>& cls : maps.classes) {
    f.rank_scores.push_back(target_scores(maps.explained, cls, score));
  }
  if (!maps.detections.empty()) {  // a detector's predictions: its detections, best first
    for (const std::vector<Detection>& found : maps.detections) {
      f.top.emplace_back();
      for (size_t k = 0; k < found.size() && k < static_cast<size_t>(kManifestPredictions); ++k) {
        f.top.back().push_back(Prediction{found[k].label, found[k].score});
      }
    }
    return f;
  }
  const int64_t classes = maps.logits.size(1);
  f.top = top_k(maps.logits, static_cast<int>(std::min<int64_t>(classes, kManifestPredictions)));
  f.probabilities = at::softmax(maps.logits, 1);
  return f;
}

std::shared_ptr<ImageWork> make_image_work(const BatchFacts& facts, size_t n, LoadedImage& img,
                                           const ImageDir& dir, bool full_view) {
  auto w = std::make_shared<ImageWork>();
  w->position = img.index;
  w->dir = dir;
  w->source_rgb = std::move(img.rgb);
  w->box = img.box;
  w->full_view = full_view;
  json targets = take_maps_and_targets(facts, n, img.index, *w);
  if (!facts.maps.maps.empty()) {
    for (const MethodMap& m : facts.maps.maps[0]) w->layers.push_back(m.layer);
  }
  set_image_name(w->entry, img.path);
  w->entry.update(json{{"index", img.index},
                       {"dir", dir.subdir},
                       {"input", input_json(facts.info.preprocess.channels, img.grey)},
                       {"predictions", predictions_json(facts.top[n], facts.info)},
                       {"targets", std::move(targets)}});
  w->written.resize(w->raw.size());
  for (size_t r = 0; r < w->raw.size(); ++r) w->written[r].resize(w->raw[r].size());
  w->remaining = w->jobs();
  return w;
}

void ExplainWriters::write_one(const std::shared_ptr<ImageWork>& w, size_t r, size_t m) {
  if (write_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(write_delay_ms));
  FloatArray raw = std::move(w->raw[r][m]);
  w->written[r][m] =
      write_map(w->dir, method, w->layers[m], w->targets[r], raw, w->view(), selection, style);
  if (--w->remaining == 0) finish(*w);
}

void ExplainWriters::finish(ImageWork& w) {
  json files_json = json::array();
  std::vector<std::string> warnings;
  for (size_t r = 0; r < w.written.size(); ++r) {
    std::vector<std::pair<std::string, cv::Mat>> tiles;
    for (size_t m = 0; m < w.written[r].size(); ++m) {
      MapFiles& f = w.written[r][m];
      for (json& e : f.files) files_json.push_back(std::move(e));
      warnings.insert(warnings.end(), f.warnings.begin(), f.warnings.end());
      if (!f.tile.empty()) tiles.emplace_back(w.layers[m], f.tile);
    }
    if (selection.any("contact")) {
      const json& targets = w.entry["targets"];
      const std::string title =
          r < targets.size() ? contact_title(w.entry, targets[r], method) : std::string();
      json sheet = write_contact_sheet(w.dir, method, w.targets[r], tiles, title);
      if (!sheet.is_null()) files_json.push_back(std::move(sheet));
    }
  }
  size_t bytes_here = 0;
  for (const json& f : files_json) {
    std::error_code ec;
    const auto size = fs::file_size(w.dir.outdir + "/" + f["path"].get<std::string>(), ec);
    if (!ec) bytes_here += static_cast<size_t>(size);
  }
  json e = std::move(w.entry);
  e["files"] = std::move(files_json);
  e["warnings"] = warnings;
  for (const std::string& warning : warnings) {
    progress.note("warning: " + e["image"].get<std::string>() + ": " + warning);
  }
  journal.append(e, run_key);
  {
    std::lock_guard<std::mutex> lock(mutex);
    bytes += bytes_here;
    files += e["files"].size();
    entries[w.position] = std::move(e);
  }
  progress.done();
}

void ExplainWriters::fail(size_t position, const std::string& image, const std::string& message) {
  json e;
  set_image_name(e, image);
  e["index"] = position;
  e["error"] = message;
  journal.append(e, run_key);
  {
    std::lock_guard<std::mutex> lock(mutex);
    entries[position] = std::move(e);
  }
  progress.failed(message);
}

}  // namespace cnnviz
