#include "cnnviz/explain.h"

#include <ATen/ATen.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "cnnviz/batching.h"
#include "cnnviz/compute.h"
#include "cnnviz/engine.h"
#include "cnnviz/error.h"
#include "cnnviz/files.h"
#include "cnnviz/formats.h"
#include "cnnviz/image_targets.h"
#include "cnnviz/json_util.h"
#include "cnnviz/layers.h"
#include "cnnviz/loader.h"
#include "cnnviz/manifest.h"
#include "cnnviz/outputs.h"
#include "cnnviz/predict.h"
#include "cnnviz/runtime.h"
#include "cnnviz/stopwatch.h"
#include "cnnviz/targets.h"
#include "cnnviz/version.h"
#include "cnnviz/writer_pool.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {

namespace {

constexpr int kManifestPredictions = 5;

// Test hook: with CNNVIZ_TEST_WRITE_DELAY_MS=N in the environment each map
// takes N ms longer to write, so that a test can stop a run while its
// writers are behind the network. Nothing otherwise.
void test_write_delay() {
  static const long ms = [] {
    const char* v = std::getenv("CNNVIZ_TEST_WRITE_DELAY_MS");
    return v && *v ? std::atol(v) : 0L;
  }();
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// A manifest value of a method parameter.
json param_value(const ParamDef& p, const MethodParams& params) {
  return std::visit([&](auto field) { return json(params.*field); }, p.field);
}

// The variants a run writes, its maps' and then its layer maps' own.
std::vector<std::string> written_variants(const OutputSelection& s) {
  std::vector<std::string> all = s.variants;
  for (const std::string& v : s.layer_variants) {
    if (std::find(all.begin(), all.end(), v) == all.end()) all.push_back(v);
  }
  return all;
}

// One image on its way through the writers: the maps of every rank, the
// source they are drawn over (built once, by the first map that needs it),
// and the parts of its manifest entry known when it was computed.
struct ImageWork {
  size_t position = 0;
  json entry;  // image, index, dir, predictions, targets
  ImageDir dir;
  cv::Mat source_rgb;
  CropBox box;
  bool full_view = false;  // overlays need the network's view of the source
  std::once_flag view_once;
  SourceView view_;
  // [rank][map]: the raw maps (until written) and what writing them gave.
  std::vector<std::vector<FloatArray>> raw;
  std::vector<std::vector<MapFiles>> written;
  std::vector<MapTarget> targets;   // per rank
  std::vector<std::string> layers;  // per map
  std::atomic<size_t> remaining{0};

  const SourceView& view() {
    std::call_once(view_once, [this] {
      if (full_view) {
        view_ = make_source_view(source_rgb, box);
      } else {
        view_.box = box;
      }
    });
    return view_;
  }
};

// What the writer threads share with the loop that feeds them.
struct RunState {
  const MethodDef& method;
  const OutputSelection& selection;
  const OutputStyle& style;
  Journal& journal;
  const std::string& run_key;
  Progress& progress;
  std::mutex mutex;  // guards entries, bytes, files
  std::map<size_t, json>& entries;
  size_t bytes = 0, files = 0;

  // Called once every map of `w` is written: contact sheets, then the
  // image's manifest entry, journaled.
  void finish(ImageWork& w) {
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
        json sheet = write_contact_sheet(w.dir, method, w.targets[r], tiles);
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

  void write_one(const std::shared_ptr<ImageWork>& w, size_t r, size_t m) {
    test_write_delay();
    FloatArray raw = std::move(w->raw[r][m]);
    w->written[r][m] =
        write_map(w->dir, method, w->layers[m], w->targets[r], raw, w->view(), selection, style);
    if (--w->remaining == 0) finish(*w);
  }

  void fail(size_t position, const std::string& image, const std::string& message) {
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
};

FloatArray to_array(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kFloat).contiguous();
  const float* p = c.data_ptr<float>();
  return {c.sizes().vec(), std::vector<float>(p, p + c.numel())};
}

}  // namespace

ExplainSummary explain(const Model& model, const std::vector<std::string>& images,
                       const ExplainOptions& options, Progress& progress) {
  const MethodDef& method = find_method(options.method);
  if (!(options.alpha >= 0.0 && options.alpha <= 1.0)) {
    throw Error(ErrorCode::kUsage, "--alpha: must be between 0 and 1");
  }
  const OutputStyle style{Colormap(options.colormap), options.alpha};
  const OutputSelection selection = select_outputs(method, options.write, options.raw);
  const ModelInfo& info = model.info();
  std::optional<Unit> unit;
  if (!options.unit.empty()) {
    unit = parse_unit(options.unit);
    if (!options.classes.empty() || !options.targets_file.empty() || options.top != 1) {
      throw Error(ErrorCode::kUsage, "--unit '" + options.unit +
                                         "': replaces --class, --targets and --top (the unit is "
                                         "every image's one target)");
    }
    if (options.score && *options.score != ScoreKind::kLogit) {
      throw Error(ErrorCode::kUsage, "--score " + score_name(*options.score) +
                                         ": applies to classes; a --unit is explained by its "
                                         "value (--counterfactual: by its decrease)");
    }
  }
  const LayerRequest request{options.layers, options.all_layers};
  const std::vector<std::string> layers = unit ? unit_method_layers(model, method, request, *unit)
                                               : method_layers(model, method, request);
  Engine engine(model, layers, unit, method.lrp);

  // What the maps explain: checked before any work.
  const Score score =
      method_score(method, unit ? std::nullopt : options.score, options.counterfactual);
  const std::vector<size_t> positions = shard_positions(images.size(), options.shard);
  const TargetPlan plan(info, images, positions,
                        unit ? TargetRequest{{}, "", 1}
                             : TargetRequest{options.classes, options.targets_file, options.top},
                        progress);
  const size_t ranks = plan.max_ranks();
  make_output_dir(options.outdir);

  MethodParams params = options.params;
  params.mean = info.preprocess.mean;
  params.std = info.preprocess.std;
  params.score = score;
  if (method.check) method.check(params, info.preprocess.crop, info.preprocess.crop);

  const GraphReport& report = engine.report();
  json unguided = json::object();
  for (const auto& [op, count] : report.unguided) unguided[op] = count;
  const bool guided = method.guided(params);
  if (guided && !report.unguided.empty()) {
    std::string ops;
    for (const auto& [op, count] : report.unguided) {
      ops += (ops.empty() ? "" : ", ") + op + " x" + std::to_string(count);
    }
    progress.note("warning: model '" + info.name + "' has activations that " + method.name +
                  " has no rule for (" + ops + "); their backward stays the true gradient");
  }

  ExplainSummary summary;
  json& doc = summary.manifest;
  doc["format"] = format_name(Format::kManifest);
  doc["format_version"] = format_version(Format::kManifest);
  doc["cnnviz_version"] = kVersion;
  doc["model"] = model_json(info);
  doc["device"] = model.device().str();
  doc["method"] = method.name;
  doc["layers"] = layers;
  doc["guided_relus"] = report.guided_relus;
  doc["guided_relu6s"] = report.guided_relu6s;
  doc["unguided_activations"] = unguided;
  if (guided && !report.unguided.empty()) {
    doc["unguided_note"] = method.name +
                           "'s backward rule is defined for ReLU (and ReLU6) only; these "
                           "activations have none, so their backward is the true gradient";
  }
  doc["options"] = plan.options();
  doc["options"]["unit"] = unit ? json(unit->spec()) : json(nullptr);
  doc["options"].update(
      json{{"score", method.scores.empty() ? json(nullptr) : json(score_name(score.kind))},
           {"counterfactual", score.counterfactual},
           {"colormap", options.colormap},
           {"alpha", options.alpha},
           {"raw", selection.any("npy")},
           {"write", written_variants(selection)}});
  for (const std::string& name : method.params) {
    const ParamDef& p = find_param(name);
    if (p.changes_maps) doc["options"][p.name] = param_value(p, params);
  }
  doc["images"] = json::array();

  const std::vector<std::string> stems = unique_stems(images);
  const std::string suffix = options.shard.active() ? "." + options.shard.name() : "";
  doc["shard"] = options.shard.active() ? json(options.shard.name()) : json(nullptr);
  doc["inputs"] = images.size();
  const std::string run_key =
      dump_json(json({doc["model"]["path"], method.name, layers, doc["options"]}));

  // Entries of earlier runs with the same settings, for --skip-existing.
  std::map<std::string, json> previous;
  // One run (or shard) at a time in OUTDIR; image directories that are
  // links would send maps elsewhere: refused before any work.
  const RunLock lock(options.outdir, options.shard.active() ? options.shard.name() : "run");
  for (size_t p : positions) check_image_dir(options.outdir, stems[p]);
  if (options.skip_existing) previous = read_journals(options.outdir, run_key);
  Journal journal(options.outdir + "/journal" + suffix + ".jsonl");

  std::vector<size_t> bad_targets;  // positions whose targets do not exist
  for (size_t p : positions) {
    if (!plan.of(p).error.empty()) bad_targets.push_back(p);
  }
  summary.default_targets = plan.not_in_file();

  std::map<size_t, json> entries;  // by input position
  std::vector<std::string> to_load;
  std::vector<size_t> load_position;
  for (size_t p : positions) {
    if (!plan.of(p).error.empty()) continue;
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

  const bool layer_maps = method.output == MapKind::kLayerMap || method.layer_maps;
  const bool full_view = layer_maps && (selection.any("overlay") || selection.any("overlay_full") ||
                                        selection.any("contact"));
  LoaderOptions loader_options;
  loader_options.batch_size = std::max<size_t>(1, options.batch_size);
  loader_options.workers = options.decoders;
  loader_options.keep_rgb = full_view;
  loader_options.max_pixels = options.max_pixels;
  BatchLoader loader(to_load, info.preprocess, loader_options);

  RunState state{method, selection, style, journal, run_key, progress, {}, entries};
  for (size_t p : bad_targets) {
    state.fail(p, images[p], plan.of(p).error);
    ++summary.failed;
  }
  // Declared last: destroyed (its queue drained, its threads joined) before
  // anything its jobs use.
  const size_t writers = options.writers > 0 ? static_cast<size_t>(options.writers)
                                             : static_cast<size_t>(available_cores());
  // At most about one batch of maps waits: memory stays flat, and the next
  // batch still computes while the previous one is written.
  const size_t maps_per_image = static_cast<size_t>(ranks) * (layers.size() + 1);
  WriterPool pool(writers, std::max(2 * writers, loader_options.batch_size * maps_per_image));
  summary.writers = pool.threads();

  size_t chunk = loader_options.batch_size;  // images per pass; halved on out-of-memory
  Clock::time_point computed = Clock::now();
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
        state.fail(p, img.path, img.error->what());
        ++summary.failed;
      } else {
        ok.push_back(&img);
      }
    }
    // One batch (or, after running out of device memory, parts of one).
    auto process = [&](size_t begin, size_t end) {
      std::vector<at::Tensor> inputs;
      for (size_t i = begin; i < end; ++i) inputs.push_back(ok[i]->input);
      const Clock::time_point t0 = Clock::now();
      std::vector<size_t> batch_positions;
      for (size_t i = begin; i < end; ++i) batch_positions.push_back(ok[i]->index);
      const TargetChooser targets = plan.chooser(batch_positions);
      const BatchMaps maps = compute_maps(engine, method, at::stack(inputs), targets, params);
      std::vector<at::Tensor> rank_scores;  // [rank]: each image's differentiated score
      for (const std::vector<int64_t>& cls : maps.classes) {
        rank_scores.push_back(target_scores(maps.explained, cls, score));
      }
      const int64_t classes = maps.logits.size(1);
      const auto top =
          top_k(maps.logits, static_cast<int>(std::min<int64_t>(classes, kManifestPredictions)));
      const at::Tensor probs = at::softmax(maps.logits, 1);
      std::vector<std::shared_ptr<ImageWork>> work;
      for (size_t n = 0; n < end - begin; ++n) {
        LoadedImage& img = *ok[begin + n];
        auto w = std::make_shared<ImageWork>();
        w->position = img.index;
        w->dir = ImageDir{options.outdir, stems[img.index]};
        w->source_rgb = std::move(img.rgb);
        w->box = img.box;
        w->full_view = full_view;
        w->layers.clear();
        json predictions = json::array();
        for (size_t k = 0; k < top[n].size(); ++k) {
          predictions.push_back({{"rank", k + 1},
                                 {"index", top[n][k].index},
                                 {"label", info.label(top[n][k].index)},
                                 {"probability", top[n][k].probability}});
        }
        json target_list = json::array();
        const ImageTargets& given = plan.of(img.index);
        for (size_t r = 0; r < maps.classes.size(); ++r) {
          const int64_t cls = maps.classes[r][n];
          if (cls == kNoTarget) continue;  // another image of the batch has more targets
          const json score_value =
              method.scores.empty() ? json(nullptr) : json(rank_scores[r][n].item<double>());
          w->raw.emplace_back();
          for (const MethodMap& m : maps.maps[r]) w->raw.back().push_back(to_array(m.value[n]));
          if (unit) {
            w->targets.push_back(MapTarget{0, unit});
            target_list.push_back({{"class", nullptr},
                                   {"label", "unit " + unit->spec()},
                                   {"rank", nullptr},
                                   {"source", "unit"},
                                   {"spec", unit->spec()},
                                   {"unit",
                                    {{"layer", unit->layer},
                                     {"channel", unit->channel},
                                     {"y", unit->neuron() ? json(unit->y) : json(nullptr)},
                                     {"x", unit->neuron() ? json(unit->x) : json(nullptr)}}},
                                   {"score", score_value},
                                   {"value", maps.explained[n][0].item<double>()}});
            continue;
          }
          w->targets.push_back(MapTarget{cls, std::nullopt});
          const bool chosen = given.source == "top";
          target_list.push_back({{"class", cls},
                                 {"label", info.label(cls)},
                                 {"rank", chosen ? json(r + 1) : json(nullptr)},
                                 {"source", given.source},
                                 {"spec", chosen ? json(nullptr) : json(given.specs.at(r))},
                                 {"score", score_value},
                                 {"logit", maps.logits[n][cls].item<double>()},
                                 {"probability", probs[n][cls].item<double>()}});
        }
        if (!maps.maps.empty()) {
          for (const MethodMap& m : maps.maps[0]) w->layers.push_back(m.layer);
        }
        set_image_name(w->entry, img.path);
        w->entry.update(json{{"index", img.index},
                             {"dir", stems[img.index]},
                             {"input", input_json(info.preprocess.channels, img.grey)},
                             {"predictions", std::move(predictions)},
                             {"targets", std::move(target_list)}});
        w->written.resize(w->raw.size());
        size_t jobs = 0;
        for (size_t r = 0; r < w->raw.size(); ++r) {
          w->written[r].resize(w->raw[r].size());
          jobs += w->raw[r].size();
        }
        w->remaining = jobs;
        work.push_back(std::move(w));
      }
      summary.compute_ms += ms_since(t0);
      computed = Clock::now();
      std::vector<std::shared_ptr<ImageWork>> pending;
      size_t rows = 0, columns = 0;  // ranks, maps per rank
      for (const std::shared_ptr<ImageWork>& w : work) {
        std::error_code ec;
        check_image_dir(w->dir.outdir, w->dir.subdir);
        fs::create_directories(fs::path(w->dir.outdir) / w->dir.subdir, ec);
        if (ec) {
          throw Error(ErrorCode::kOutput, "cannot create output directory '" + w->dir.outdir + "/" +
                                              w->dir.subdir + "': " + ec.message());
        }
        if (w->remaining == 0) {
          state.finish(*w);
          continue;
        }
        pending.push_back(w);
        rows = std::max(rows, w->raw.size());
        for (const auto& maps : w->raw) columns = std::max(columns, maps.size());
      }
      // Map by map across the images: writers working at the same time are
      // then mostly in different directories, which the file system handles
      // without making them wait for each other.
      const Clock::time_point t = Clock::now();
      for (size_t r = 0; r < rows; ++r) {
        for (size_t m = 0; m < columns; ++m) {
          for (const std::shared_ptr<ImageWork>& w : pending) {
            if (r < w->raw.size() && m < w->raw[r].size()) {
              pool.submit([&state, w, r, m] { state.write_one(w, r, m); });
            }
          }
        }
      }
      summary.wait_ms += ms_since(t);
    };
    run_in_parts(ok.size(), chunk, progress, process, [&](size_t i, const OutOfMemory& e) {
      state.fail(ok[i]->index, ok[i]->path, "image '" + ok[i]->path + "': " + e.what());
      ++summary.failed;
    });
    pool.check();
#ifdef __GLIBC__
    // Hand the batch's freed buffers back to the system: without it the
    // heap fragments and peak memory creeps up with the number of images.
    // Measured with squeezenet1_1, 20 -> 500 images: 519 -> 789 MiB with
    // glibc's malloc as it starts, 453 -> 1223 MiB with the heap reuse of
    // reuse_freed_memory(); 429 -> 466 MiB with this trim.
    malloc_trim(0);
#endif
  }
  {
    const Clock::time_point t = Clock::now();
    pool.wait();
    summary.wait_ms += ms_since(t);
    summary.tail_ms = ms_since(computed);
  }
  if (interrupted()) summary.interrupted = true;
  summary.write_ms = pool.busy_ms();
  summary.write_cpu_ms = pool.cpu_ms();
  summary.bytes_written = state.bytes;
  summary.files_written = state.files;
  for (auto& [p, e] : entries) doc["images"].push_back(std::move(e));
  summary.images = positions.size();
  doc["summary"] = {
      {"images", summary.images},
      {"written", doc["images"].size()},
      {"failed", summary.failed},
      {"skipped", summary.skipped},
      {"default_targets", plan.has_file() ? json(summary.default_targets) : json(nullptr)},
      {"interrupted", summary.interrupted}};
  const std::string text = dump_json(doc, 2) + "\n";
  write_file_atomic(options.outdir + "/manifest" + suffix + ".json", text.data(), text.size());
  return summary;
}

}  // namespace cnnviz
