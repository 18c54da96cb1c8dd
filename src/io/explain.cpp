#include "cnnviz/explain.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <set>

#include "cnnviz/engine.h"
#include "cnnviz/error.h"
#include "cnnviz/files.h"
#include "cnnviz/inputs.h"
#include "cnnviz/loader.h"
#include "cnnviz/methods.h"
#include "cnnviz/npy.h"
#include "cnnviz/predict.h"
#include "cnnviz/render.h"
#include "cnnviz/version.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {

namespace {

constexpr int kManifestPredictions = 5;
constexpr int kContactColumns = 6;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

json range_of(const at::Tensor& t) {
  return {{"min", t.min().item<double>()}, {"max", t.max().item<double>()}};
}

// Writes the files of one image for one map and records them.
class ImageWriter {
 public:
  ImageWriter(const ExplainOptions& options, int colormap, std::string outdir, std::string subdir,
              json& files, json& warnings)
      : options_(options),
        colormap_(colormap),
        outdir_(std::move(outdir)),
        subdir_(std::move(subdir)),
        files_(files),
        warnings_(warnings) {}

  void gradient(const std::string& method, const std::string& layer, int64_t cls,
                const at::Tensor& g) {
    const std::string prefix = name(method, layer, cls);
    if (options_.raw) npy(prefix + ".npy", method, layer, cls, "raw", g);
    if (method == "guided-gradcam") {
      bool flat = false;
      at::Tensor rgb = rescale_gradient(g, Rescale::kAll, &flat);
      if (flat) warn(prefix, "constant map, written as zeros");
      png(prefix + "_color.png", to_bgr8(rgb), method, layer, cls, "color", g);
      png(prefix + "_gray.png", to_gray8(rgb_to_gray(rgb)), method, layer, cls, "gray", g);
      tiles_.emplace_back(layer, to_gray8(rgb_to_gray(rgb)));
      return;
    }
    for (Rescale r : {Rescale::kAll, Rescale::kPos, Rescale::kNeg}) {
      bool flat = false;
      at::Tensor rgb = rescale_gradient(g, r, &flat);
      const std::string v = rescale_name(r);
      if (flat) warn(prefix + " " + v, "no values to rescale, written as zeros");
      png(prefix + "_" + v + ".png", to_bgr8(rgb), method, layer, cls, v, g);
      png(prefix + "_" + v + "_gray.png", to_gray8(rgb_to_gray(rgb)), method, layer, cls,
          v + "_gray", g);
    }
  }

  void cam(const std::string& method, const std::string& layer, int64_t cls, const at::Tensor& m,
           const cv::Mat& source_rgb, const CropBox& box) {
    const std::string prefix = name(method, layer, cls);
    if (options_.raw) npy(prefix + ".npy", method, layer, cls, "raw", m);
    at::Tensor norm = method_util::normalize_per_image(m.unsqueeze(0));
    if (norm.max().item<double>() == 0.0)
      warn(prefix, "map is all zero (or constant), written as zeros");
    at::Tensor up = method_util::upsample(norm, box.size, box.size)[0].clamp(0.0, 1.0);
    cv::Mat heat = colorize(up, colormap_);
    cv::Mat over = blend(network_view_bgr(source_rgb, box), heat, options_.alpha);
    png(prefix + "_gray.png", to_gray8(up), method, layer, cls, "gray", m);
    png(prefix + "_heatmap.png", heat, method, layer, cls, "heatmap", m);
    png(prefix + "_overlay.png", over, method, layer, cls, "overlay", m);
    png(prefix + "_overlay_full.png",
        overlay_on_source(source_rgb, up, box, colormap_, options_.alpha), method, layer, cls,
        "overlay_full", m);
    tiles_.emplace_back(layer, over);
  }

  // A grid of this class's per-layer tiles (overlays, or guided Grad-CAM grey
  // maps), when there are several layers.
  void contact_sheet_for(const std::string& method, int64_t cls) {
    if (tiles_.size() > 1) {
      const std::string file = method + "_c" + std::to_string(cls) + "_contact.png";
      write_png(path(file), contact_sheet(tiles_, kContactColumns));
      files_.push_back({{"path", rel(file)},
                        {"method", method},
                        {"layer", nullptr},
                        {"class", cls},
                        {"variant", "contact"},
                        {"format", "png"}});
    }
    tiles_.clear();
  }

