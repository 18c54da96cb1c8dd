#include "cnnviz/run/synthesis_run.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <set>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/feature_map.h"
#include "cnnviz/core/formats.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/predict.h"
#include "cnnviz/core/stopwatch.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/io/files.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/png.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/io/render.h"
#include "cnnviz/methods/layers.h"
#include "cnnviz/run/manifest.h"
#include "loader.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {

namespace {

constexpr int kSheetColumns = 8;
constexpr int kPatchTile = 96;  // top-activations: patch tiles, pixels
constexpr int kBoxTile = 128;   // top-activations: full-crop tiles with the box
constexpr size_t kMaxStateBytes = 64u << 20;
constexpr int64_t kMaxSynthesisChannels = 100000;  // --channels
constexpr int kMaxTopK = 1000;                     // --k

// Contact-sheet tiles: caption and 8-bit RGB pixels.
using Tiles = std::vector<std::pair<std::string, cv::Mat>>;

const LayerInfo* find_layer(const Engine::Description& d, const std::string& path) {
  for (const LayerInfo& l : d.layers) {
    if (l.path == path) return &l;
  }
  return nullptr;
}

// The layer's map [C,h,w] for one crop-sized input, checked: it exists, runs
// once and (when `spatial`) reads as a map with more than one position.
FeatureLayout layer_layout(const Model& model, const Engine::Description& d,
                           const std::string& layer, const std::string& command) {
  const LayerInfo* l = find_layer(d, layer);
  if (!l) {
    std::vector<std::string> paths;
    for (const LayerInfo& x : d.layers) paths.push_back(x.path);
    std::string hint;
    for (const std::string& m : near_matches(layer, paths)) hint += (hint.empty() ? "" : ", ") + m;
    throw Error(ErrorCode::kUnsupported, "--layer '" + layer + "': not found in model '" +
                                             model.info().name + "' (nearest: " + hint +
                                             "; `cnnviz layers -m " + model.info().name +
                                             "` lists them all)");
  }
  if (l->calls != 1) {
    throw Error(ErrorCode::kUnsupported, "--layer '" + layer + "': runs " +
                                             std::to_string(l->calls) +
                                             " times in one forward pass (pick a layer that "
                                             "runs once)");
  }
  std::optional<FeatureLayout> f = infer_layout(l->shape);
  if (!f) {
    std::string shape;
    for (int64_t s : l->shape) shape += (shape.empty() ? "" : ", ") + std::to_string(s);
    throw Error(ErrorCode::kUnsupported, "--layer '" + layer + "': output [" + shape +
                                             "] is not a spatial map (" + command +
                                             " needs one; `cnnviz layers -m " + model.info().name +
                                             "` shows which layers are)");
  }
  return *f;
}

// [3,H,W] in [0,1] as an 8-bit RGB image.
cv::Mat to_rgb8(const at::Tensor& image) {
  const at::Tensor t = (image.detach().to(at::kCPU, at::kFloat) * 255.0)
                           .round()
                           .clamp(0, 255)
                           .to(at::kByte)
                           .permute({1, 2, 0})
                           .contiguous();
  return cv::Mat(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), CV_8UC3,
                 t.data_ptr<uint8_t>())
      .clone();
}

at::Tensor from_rgb8(const cv::Mat& rgb) {
  return at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, at::kByte)
      .permute({2, 0, 1})
      .to(at::kFloat)
      .div(255.0)
      .contiguous();
}

// Writes `image` ([3,H,W] in [0,1]) as OUTDIR/rel; returns its pixels, for
// a contact sheet.
cv::Mat write_rgb(const std::string& outdir, const std::string& rel, const at::Tensor& image) {
  const cv::Mat rgb = to_rgb8(image);
  write_png(outdir + "/" + rel, rgb, PixelOrder::kRgb);
  return rgb;
}

json file_json(const std::string& path, const std::string& method, const std::string& layer,
               std::optional<int64_t> cls, const std::string& variant) {
  return {{"path", path},
          {"method", method},
          {"layer", layer.empty() ? json(nullptr) : json(layer)},
          {"class", cls ? json(*cls) : json(nullptr)},
          {"variant", variant},
          {"format", "png"}};
}

json head(const Model& model, const std::string& command, json options) {
  json doc;
  doc["format"] = format_name(Format::kSynthesis);
  doc["format_version"] = format_version(Format::kSynthesis);
  doc["command"] = command;
  doc["method"] = command;
  doc["model"] = model_json(model.info());
  doc["options"] = std::move(options);
  doc["images"] = json::array();
  return doc;
}

json synthesis_options_json(const SynthesisOptions& s) {
  return {{"param", param_kind_name(s.param.kind)},
          {"decorrelate", s.param.decorrelate},
          {"size", s.param.size},
          {"transforms", transforms_text(s.transforms)},
          {"steps", s.steps},
          {"lr", s.lr},
          {"seed", s.seed},
          {"l2", s.priors.l2},
          {"tv", s.priors.tv},
          {"blur", s.priors.blur}};
}