 private:
  static std::string name(const std::string& method, const std::string& layer, int64_t cls) {
    std::string n = method;
    if (!layer.empty() && layer != kGlobalPoolInput) n += "_" + layer;
    return n + "_c" + std::to_string(cls);
  }
  std::string rel(const std::string& file) const { return subdir_ + "/" + file; }
  std::string path(const std::string& file) const { return outdir_ + "/" + rel(file); }

  json entry(const std::string& file, const std::string& method, const std::string& layer,
             int64_t cls, const std::string& variant, const char* format, const at::Tensor& raw) {
    json e = {{"path", rel(file)},
              {"method", method},
              {"layer", layer.empty() ? json(nullptr) : json(layer)},
              {"class", cls},
              {"variant", variant},
              {"format", format}};
    e.update(range_of(raw));
    return e;
  }
  void png(const std::string& file, const cv::Mat& image, const std::string& method,
           const std::string& layer, int64_t cls, const std::string& variant,
           const at::Tensor& raw) {
    write_png(path(file), image);
    files_.push_back(entry(file, method, layer, cls, variant, "png", raw));
  }
  void npy(const std::string& file, const std::string& method, const std::string& layer,
           int64_t cls, const std::string& variant, const at::Tensor& raw) {
    at::Tensor c = raw.contiguous().to(at::kFloat);
    write_npy(path(file),
              NpyArray{c.sizes().vec(),
                       std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel())});
    files_.push_back(entry(file, method, layer, cls, variant, "npy", raw));
  }
  void warn(const std::string& what, const std::string& problem) {
    warnings_.push_back(what + ": " + problem);
  }

  const ExplainOptions& options_;
  int colormap_;
  std::string outdir_, subdir_;
  json& files_;
  json& warnings_;
  std::vector<std::pair<std::string, cv::Mat>> tiles_;
};

// Appends one JSON line per finished image and flushes it to disk, so that
// after a crash or Ctrl-C the journal lists exactly the complete images.
class Journal {
 public:
  explicit Journal(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      throw Error(ErrorCode::kOutput, "cannot write '" + path + "': " + std::strerror(errno));
    }
  }
  ~Journal() {
    if (fd_ >= 0) ::close(fd_);
  }
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  void append(const json& entry, const std::string& run_key) {
    json line = entry;
    line["run_key"] = run_key;
    const std::string text = line.dump() + "\n";
    if (::write(fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
        ::fdatasync(fd_) != 0) {
      throw Error(ErrorCode::kOutput, "cannot write '" + path_ + "': " + std::strerror(errno));
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// The files of `dir` whose names start with `prefix` and end in `extension`,
// sorted; none when the directory cannot be read.
std::vector<fs::path> files_named(const std::string& dir, const std::string& prefix,
                                  const std::string& extension) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().rfind(prefix, 0) == 0 &&
        it->path().extension() == extension) {
      found.push_back(it->path());
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

// The latest successful entry per image in OUTDIR's journals with `run_key`.
std::map<std::string, json> read_journals(const std::string& outdir, const std::string& run_key) {
  std::map<std::string, json> found;
  for (const fs::path& j : files_named(outdir, "journal", ".jsonl")) {
    std::ifstream in(j);
    for (std::string line; std::getline(in, line);) {
      json e = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (e.is_discarded() || !e.is_object() || e.value("run_key", "") != run_key) continue;
      if (e.contains("error") || !e.contains("files")) continue;
      e.erase("run_key");
      // Key first: json's by-value operator= would move `e` before the key is read.
      const std::string image = e["image"].get<std::string>();
      found[image] = std::move(e);
    }
  }
  return found;
}

bool outputs_complete(const std::string& outdir, const json& entry) {
  std::error_code ec;
  for (const json& f : entry["files"]) {
    if (!fs::is_regular_file(fs::path(outdir) / f["path"].get<std::string>(), ec)) return false;
  }
  return !entry["files"].empty();
}

}  // namespace

// One directory name per input: the file's stem, made unique in input order
// ("cat", "cat-2", ...).
std::vector<std::string> unique_stems(const std::vector<std::string>& images) {
  std::vector<std::string> stems;
  std::set<std::string> used;
  for (const std::string& image : images) {
    std::string stem = fs::path(image).stem().string();
    if (stem.empty() || stem == "." || stem == "..") stem = "image";
    std::string name = stem;
    for (int k = 2; used.count(name); ++k) name = stem + "-" + std::to_string(k);
    used.insert(name);
    stems.push_back(name);
  }
  return stems;
}

void make_output_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw Error(ErrorCode::kOutput,
                "cannot create output directory '" + dir + "': " + ec.message());
  // Existing but read-only directories pass create_directories: probe.
  const std::string probe = (fs::path(dir) / ".cnnviz-write-test").string();
  write_file_atomic(probe, "", 0);
  fs::remove(probe, ec);
}

std::vector<std::string> feature_layers(const Model& model, const Engine::Description& d) {
  if (!model.info().feature_layers.empty()) return model.info().feature_layers;
  return feature_stages(d.layers);
}

std::string default_layer(const Model& model, const Engine::Description& d) {
  if (!model.info().gradcam_layer.empty()) return model.info().gradcam_layer;
  std::vector<std::string> stages = feature_layers(model, d);
  return stages.empty() ? std::string() : stages.back();
}

json model_json(const ModelInfo& info) {
  return {{"name", info.name},
          {"path", info.path},
          {"arch", info.arch},
          {"weights",
           {{"kind", weights_kind_name(info.weights_kind)}, {"source", info.weights_source}}}};
}

std::vector<std::string> resolve_layers(const Model& model, const ExplainOptions& options) {
  if (!options.all_layers && !options.layers.empty()) return options.layers;
  if (!options.all_layers && !model.info().gradcam_layer.empty()) {
    return {model.info().gradcam_layer};
  }
  const Engine::Description d = Engine::describe(model);
  std::vector<std::string> layers = feature_layers(model, d);
  const bool no_modules = std::none_of(d.layers.begin(), d.layers.end(), [](const LayerInfo& l) {
    return l.path != kGlobalPoolInput;
  });
  if (layers.empty()) {
    throw Error(ErrorCode::kUnsupported,
                "model '" + model.info().name + "' shows no feature stages (no submodule outputs " +
                    "a spatial map" +
                    (no_modules ? std::string(": it has no submodules at all, as a traced and "
                                              "frozen or inlined model")
                                : std::string()) +
                    "); name layers with --layer, or use a method without layers (saliency, "
                    "guided-backprop, deconvnet, smoothgrad, integrated-gradients, "
                    "gradient-input)");
  }
  if (options.all_layers) return layers;
  return {layers.back()};
}

int64_t parse_class(const std::string& text, const ModelInfo& info, int64_t classes) {
  if (!text.empty() && std::all_of(text.begin(), text.end(), ::isdigit)) {
    int64_t k = std::stoll(text.substr(0, 18));
    if (k >= classes) {
      throw Error(ErrorCode::kUsage, "--class " + text + ": out of range (the model has " +
                                         std::to_string(classes) + " classes, 0 to " +
                                         std::to_string(classes - 1) + ")");
    }
    return k;
  }
  for (size_t i = 0; i < info.labels.size(); ++i) {
    if (lower(info.labels[i]) == lower(text)) return static_cast<int64_t>(i);
  }
  std::string hint;
  for (const std::string& m : near_matches(
           lower(text),
           [&] {
             std::vector<std::string> l;
             for (const std::string& s : info.labels) l.push_back(lower(s));
             return l;
           }(),
           3)) {
    hint += (hint.empty() ? "" : ", ") + m;
  }
  throw Error(ErrorCode::kUsage, "--class '" + text + "': no such class" +
                                     (hint.empty() ? "" : " (nearest labels: " + hint + ")"));
}

ExplainSummary explain(const Model& model, const std::vector<std::string>& images,
                       const ExplainOptions& options, Progress& progress) {
  const MethodDef& method = find_method(options.method);
  const int colormap = colormap_id(options.colormap);
  if (!(options.alpha >= 0.0 && options.alpha <= 1.0)) {
    throw Error(ErrorCode::kUsage, "--alpha: must be between 0 and 1");
  }
  const ModelInfo& info = model.info();
  std::vector<std::string> layers;
  if (method.uses_layers) layers = resolve_layers(model, options);
  if (method.fixed_layer) layers.push_back(method.fixed_layer);
  Engine engine(model, layers);

  std::optional<int64_t> fixed_class;
  if (options.target_class) {
    const int64_t classes =
        info.labels.empty() ? INT64_MAX : static_cast<int64_t>(info.labels.size());
    fixed_class = parse_class(*options.target_class, info, classes);
  }
  const int ranks = fixed_class ? 1 : std::max(1, options.top);
  make_output_dir(options.outdir);

  MethodParams params = options.params;
  params.mean = info.preprocess.mean;
  params.std = info.preprocess.std;

  const GraphReport& report = engine.report();
  json unguided = json::object();
  for (const auto& [op, count] : report.unguided) unguided[op] = count;
  const bool guided = method.name == std::string("guided-backprop") ||
                      method.name == std::string("deconvnet") ||
                      method.name == std::string("guided-gradcam") ||
                      ((method.params & kParamSamples) && params.smooth_of == "guided-backprop");
  if (guided && !report.unguided.empty()) {
    std::string ops;
    for (const auto& [op, count] : report.unguided) {
      ops += (ops.empty() ? "" : ", ") + op + " x" + std::to_string(count);
    }
    progress.note("warning: model '" + info.name + "' has activations that cannot be guided (" +
                  ops + "); their backward stays the true gradient");
  }

  ExplainSummary summary;
  json& doc = summary.manifest;
  doc["cnnviz_version"] = kVersion;
  doc["model"] = model_json(info);
  doc["device"] = model.device().str();
  doc["method"] = method.name;
  doc["layers"] = layers;
  doc["guided_relus"] = report.guided_relus;
  doc["guided_relu6s"] = report.guided_relu6s;
  doc["unguided_activations"] = unguided;
  if (guided && !report.unguided.empty()) {
    doc["unguided_note"] =
        "guided backpropagation and deconvnet are defined for ReLU (and ReLU6) only; these "
        "activations have no standard guided rule, so their backward is the true gradient";
  }
  doc["options"] = {{"class", options.target_class ? json(*options.target_class) : json(nullptr)},
                    {"top", ranks},
                    {"colormap", options.colormap},
                    {"alpha", options.alpha},
                    {"raw", options.raw}};
  if (method.params & kParamSamples) {
    doc["options"]["samples"] = params.samples;
    doc["options"]["noise"] = params.noise;
    doc["options"]["seed"] = params.seed;
    doc["options"]["of"] = params.smooth_of;
  }
  if (method.params & kParamSteps) {
    doc["options"]["steps"] = params.steps;
    doc["options"]["baseline"] = params.baseline;
    if (params.baseline == "blurred") doc["options"]["blur_sigma"] = params.blur_sigma;
  }
  doc["images"] = json::array();

  const std::vector<std::string> stems = unique_stems(images);
  const std::vector<size_t> positions = shard_positions(images.size(), options.shard);
  const std::string suffix = options.shard.active() ? "." + options.shard.name() : "";
  doc["shard"] = options.shard.active() ? json(options.shard.name()) : json(nullptr);
  doc["inputs"] = images.size();
  const std::string run_key =
      json({doc["model"]["path"], method.name, layers, doc["options"]}).dump();

  // Entries of earlier runs with the same settings, for --skip-existing.
  std::map<std::string, json> previous;
  if (options.skip_existing) previous = read_journals(options.outdir, run_key);
  Journal journal(options.outdir + "/journal" + suffix + ".jsonl");

  std::map<size_t, json> entries;  // by input position
  std::vector<std::string> to_load;
  std::vector<size_t> load_position;
  for (size_t p : positions) {
    auto it = previous.find(images[p]);
    if (it != previous.end() && outputs_complete(options.outdir, it->second)) {
      entries[p] = it->second;
      entries[p]["index"] = p;
      ++summary.skipped;
      progress.skipped();
    } else {
      to_load.push_back(images[p]);
      load_position.push_back(p);
    }
  }

  LoaderOptions loader_options;
  loader_options.batch_size = std::max<size_t>(1, options.batch_size);
  loader_options.workers = options.decoders;
  loader_options.keep_rgb = true;
  BatchLoader loader(to_load, info.preprocess, loader_options);
  size_t chunk = loader_options.batch_size;  // images per pass; halved on out-of-memory
  for (std::vector<LoadedImage> batch = loader.next(); !batch.empty(); batch = loader.next()) {
    if (interrupted()) {
      summary.interrupted = true;
      break;
    }
    std::vector<LoadedImage*> ok;
    for (LoadedImage& img : batch) {
      const size_t p = load_position[img.index];
      img.index = p;  // from here on: the position in the whole input list
      if (img.error) {
        json e = {{"image", img.path}, {"index", p}, {"error", img.error->what()}};
        journal.append(e, run_key);
        entries[p] = std::move(e);
        ++summary.failed;
        progress.failed(img.error->what());
      } else {
        ok.push_back(&img);
      }
    }
    if (ok.empty()) continue;
    // One batch (or, after running out of device memory, part of one).
    auto process = [&](const std::vector<LoadedImage*>& ok) {
      std::vector<at::Tensor> inputs;
      for (LoadedImage* img : ok) inputs.push_back(img->input);
      auto t0 = std::chrono::steady_clock::now();
      Pass pass = engine.run(at::stack(inputs));
      const int64_t classes = pass.logits().size(1);
      if (fixed_class && *fixed_class >= classes) parse_class(*options.target_class, info, classes);
      auto top =
          top_k(pass.logits(),
                static_cast<int>(std::min<int64_t>(classes, std::max(kManifestPredictions, ranks))));

      std::vector<json> files(ok.size(), json::array()), warnings(ok.size(), json::array());
      std::vector<json> targets(ok.size(), json::array());
      for (int r = 0; r < ranks; ++r) {
        std::vector<int64_t> cls;
        for (size_t n = 0; n < ok.size(); ++n)
          cls.push_back(fixed_class ? *fixed_class : top[n][r].index);
        Capture capture(engine, pass, cls, params);
        std::vector<MethodMap> maps = method.compute(capture);
        for (MethodMap& m : maps) m.value = m.value.to(at::kCPU);  // only maps leave the device
        auto t1 = std::chrono::steady_clock::now();
        summary.compute_ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
        at::Tensor probs = at::softmax(pass.logits(), 1);
        for (size_t n = 0; n < ok.size(); ++n) {
          const LoadedImage& img = *ok[n];
          targets[n].push_back({{"class", cls[n]},
                                {"label", info.label(cls[n])},
                                {"rank", fixed_class ? json(nullptr) : json(r + 1)},
                                {"logit", pass.logits()[n][cls[n]].item<double>()},
                                {"probability", probs[n][cls[n]].item<double>()}});
          const std::string subdir = stems[img.index];
          make_output_dir(options.outdir + "/" + subdir);
          ImageWriter writer(options, colormap, options.outdir, subdir, files[n], warnings[n]);
          for (const MethodMap& m : maps) {
            if (m.input_space()) {
              writer.gradient(method.name, m.layer, cls[n], m.value[n]);
            } else {
              writer.cam(method.name, m.layer, cls[n], m.value[n], img.rgb, img.box);
            }
          }
          writer.contact_sheet_for(method.name, cls[n]);
        }
        t0 = std::chrono::steady_clock::now();
        summary.write_ms += std::chrono::duration<double, std::milli>(t0 - t1).count();
      }
      for (size_t n = 0; n < ok.size(); ++n) {
        json e = {{"image", ok[n]->path}, {"index", ok[n]->index}, {"dir", stems[ok[n]->index]}};
        e["predictions"] = json::array();
        for (int k = 0; k < std::min<int>(kManifestPredictions, static_cast<int>(top[n].size()));
             ++k) {
          e["predictions"].push_back({{"rank", k + 1},
                                      {"index", top[n][k].index},
                                      {"label", info.label(top[n][k].index)},
                                      {"probability", top[n][k].probability}});
        }
        e["targets"] = std::move(targets[n]);
        e["files"] = std::move(files[n]);
        e["warnings"] = std::move(warnings[n]);
        for (const auto& w : e["warnings"]) {
          progress.note("warning: " + ok[n]->path + ": " + w.get<std::string>());
        }
        journal.append(e, run_key);
        entries[ok[n]->index] = std::move(e);
        progress.done();
      }
    };
    // Out of device memory: halve the batch and retry, and keep the smaller
    // size for the rest of the run. An image that does not fit alone fails.
    for (size_t start = 0; start < ok.size();) {
      const size_t end = std::min(ok.size(), start + chunk);
      const std::vector<LoadedImage*> part(ok.begin() + static_cast<std::ptrdiff_t>(start),
                                           ok.begin() + static_cast<std::ptrdiff_t>(end));
      try {
        process(part);
        start = end;
      } catch (const OutOfMemory& e) {
        if (part.size() > 1) {
          chunk = (part.size() + 1) / 2;
          progress.note("out of memory on a batch of " + std::to_string(part.size()) +
                        " images: retrying in batches of " + std::to_string(chunk) + " (" +
                        e.what() + ")");
          continue;
        }
        const std::string message = "image '" + part[0]->path + "': " + e.what();
        json entry = {{"image", part[0]->path}, {"index", part[0]->index}, {"error", message}};
        journal.append(entry, run_key);
        entries[part[0]->index] = std::move(entry);
        ++summary.failed;
        progress.failed(message);
        start = end;
      }
    }
#ifdef __GLIBC__
    // Hand the batch's freed buffers back to the system: without it the
    // heap fragments and peak memory creeps up with the number of images.
    // Measured with squeezenet1_1, 20 -> 500 images: 519 -> 789 MiB with
    // glibc's malloc as it starts, 453 -> 1223 MiB with the heap reuse of
    // reuse_freed_memory(); 429 -> 466 MiB with this trim. Within a batch the
    // heap is still reused (compute 20% slower than without the trim, while
    // writing the PNGs takes 7x the compute).
    malloc_trim(0);
#endif
  }
  if (interrupted()) summary.interrupted = true;
  for (auto& [p, e] : entries) doc["images"].push_back(std::move(e));
  summary.images = positions.size();
  doc["summary"] = {{"images", summary.images},
                    {"written", doc["images"].size()},
                    {"failed", summary.failed},
                    {"skipped", summary.skipped},
                    {"interrupted", summary.interrupted}};
  const std::string text = doc.dump(2) + "\n";
  write_file_atomic(options.outdir + "/manifest" + suffix + ".json", text.data(), text.size());
  return summary;
}

size_t merge_manifests(const std::string& outdir) {
  const std::vector<fs::path> shards = files_named(outdir, "manifest.shard-", ".json");
  if (shards.empty()) {
    throw Error(ErrorCode::kInput, "merge: no manifest.shard-*.json in '" + outdir + "'");
  }
  json merged;
  std::map<size_t, json> images;
  json totals = {
      {"images", 0}, {"written", 0}, {"failed", 0}, {"skipped", 0}, {"interrupted", false}};
  for (const fs::path& p : shards) {
    std::ifstream in(p);
    json doc = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.contains("images")) {
      throw Error(ErrorCode::kInput, "merge: '" + p.string() + "' is not a cnnviz manifest");
    }
    if (merged.is_null()) {
      merged = doc;
    } else if (doc["method"] != merged["method"] || doc["model"] != merged["model"] ||
               doc["layers"] != merged["layers"] || doc["options"] != merged["options"]) {
      throw Error(ErrorCode::kInput, "merge: '" + p.string() +
                                         "' comes from a run with other settings than '" +
                                         shards[0].string() + "'");
    }
    for (json& e : doc["images"]) {
      const size_t index = e.value("index", images.size());
      images[index] = std::move(e);
    }
    for (const char* k : {"images", "written", "failed", "skipped"}) {
      totals[k] = totals[k].get<size_t>() + doc["summary"].value(k, size_t{0});
    }
    totals["interrupted"] =
        totals["interrupted"].get<bool>() || doc["summary"].value("interrupted", false);
  }
  merged["shard"] = nullptr;
  merged["merged_from"] = json::array();
  for (const fs::path& p : shards) merged["merged_from"].push_back(p.filename().string());
  merged["images"] = json::array();
  for (auto& [i, e] : images) merged["images"].push_back(std::move(e));
  merged["summary"] = totals;
  const std::string text = merged.dump(2) + "\n";
  write_file_atomic((fs::path(outdir) / "manifest.json").string(), text.data(), text.size());
  return images.size();
}

}  // namespace cnnviz