void write_manifest(const std::string& outdir, const json& doc) {
  const std::string text = dump_json(doc, 2) + "\n";
  write_file_atomic(outdir + "/manifest.json", text.data(), text.size());
}

json history_json(const SynthesisResult& r, size_t row) {
  json h = json::array();
  for (size_t i = 0; i < r.log_steps.size(); ++i) h.push_back({r.log_steps[i], r.history[i][row]});
  return h;
}

// The model's top classes for a class-model image, as the manifest lists them.
json predictions_json(const std::vector<Prediction>& top, const ModelInfo& info) {
  json predictions = json::array();
  for (size_t k = 0; k < top.size(); ++k) {
    predictions.push_back({{"rank", k + 1},
                           {"index", top[k].index},
                           {"label", info.label(top[k].index)},
                           {"probability", top[k].probability}});
  }
  return predictions;
}

std::string file_safe(const std::string& s) {
  std::string out;
  for (char c : s)
    out += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ? c : '_';
  return out;
}

void write_sheet(const std::string& outdir, const std::string& rel, const Tiles& tiles,
                 int columns) {
  if (tiles.empty()) return;
  write_png(outdir + "/" + rel, contact_sheet(tiles, columns), PixelOrder::kRgb);
}

std::function<bool(int)> keep_going() {
  return [](int) { return !interrupted(); };
}

template <typename T>
std::vector<T> slice(const std::vector<T>& v, size_t begin, size_t end) {
  return std::vector<T>(v.begin() + static_cast<std::ptrdiff_t>(begin),
                        v.begin() + static_cast<std::ptrdiff_t>(end));
}

// [begin, end) ranges of `batch` items (at least one) that cover `count`.
std::vector<std::pair<size_t, size_t>> batch_ranges(size_t count, int batch) {
  const size_t step = static_cast<size_t>(std::max(1, batch));
  std::vector<std::pair<size_t, size_t>> ranges;
  for (size_t begin = 0; begin < count; begin += step) {
    ranges.emplace_back(begin, std::min(count, begin + step));
  }
  return ranges;
}

// Optimization time summed over a run's batches: the manifest's "timings".
struct OptimizeTimes {
  double optimize_ms = 0;
  double steady_ms = 0;  // the steps after each batch's first

  void add(const SynthesisResult& r) {
    optimize_ms += r.ms;
    steady_ms += r.steady_ms;
  }
  json to_json() const {
    return {{"optimize_ms", optimize_ms}, {"steps_after_first_ms", steady_ms}};
  }
};

// The start of an optimized unit's (or a channel's) manifest entry.
json unit_entry(const std::string& image, size_t index, const std::string& dir) {
  json e;
  e["image"] = image;
  e["index"] = index;
  e["dir"] = dir;
  return e;
}

// Optimizes `units` in batches of options.batch (seeds: the seed plus the
// batch's first index), calling on_batch(begin, end, result, seed) after
// each; stops at an interruption. Fills the manifest's timings and
// "interrupted".
void optimize_in_batches(
    const Engine& engine, Objective& objective, const std::vector<int64_t>& units,
    const SynthesisRunOptions& o, json& doc,
    const std::function<void(size_t, size_t, const SynthesisResult&, uint64_t)>& on_batch) {
  const std::vector<std::pair<size_t, size_t>> ranges = batch_ranges(units.size(), o.batch);
  bool stopped = false;
  OptimizeTimes times;
  for (size_t b = 0; b < ranges.size() && !stopped; ++b) {
    const auto [begin, end] = ranges[b];
    objective.units = slice(units, begin, end);
    SynthesisOptions s = o.synthesis;
    s.seed = o.synthesis.seed + begin;
    const SynthesisResult r =
        synthesize(engine, objective, static_cast<int64_t>(end - begin), s, keep_going());
    times.add(r);
    stopped = r.interrupted || interrupted();
    on_batch(begin, end, r, s.seed);
  }
  doc["interrupted"] = stopped;
  doc["timings"] = times.to_json();
}

// Runs `work(i, entry)` for each image in turn until it returns false
// (interrupted), each image with its own manifest entry (image, index,
// dir); an image that cannot be read gets an error entry and fails alone.
void for_each_image(const std::vector<std::string>& images, json& doc, Progress& progress,
                    const std::function<bool(size_t, const std::string&, json&)>& work) {
  const std::vector<std::string> stems = unique_stems(images);
  bool stopped = false;
  for (size_t i = 0; i < images.size() && !stopped; ++i) {
    json e;
    set_image_name(e, images[i]);
    e["index"] = i;
    e["dir"] = stems[i];
    e["files"] = json::array();
    try {
      stopped = !work(i, stems[i], e);
      progress.done();
    } catch (const OutOfMemory&) {
      throw;
    } catch (const Error& err) {
      if (err.code() != ErrorCode::kInput) throw;
      e["error"] = with_image_name(err, images[i]).what();
      progress.failed(e["error"].get<std::string>());
    }
    doc["images"].push_back(std::move(e));
  }
  doc["interrupted"] = stopped;
}

}  // namespace

std::vector<int64_t> parse_channel_list(const std::string& text, int64_t count,
                                        const std::string& layer) {
  const std::string subject = "--channels '" + text + "'";
  const std::string range = "layer '" + layer + "' has " + std::to_string(count) + " channels, 0-" +
                            std::to_string(count - 1);
  if (text == "all") {
    std::vector<int64_t> all(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) all[static_cast<size_t>(i)] = i;
    return all;
  }
  auto number = [&](const std::string& s) {
    if (s.empty() || s.size() > 9 ||
        !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); })) {
      throw Error(ErrorCode::kUsage,
                  subject + ": '" + s + "' is not a channel (use K, A-B, a list, or all)");
    }
    const int64_t v = std::stoll(s);
    if (v >= count)
      throw Error(ErrorCode::kUsage, subject + ": channel " + s + " out of range (" + range + ")");
    return v;
  };
  std::vector<int64_t> out;
  std::set<int64_t> seen;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(begin, end - begin);
    const size_t dash = item.find('-');
    int64_t lo, hi;
    if (dash == std::string::npos) {
      lo = hi = number(item);
    } else {
      lo = number(item.substr(0, dash));
      hi = number(item.substr(dash + 1));
      if (hi < lo) throw Error(ErrorCode::kUsage, subject + ": range " + item + " is empty");
    }
    for (int64_t c = lo; c <= hi; ++c) {
      if (seen.insert(c).second) out.push_back(c);
    }
    if (out.size() > static_cast<size_t>(kMaxSynthesisChannels)) {
      throw Error(ErrorCode::kUsage,
                  subject + ": more than " + std::to_string(kMaxSynthesisChannels) + " channels");
    }
    begin = end + 1;
  }
  return out;
}

json run_filters(const Model& model, const SynthesisRunOptions& o, Progress& progress) {
  const Engine::Description d = Engine::describe(model);
  const FeatureLayout f = layer_layout(model, d, o.layer, "filters");
  const std::vector<int64_t> channels = parse_channel_list(o.channels, f.channels, o.layer);
  make_output_dir(o.outdir + "/filters");
  json options = synthesis_options_json(o.synthesis);
  options["layer"] = o.layer;
  options["channels"] = channels;
  options["neuron"] = o.neuron;
  options["batch"] = o.batch;
  json doc = head(model, "filters", options);
  Objective objective;
  objective.kind = o.neuron ? ObjectiveKind::kNeuron : ObjectiveKind::kChannel;
  objective.layers = {o.layer};
  const Engine engine = objective_engine(model, objective);
  Tiles tiles;
  optimize_in_batches(
      engine, objective, channels, o, doc,
      [&](size_t begin, size_t end, const SynthesisResult& r, uint64_t seed) {
        for (size_t i = begin; i < end; ++i) {
          const int64_t c = channels[i];
          const std::string rel =
              "filters/" + file_safe(o.layer) + "_ch" + std::to_string(c) + ".png";
          const cv::Mat rgb = write_rgb(o.outdir, rel, r.images[static_cast<int64_t>(i - begin)]);
          tiles.emplace_back(o.layer + ":" + std::to_string(c), rgb);
          json e = unit_entry(o.layer + ":" + std::to_string(c), i, "filters");
          e["unit"] = {{"layer", o.layer}, {"channel", c}, {"neuron", o.neuron}};
          e["objective"] = r.final[i - begin];
          e["history"] = history_json(r, i - begin);
          e["seed"] = seed;
          e["files"] = json::array({file_json(rel, "filters", o.layer, std::nullopt, "image")});
          doc["images"].push_back(std::move(e));
        }
        progress.done(end - begin);
      });
  const std::string sheet = "filters/" + file_safe(o.layer) + "_sheet.png";
  write_sheet(o.outdir, sheet, tiles, kSheetColumns);
  doc["sheet"] = sheet;
  write_manifest(o.outdir, doc);
  return doc;
}

json run_class_model(const Model& model, const SynthesisRunOptions& o, Progress& progress) {
  const ModelInfo& info = model.info();
  if (o.classes.empty()) throw Error(ErrorCode::kUsage, "--class: at least one class is needed");
  std::vector<int64_t> classes;
  for (const std::string& c : o.classes)
    classes.push_back(parse_class(c, info, known_classes(info)));
  make_output_dir(o.outdir + "/class-model");
  json options = synthesis_options_json(o.synthesis);
  options["classes"] = classes;
  options["batch"] = o.batch;
  json doc = head(model, "class-model", options);
  Objective objective;
  objective.kind = ObjectiveKind::kClass;
  const Engine engine = objective_engine(model, objective);
  Tiles tiles;
  optimize_in_batches(
      engine, objective, classes, o, doc,
      [&](size_t begin, size_t end, const SynthesisResult& r, uint64_t seed) {
        const at::Tensor logits =
            model.logits(model_input(r.images.to(model.device()), info.preprocess));
        const at::Tensor probs = at::softmax(logits.to(at::kDouble), 1);
        const std::vector<std::vector<Prediction>> top =
            top_k(logits, std::min<int>(5, static_cast<int>(logits.size(1))));
        for (size_t i = begin; i < end; ++i) {
          const int64_t c = classes[i];
          const int64_t row = static_cast<int64_t>(i - begin);
          const double p = probs[row][c].item<double>();
          const std::string rel = "class-model/c" + std::to_string(c) + ".png";
          const cv::Mat rgb = write_rgb(o.outdir, rel, r.images[row]);
          char caption[64];
          std::snprintf(caption, sizeof(caption), " p=%.2f", p);
          tiles.emplace_back(std::to_string(c) + " " + info.label(c) + caption, rgb);
          json e = unit_entry("class " + std::to_string(c) + " (" + info.label(c) + ")", i,
                              "class-model");
          e["class"] = c;
          e["label"] = info.label(c);
          e["logit"] = r.final[i - begin];
          e["probability"] = p;
          e["predictions"] = predictions_json(top[static_cast<size_t>(row)], info);
          e["history"] = history_json(r, i - begin);
          e["seed"] = seed;
          e["files"] = json::array({file_json(rel, "class-model", "", c, "image")});
          doc["images"].push_back(std::move(e));
        }
        progress.done(end - begin);
      });
  write_sheet(o.outdir, "class-model/sheet.png", tiles, std::min(kSheetColumns, 4));
  doc["sheet"] = "class-model/sheet.png";
  write_manifest(o.outdir, doc);
  return doc;
}

json run_dream(const Model& model, const std::vector<std::string>& images,
               const SynthesisRunOptions& o, Progress& progress) {
  const Engine::Description d = Engine::describe(model);
  layer_layout(model, d, o.layer, "dream");
  make_output_dir(o.outdir);
  const DreamOptions& dr = o.dream;
  json doc = head(model, "dream",
                  {{"layer", o.layer},
                   {"octaves", dr.octaves},
                   {"octave_scale", dr.octave_scale},
                   {"steps", dr.steps},
                   {"lr", dr.lr},
                   {"jitter", dr.jitter},
                   {"seed", dr.seed}});
  Objective objective;
  objective.layers = {o.layer};
  const Engine engine = objective_engine(model, objective);
  for_each_image(images, doc, progress, [&](size_t i, const std::string& stem, json& e) {
    const cv::Mat rgb = read_image_rgb(images[i], o.max_pixels);
    const DreamResult r = dream(engine, from_rgb8(rgb), dr, [] { return !interrupted(); });
    make_output_dir(o.outdir + "/" + stem);
    const std::string rel = stem + "/dream_" + file_safe(o.layer) + ".png";
    write_rgb(o.outdir, rel, r.image);
    e["size"] = {rgb.cols, rgb.rows};
    e["activation_rms_before"] = r.norm_before;
    e["activation_rms_after"] = r.norm_after;
    e["gain"] = r.norm_before > 0 ? r.norm_after / r.norm_before : 0.0;
    e["files"].push_back(file_json(rel, "dream", o.layer, std::nullopt, "image"));
    return !r.interrupted;
  });
  write_manifest(o.outdir, doc);
  return doc;
}

namespace {

// --all-layers: every feature stage that runs once and has a spatial map;
// else --layer, checked.
std::vector<std::string> invert_layers(const Model& model, const Engine::Description& d,
                                       const SynthesisRunOptions& o) {
  if (!o.all_layers) {
    layer_layout(model, d, o.layer, "invert");
    return {o.layer};
  }
  std::vector<std::string> layers;
  for (const std::string& l : feature_layers(model, d)) {
    const LayerInfo* info = find_layer(d, l);
    if (info && info->calls == 1 && infer_layout(info->shape)) layers.push_back(l);
  }
  if (layers.empty()) {
    throw Error(ErrorCode::kUnsupported, "--all-layers: model '" + model.info().name +
                                             "' has no feature stage with a spatial map");
  }
  return layers;
}

Objective invert_objective(const std::vector<std::string>& layers, size_t begin, size_t end) {
  Objective objective;
  objective.kind = ObjectiveKind::kInvert;
  objective.layers = slice(layers, begin, end);
  return objective;
}

// Inverts images at `layers`: the targets of every layer come from one pass;
// the layers are then optimized o.batch at a time, each batch with an engine
// of its own, built once for every image.
class Inverter {
 public:
  Inverter(const Model& model, const std::vector<std::string>& layers, const SynthesisRunOptions& o)
      : model_(model), layers_(layers), o_(o), targets_engine_(model, layers) {
    targets_engine_.keep_outputs(/*stop=*/true, /*grad=*/false);
    s_ = o.synthesis;
    s_.param.size = model.info().preprocess.square_side();
    chunks_ = batch_ranges(layers.size(), o.batch);
    for (const auto& [begin, end] : chunks_) {
      engines_.push_back(objective_engine(model, invert_objective(layers, begin, end)));
    }
  }

  // Writes OUTDIR/stem/invert_<layer>.png per layer (and a contact sheet
  // for several) and records them in `e`; false when interrupted.
  bool invert(const std::string& image, const std::string& stem, json& e);

  const OptimizeTimes& times() const { return times_; }

 private:
  // Each layer's features [C,h,w] of `input`, detached.
  std::vector<at::Tensor> targets(const at::Tensor& input) const {
    std::vector<at::Tensor> targets;
    Pass pass = targets_engine_.run(input);
    for (size_t l = 0; l < layers_.size(); ++l) {
      targets.push_back(
          to_feature_map(pass.output(l), layers_[l], model_.info().name)[0].detach().clone());
    }
    return targets;
  }

  const Model& model_;
  const std::vector<std::string>& layers_;
  const SynthesisRunOptions& o_;
  SynthesisOptions s_;
  Engine targets_engine_;
  std::vector<std::pair<size_t, size_t>> chunks_;
  std::vector<Engine> engines_;  // one per chunk
  OptimizeTimes times_;
};

bool Inverter::invert(const std::string& image, const std::string& stem, json& e) {
  const Preprocessing& pre = model_.info().preprocess;
  const cv::Mat rgb = read_image_rgb(image, o_.max_pixels);
  const at::Tensor input = preprocess(rgb, pre).unsqueeze(0);
  const std::vector<at::Tensor> targets = this->targets(input);
  make_output_dir(o_.outdir + "/" + stem);
  Tiles tiles;
  tiles.emplace_back("input", to_rgb8(input_images(input, pre)[0]));
  e["relative_error"] = json::object();
  bool stopped = false;
  for (size_t c = 0; c < chunks_.size() && !stopped; ++c) {
    const auto [begin, end] = chunks_[c];
    Objective objective = invert_objective(layers_, begin, end);
    objective.targets = slice(targets, begin, end);
    const SynthesisResult r =
        synthesize(engines_[c], objective, static_cast<int64_t>(end - begin), s_, keep_going());
    times_.add(r);
    stopped = r.interrupted || interrupted();
    for (size_t l = begin; l < end; ++l) {
      const std::string rel = stem + "/invert_" + file_safe(layers_[l]) + ".png";
      const cv::Mat out = write_rgb(o_.outdir, rel, r.images[static_cast<int64_t>(l - begin)]);
      const double err = std::sqrt(std::max(0.0, -r.final[l - begin]));
      char caption[96];
      std::snprintf(caption, sizeof(caption), "%s err %.2f", layers_[l].c_str(), err);
      tiles.emplace_back(caption, out);
      e["relative_error"][layers_[l]] = err;
      e["files"].push_back(file_json(rel, "invert", layers_[l], std::nullopt, "image"));
    }
  }
  if (layers_.size() > 1) {
    const std::string rel = stem + "/invert_contact.png";
    write_sheet(o_.outdir, rel, tiles, kSheetColumns);
    e["files"].push_back(file_json(rel, "invert", "", std::nullopt, "contact"));
  }
  return !stopped;
}

}  // namespace

json run_invert(const Model& model, const std::vector<std::string>& images,
                const SynthesisRunOptions& o, Progress& progress) {
  const Engine::Description d = Engine::describe(model);
  const std::vector<std::string> layers = invert_layers(model, d, o);
  make_output_dir(o.outdir);
  json options = synthesis_options_json(o.synthesis);
  options["layers"] = layers;
  json doc = head(model, "invert", options);
  doc["layers"] = layers;
  Inverter inverter(model, layers, o);
  for_each_image(images, doc, progress, [&](size_t i, const std::string& stem, json& e) {
    return inverter.invert(images[i], stem, e);
  });
  doc["timings"] = inverter.times().to_json();
  write_manifest(o.outdir, doc);
  return doc;
}

namespace {

std::string state_name(const Shard& shard) {
  return shard.active() ? "top-activations." + shard.name() + ".state.json"
                        : "top-activations.state.json";
}

json read_state(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path, "top-activations:", kMaxStateBytes);
  const json doc =
      parse_json(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                 "top-activations: '" + path + "'", ErrorCode::kInput);
  if (!doc.is_object() || doc.value("format", "") != format_name(Format::kTopActivationsState) ||
      !doc.contains("channels") || !doc["channels"].is_array() || !doc.contains("top") ||
      !doc["top"].is_array() || doc["top"].size() != doc["channels"].size()) {
    throw Error(ErrorCode::kInput, "top-activations: '" + path + "': not a cnnviz state file");
  }
  return doc;
}

// Adds a state's entries to `top` (whose channels must be the state's).
// Entries keep their index in the run's input list, which every shard
// shares, so that ties rank as in one run; paths[index] is the image.
void add_state(const json& state, const std::string& path, TopActivations& top,
               std::vector<std::string>& paths) {
  try {
    if (state.at("channels").get<std::vector<int64_t>>() != top.channels() ||
        state.at("k").get<int>() != top.k()) {
      throw Error(ErrorCode::kUsage, "top-activations: '" + path +
                                         "' was written for other channels or another --k "
                                         "(use the same options, or another -o)");
    }
    for (size_t j = 0; j < state["top"].size(); ++j) {
      for (const json& t : state["top"][j]) {
        const int64_t index = t.at("index").get<int64_t>();
        if (index < 0 || index > static_cast<int64_t>(kMaxStateBytes)) {
          throw Error(ErrorCode::kInput, "top-activations: '" + path + "': index out of range");
        }
        if (static_cast<size_t>(index) >= paths.size())
          paths.resize(static_cast<size_t>(index) + 1);
        paths[static_cast<size_t>(index)] = t.at("image").get<std::string>();
        top.add_entry(j, {t.at("value").get<float>(), index, t.at("y").get<int64_t>(),
                          t.at("x").get<int64_t>()});
      }
    }
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kInput, "top-activations: '" + path + "': not a cnnviz state file (" +
                                       first_line(e.what()) + ")");
  }
}

// What a top-activations scan has found so far: its state file holds it.
struct Scan {
  explicit Scan(TopActivations t) : top(std::move(t)) {}

  TopActivations top;
  std::vector<std::string> paths;  // an entry's index -> its image
  json failed = json::array();
  size_t done = 0;  // images of this shard scanned
};

json state_json(const Model& model, const SynthesisRunOptions& o, const Scan& scan) {
  json doc;
  doc["format"] = format_name(Format::kTopActivationsState);
  doc["format_version"] = format_version(Format::kTopActivationsState);
  doc["model"] = model.info().name;
  doc["layer"] = o.layer;
  doc["k"] = scan.top.k();
  doc["channels"] = scan.top.channels();
  doc["shard"] = o.shard.name();
  doc["done"] = scan.done;
  doc["failed"] = scan.failed;
  doc["top"] = json::array();
  for (const std::vector<TopEntry>& list : scan.top.sorted()) {
    json a = json::array();
    for (const TopEntry& t : list) {
      a.push_back({{"image", scan.paths.at(static_cast<size_t>(t.image))},
                   {"index", t.image},
                   {"value", t.value},
                   {"y", t.y},
                   {"x", t.x}});
    }
    doc["top"].push_back(std::move(a));
  }
  return doc;
}

// --merge: every shard's state in OUTDIR, combined.
void merge_states(const std::string& outdir, Scan& scan) {
  const std::vector<RunFile> files = find_run_files(outdir, "top-activations", ".state.json");
  if (files.empty()) {
    throw Error(ErrorCode::kInput, "top-activations --merge: no state files in '" + outdir +
                                       "' (run the shards with -o " + outdir + " first)");
  }
  for (const RunFile& file : files) {
    const std::string path = outdir + "/" + file.name;
    const json state = read_state(path);
    add_state(state, path, scan.top, scan.paths);
    for (const json& x : state.value("failed", json::array())) scan.failed.push_back(x);
  }
}

// --resume: the state an earlier run of this shard saved, which must come
// from the same model, layer and images.
void resume_scan(const Model& model, const SynthesisRunOptions& o, const std::string& state_path,
                 size_t shard_size, Scan& scan, Progress& progress) {
  const json state = read_state(state_path);
  if (state.value("layer", "") != o.layer || state.value("model", "") != model.info().name) {
    throw Error(ErrorCode::kUsage, "top-activations --resume: '" + state_path +
                                       "' was written for another model or layer");
  }
  std::vector<std::string> saved;
  add_state(state, state_path, scan.top, saved);
  for (size_t i = 0; i < saved.size(); ++i) {
    if (!saved[i].empty() && (i >= scan.paths.size() || saved[i] != scan.paths[i])) {
      throw Error(ErrorCode::kUsage, "top-activations --resume: '" + state_path +
                                         "' was written for another list of images");
    }
  }
  scan.done = std::min(shard_size, state.value("done", size_t{0}));
  scan.failed = state.value("failed", json::array());
  progress.skipped(scan.done);
}

// Runs `list` through the engine batch by batch into scan.top (failures into
// scan.failed), saving the state after every batch. False when interrupted.
bool scan_images(const Engine& engine, const Model& model, const LoadList& list,
                 const SynthesisRunOptions& o, const std::string& state_path, Scan& scan,
                 Progress& progress) {
  LoaderOptions lo;
  lo.batch_size = std::max<size_t>(1, o.batch_size);
  lo.workers = o.decoders;
  lo.max_pixels = o.max_pixels;
  BatchLoader loader(list.paths, model.info().preprocess, lo);
  for (std::vector<LoadedImage> batch = loader.next(); !batch.empty(); batch = loader.next()) {
    if (interrupted()) return false;
    std::vector<at::Tensor> inputs;
    std::vector<int64_t> rows;
    for (LoadedImage* img : place_loaded(batch, list, [&](LoadedImage& bad) {
           scan.failed.push_back({{"image", bad.path}, {"error", bad.error->what()}});
           progress.failed(bad.error->what());
         })) {
      inputs.push_back(std::move(img->input));
      rows.push_back(static_cast<int64_t>(img->index));
    }
    if (!inputs.empty()) {
      Pass pass = engine.run(at::stack(inputs));
      scan.top.add(to_feature_map(pass.output(0), o.layer, model.info().name), rows);
      progress.done(inputs.size());
    }
    scan.done += batch.size();
    const std::string text = dump_json(state_json(model, o, scan), -1) + "\n";
    write_file_atomic(state_path, text.data(), text.size());
  }
  return true;
}

// The field of a position on the crop, at least one pixel: a position that
// a ceil-mode pooling adds past the input's edge sees only padding.
PixelBox visible_box(const ReceptiveField& rf, int64_t y, int64_t x, int crop) {
  PixelBox b = receptive_box(rf, y, x, crop, crop);
  if (b.y1 <= b.y0) b.y0 = std::min<int64_t>(b.y0, crop - 1), b.y1 = b.y0 + 1;
  if (b.x1 <= b.x0) b.x0 = std::min<int64_t>(b.x0, crop - 1), b.x1 = b.x0 + 1;
  return b;
}

// The crop the network saw of an image, 8-bit RGB; grey when the image can
// no longer be read.
cv::Mat crop_view(const std::string& path, const Preprocessing& pre, int64_t max_pixels) {
  try {
    const cv::Mat rgb = read_image_rgb(path, max_pixels);
    return to_rgb8(input_images(preprocess(rgb, pre).unsqueeze(0), pre)[0]);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kInput) throw;
    return cv::Mat(pre.crop, pre.crop, CV_8UC3, cv::Scalar(128, 128, 128));
  }
}

// The whole field of box `b` at one scale, as a tile: where it reaches past
// the crop (the padding the network saw), grey.
cv::Mat patch_tile(const cv::Mat& view, const ReceptiveField& rf, const TopEntry& t,
                   const PixelBox& b, int crop) {
  const cv::Mat visible =
      view(cv::Rect(static_cast<int>(b.x0), static_cast<int>(b.y0), static_cast<int>(b.x1 - b.x0),
                    static_cast<int>(b.y1 - b.y0)));
  cv::Mat patch = visible.clone();
  if (!rf.global) {
    const int64_t fy = rf.start[0] + t.y * rf.stride[0], fx = rf.start[1] + t.x * rf.stride[1];
    const int64_t fh = std::min<int64_t>(rf.size[0], 4 * crop);
    const int64_t fw = std::min<int64_t>(rf.size[1], 4 * crop);
    const int64_t dy = b.y0 - fy, dx = b.x0 - fx;
    if (dy >= 0 && dx >= 0 && dy + visible.rows <= fh && dx + visible.cols <= fw) {
      patch =
          cv::Mat(static_cast<int>(fh), static_cast<int>(fw), CV_8UC3, cv::Scalar(128, 128, 128));
      visible.copyTo(
          patch(cv::Rect(static_cast<int>(dx), static_cast<int>(dy), visible.cols, visible.rows)));
    }
  }
  cv::resize(patch, patch, cv::Size(kPatchTile, kPatchTile), 0, 0, cv::INTER_AREA);
  return patch;
}

// The crop with box `b` drawn on it, as a tile.
cv::Mat box_tile(const cv::Mat& view, const PixelBox& b, int crop) {
  cv::Mat boxed = view.clone();
  cv::rectangle(boxed, cv::Point(static_cast<int>(b.x0), static_cast<int>(b.y0)),
                cv::Point(static_cast<int>(b.x1) - 1, static_cast<int>(b.y1) - 1),
                cv::Scalar(255, 40, 40), std::max(1, crop / 112), cv::LINE_8);
  cv::resize(boxed, boxed, cv::Size(kBoxTile, kBoxTile), 0, 0, cv::INTER_AREA);
  return boxed;
}

// Per channel, per rank: the tiles of the patch sheet and of the box sheet.
struct TopTiles {
  std::vector<Tiles> patches, boxes;
};

// Every entry's tiles, each image decoded once whichever channels it tops.
TopTiles top_tiles(const std::vector<std::vector<TopEntry>>& lists,
                   const std::vector<std::string>& paths, const ReceptiveField& rf,
                   const Preprocessing& pre, int64_t max_pixels) {
  std::map<int64_t, std::vector<std::pair<size_t, size_t>>> uses;
  for (size_t j = 0; j < lists.size(); ++j) {
    for (size_t r = 0; r < lists[j].size(); ++r) uses[lists[j][r].image].push_back({j, r});
  }
  TopTiles tiles{std::vector<Tiles>(lists.size()), std::vector<Tiles>(lists.size())};
  for (size_t j = 0; j < lists.size(); ++j) {
    tiles.patches[j].resize(lists[j].size());
    tiles.boxes[j].resize(lists[j].size());
  }
  const int crop = pre.crop;
  for (const auto& [image, where] : uses) {
    const std::string& path = paths.at(static_cast<size_t>(image));
    const cv::Mat view = crop_view(path, pre, max_pixels);
    for (const auto& [j, r] : where) {
      const TopEntry& t = lists[j][r];
      // Map positions scale to the crop when the map was computed at another size.
      const PixelBox b = visible_box(rf, t.y, t.x, crop);
      char caption[32];
      std::snprintf(caption, sizeof(caption), "%.3g", t.value);
      tiles.patches[j][r] = {caption, patch_tile(view, rf, t, b, crop)};
      tiles.boxes[j][r] = {fs::path(path).filename().string(), box_tile(view, b, crop)};
    }
  }
  return tiles;
}

json receptive_field_json(const ReceptiveField& rf) {
  return {{"size", {rf.size[0], rf.size[1]}},
          {"stride", {rf.stride[0], rf.stride[1]}},
          {"start", {rf.start[0], rf.start[1]}},
          {"global", rf.global}};
}

// Writes each channel's patch and box sheets and the manifest.
json render_top(const Model& model, const SynthesisRunOptions& o, const FeatureLayout& f,
                const Scan& scan) {
  const Preprocessing& pre = model.info().preprocess;
  const ReceptiveField rf = receptive_field(model, o.layer);
  make_output_dir(o.outdir + "/top");
  const std::vector<std::vector<TopEntry>> lists = scan.top.sorted();
  const TopTiles tiles = top_tiles(lists, scan.paths, rf, pre, o.max_pixels);
  json options = {{"layer", o.layer}, {"channels", scan.top.channels()}, {"k", scan.top.k()}};
  json doc = head(model, "top-activations", options);
  doc["receptive_field"] = receptive_field_json(rf);
  doc["map"] = {f.channels, f.height, f.width};
  for (size_t j = 0; j < lists.size(); ++j) {
    const int64_t c = scan.top.channels()[j];
    const std::string base = "top/" + file_safe(o.layer) + "_ch" + std::to_string(c);
    const int columns =
        static_cast<int>(std::ceil(std::sqrt(static_cast<double>(lists[j].size()))));
    write_sheet(o.outdir, base + "_patches.png", tiles.patches[j], std::max(1, columns));
    write_sheet(o.outdir, base + "_boxes.png", tiles.boxes[j], std::max(1, columns));
    json e = unit_entry(o.layer + ":" + std::to_string(c), j, "top");
    e["unit"] = {{"layer", o.layer}, {"channel", c}};
    e["top"] = json::array();
    for (const TopEntry& t : lists[j]) {
      const PixelBox b = visible_box(rf, t.y, t.x, pre.crop);
      e["top"].push_back({{"image", scan.paths.at(static_cast<size_t>(t.image))},
                          {"value", t.value},
                          {"y", t.y},
                          {"x", t.x},
                          {"box", {b.y0, b.x0, b.y1, b.x1}}});
    }
    e["files"] = json::array();
    if (!lists[j].empty()) {
      e["files"].push_back(
          file_json(base + "_patches.png", "top-activations", o.layer, std::nullopt, "patches"));
      e["files"].push_back(
          file_json(base + "_boxes.png", "top-activations", o.layer, std::nullopt, "boxes"));
    }
    doc["images"].push_back(std::move(e));
  }
  doc["failed"] = scan.failed;
  write_manifest(o.outdir, doc);
  return doc;
}

}  // namespace

json run_top_activations(const Model& model, const std::vector<std::string>& images,
                         const SynthesisRunOptions& o, Progress& progress) {
  const Engine::Description d = Engine::describe(model);
  const FeatureLayout f = layer_layout(model, d, o.layer, "top-activations");
  if (model.info().preprocess.crop <= 0) {
    throw Error(ErrorCode::kUsage,
                "top-activations: model '" + model.info().name +
                    "' has no crop (its inputs differ in size); give it one with --size N");
  }
  const std::vector<int64_t> channels = parse_channel_list(o.channels, f.channels, o.layer);
  if (o.k < 1 || o.k > kMaxTopK) {
    throw Error(ErrorCode::kUsage, "--k " + std::to_string(o.k) + ": must be between 1 and " +
                                       std::to_string(kMaxTopK));
  }
  make_output_dir(o.outdir);
  Scan scan(TopActivations(channels, o.k));
  if (o.merge) {
    merge_states(o.outdir, scan);
    return render_top(model, o, f, scan);
  }
  scan.paths = images;
  const std::vector<size_t> positions = shard_positions(images.size(), o.shard);
  const std::string state_path = o.outdir + "/" + state_name(o.shard);
  std::error_code ec;
  if (o.resume && fs::exists(state_path, ec)) {
    resume_scan(model, o, state_path, positions.size(), scan, progress);
  }
  LoadList list;
  for (size_t p = scan.done; p < positions.size(); ++p)
    list.add(positions[p], images[positions[p]]);
  Engine engine(model, {o.layer});
  engine.keep_outputs(/*stop=*/true, /*grad=*/false);
  const Clock::time_point scan_start = Clock::now();
  const bool stopped = !scan_images(engine, model, list, o, state_path, scan, progress);
  const double scan_ms = ms_since(scan_start);
  if (stopped || o.shard.active()) {
    json doc = state_json(model, o, scan);
    doc["interrupted"] = stopped;
    return doc;
  }
  const Clock::time_point render_start = Clock::now();
  json doc = render_top(model, o, f, scan);
  doc["timings"] = {{"scan_ms", scan_ms},
                    {"images_scanned", list.paths.size()},
                    {"render_ms", ms_since(render_start)}};
  write_manifest(o.outdir, doc);
  return doc;
}

}  // namespace cnnviz
