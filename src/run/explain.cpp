// The explain run, step by step: plan (resolve and check everything the user
// asked for), the manifest's header, the resume set, then batch by batch the
// network on this thread and the maps on the writer pool, and the manifest.
// The per-image work the writers do is in explain_work.cpp.
#include "cnnviz/run/explain.h"

#include <ATen/ATen.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

#include "batching.h"
#include "cnnviz/core/engine.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/formats.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/core/stopwatch.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/core/version.h"
#include "cnnviz/io/files.h"
#include "cnnviz/io/region.h"
#include "cnnviz/methods/compute.h"
#include "cnnviz/methods/layers.h"
#include "cnnviz/run/detect.h"
#include "cnnviz/run/image_targets.h"
#include "cnnviz/run/manifest.h"
#include "cnnviz/run/outputs.h"
#include "explain_work.h"
#include "loader.h"
#include "writer_pool.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {

namespace {

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

// --unit, checked against the options it excludes.
std::optional<Unit> checked_unit(const ExplainOptions& o) {
  if (o.unit.empty()) return std::nullopt;
  Unit unit = parse_unit(o.unit);
  if (!o.classes.empty() || !o.targets_file.empty() || o.top != 1 || !o.boxes.empty()) {
    throw Error(ErrorCode::kUsage, "--unit '" + o.unit +
                                       "': replaces --class, --targets, --top and --box (the "
                                       "unit is every image's one target)");
  }
  if (o.score && *o.score != ScoreKind::kLogit) {
    throw Error(ErrorCode::kUsage, "--score " + score_name(*o.score) +
                                       ": applies to classes; a --unit is explained by its "
                                       "value (--counterfactual: by its decrease)");
  }
  return unit;
}

// What a segmenter's or detector's maps differentiate: the sum of the
// target class's logits over its pixels (targets.h), or the detection's
// score as the model gives it; never a softmax of those.
Score task_score(const MethodDef& method, const ExplainOptions& o, Task task) {
  if (o.score && *o.score != ScoreKind::kLogit) {
    throw Error(ErrorCode::kUsage,
                "--score " + score_name(*o.score) +
                    (task == Task::kSegment
                         ? ": a segmenter's target is the sum of its class's logits over the "
                           "class's pixels (only --score logit applies)"
                         : ": a detection's target is its score as the model gives it (only "
                           "--score logit applies)"));
  }
  Score score = method_score(method, std::nullopt, o.counterfactual);
  if (!method.scores.empty()) score.kind = ScoreKind::kLogit;
  return score;
}

// A detector's targets are its detections (--box, --targets); --box and
// --iou apply to detectors only.
void check_detector_targets(const Model& model, const ExplainOptions& o) {
  const bool detector = model.info().task == Task::kDetect;
  if (o.match_iou && !(*o.match_iou > 0.0 && *o.match_iou <= 1.0)) {
    throw Error(ErrorCode::kUsage, "--iou " + std::to_string(*o.match_iou) +
                                       ": must be above 0 and at most 1");
  }
  if (!detector) {
    if (!o.boxes.empty() || o.match_iou) {
      throw Error(ErrorCode::kUsage,
                  (!o.boxes.empty() ? "--box '" + o.boxes.front() + "'" : std::string("--iou")) +
                      ": applies to detectors; model '" + model.info().name + "' is not one");
    }
    return;
  }
  if (!o.classes.empty() || o.top != 1) {
    throw Error(ErrorCode::kUsage,
                std::string(!o.classes.empty() ? "--class" : "--top") +
                    ": a detector's targets are its detections (--box K, the K-th best, or "
                    "--box x1,y1,x2,y2[:label]; default: every one)");
  }
}

// --region, read once, for a segmenter's class targets only.
std::optional<Region> checked_region(const Model& model, const ExplainOptions& o) {
  if (o.region.empty()) return std::nullopt;
  if (model.info().task != Task::kSegment) {
    throw Error(ErrorCode::kUsage, "--region '" + o.region + "': applies to segmenters; model '" +
                                       model.info().name + "' is a " +
                                       (model.info().task == Task::kDetect ? "detector"
                                                                           : "classifier"));
  }
  if (!o.unit.empty()) {
    throw Error(ErrorCode::kUsage, "--region '" + o.region + "': applies to class targets, not "
                                       "a --unit");
  }
  return read_region(o.region);
}

// An image's box queries (--box x1,y1,x2,y2, a targets file's), in the
// network input's pixels; none when its targets are detection indices.
std::vector<BoxQuery> input_queries(const ImageTargets& targets, const CropBox& box) {
  std::vector<BoxQuery> queries;
  for (const BoxSpec& b : targets.boxes) {
    if (b.box) queries.push_back(to_input(*b.box, box));
  }
  return queries;
}

// What a run will do, resolved and checked before any work.
struct Plan {
  const MethodDef& method;
  OutputStyle style;
  OutputSelection selection;
  std::optional<Unit> unit;
  std::vector<std::string> layers;
  Score score;
  std::vector<size_t> positions;  // this shard's images
  std::unique_ptr<TargetPlan> targets;
  MethodParams params;
  std::vector<std::string> stems;  // each image's directory, unique over the whole list
  bool full_view = false;          // overlays: the loader keeps the decoded source
  std::optional<Region> region;    // a segmenter's --region
  int64_t background = -1;         // a segmenter's background class: never a default target
};

Plan make_plan(const Model& model, const std::vector<std::string>& images, const ExplainOptions& o,
               Progress& progress) {
  const MethodDef& method = find_method(o.method);
  if (!(o.alpha >= 0.0 && o.alpha <= 1.0)) {
    throw Error(ErrorCode::kUsage, "--alpha: must be between 0 and 1");
  }
  Plan p{method,
         OutputStyle{Colormap(o.colormap), o.alpha},
         select_outputs(method, o.write, o.raw),
         checked_unit(o),
         {},
         {},
         {},
         nullptr,
         {},
         {},
         false,
         std::nullopt,
         -1};
  const LayerRequest request{o.layers, o.all_layers};
  p.layers = p.unit ? unit_method_layers(model, method, request, *p.unit)
                    : method_layers(model, method, request);
  const Task task = model.info().task;
  check_detector_targets(model, o);
  p.score = task != Task::kClassify
                ? task_score(method, o, task)
                : method_score(method, p.unit ? std::nullopt : o.score, o.counterfactual);
  p.region = checked_region(model, o);
  // A --unit is every image's one target: no class to leave out.
  if (task == Task::kSegment && !p.unit) p.background = model.info().background_class();
  p.positions = shard_positions(images.size(), o.shard);
  p.targets = std::make_unique<TargetPlan>(
      model.info(), images, p.positions,
      p.unit ? TargetRequest{{}, "", 1, {}}
             : TargetRequest{o.classes, o.targets_file, o.top, o.boxes},
      progress);
  p.params = run_params(method, o.params, model.info(), p.score);
  const DetectSettings own = detect_defaults(model.info());
  p.params.detect.iou = own.iou;
  p.params.detect.multi_label = own.multi_label;
  p.params.detect.min_score = o.min_score;
  p.params.detect.match_iou = o.match_iou.value_or(p.params.detect.match_iou);
  p.stems = unique_stems(images);
  const bool layer_maps = method.output == MapKind::kLayerMap || method.layer_maps;
  p.full_view = layer_maps && (p.selection.any("overlay") || p.selection.any("overlay_full") ||
                               p.selection.any("contact"));
  return p;
}

// "relu x2, gelu x12" for the activations the method's backward rule
// cannot treat; warned once when the method is guided.
json unguided_activations(const GraphReport& report, const Plan& plan, const ModelInfo& info,
                          Progress& progress) {
  json unguided = json::object();
  std::string ops;
  for (const auto& [op, count] : report.unguided) {
    unguided[op] = count;
    ops += (ops.empty() ? "" : ", ") + op + " x" + std::to_string(count);
  }
  if (plan.method.guided(plan.params) && !report.unguided.empty()) {
    progress.note("warning: model '" + info.name + "' has activations that " + plan.method.name +
                  " has no rule for (" + ops + "); their backward stays the true gradient");
  }
  return unguided;
}

// The manifest without its images and summary.
json manifest_header(const Model& model, const Engine& engine, const Plan& plan,
                     const ExplainOptions& o, size_t inputs, Progress& progress) {
  const GraphReport& report = engine.report();
  const MethodDef& method = plan.method;
  json doc;
  doc["format"] = format_name(Format::kManifest);
  doc["format_version"] = format_version(Format::kManifest);
  doc["cnnviz_version"] = kVersion;
  doc["model"] = model_json(model.info());
  doc["device"] = model.device().str();
  doc["method"] = method.name;
  doc["layers"] = plan.layers;
  doc["guided_relus"] = report.guided_relus;
  doc["guided_relu6s"] = report.guided_relu6s;
  doc["unguided_activations"] = unguided_activations(report, plan, model.info(), progress);
  if (method.guided(plan.params) && !report.unguided.empty()) {
    doc["unguided_note"] = method.name +
                           "'s backward rule is defined for ReLU (and ReLU6) only; these "
                           "activations have none, so their backward is the true gradient";
  }
  doc["options"] = plan.targets->options();
  doc["options"]["unit"] = plan.unit ? json(plan.unit->spec()) : json(nullptr);
  doc["options"].update(
      json{{"score", method.scores.empty() ? json(nullptr) : json(score_name(plan.score.kind))},
           {"counterfactual", plan.score.counterfactual},
           {"colormap", o.colormap},
           {"alpha", o.alpha},
           {"raw", plan.selection.any("npy")},
           {"write", written_variants(plan.selection)}});
  for (const std::string& name : method.params) {
    const ParamDef& p = find_param(name);
    if (p.changes_maps) doc["options"][p.name] = param_value(p, plan.params);
  }
  if (model.info().task == Task::kDetect) {  // which detections, and which match a box
    doc["options"]["min_score"] = plan.params.detect.min_score;
    doc["options"]["iou"] = plan.params.detect.match_iou;
    doc["options"]["nms_iou"] = plan.params.detect.iou;
    doc["options"]["multi_label"] = plan.params.detect.multi_label;
  }
  doc["images"] = json::array();
  doc["shard"] = o.shard.active() ? json(o.shard.name()) : json(nullptr);
  doc["inputs"] = inputs;
  return doc;
}

// Which of the shard's images need work: those with targets that exist and
// no complete outputs from an earlier run of the same settings (whose
// entries are kept as they are, counted as skipped).
LoadList images_to_load(const std::vector<std::string>& images, const Plan& plan,
                        const std::map<std::string, json>& previous, const std::string& outdir,
                        std::map<size_t, json>& entries, ExplainSummary& summary,
                        Progress& progress) {
  LoadList list;
  for (size_t p : plan.positions) {
    if (!plan.targets->of(p).error.empty()) continue;
    auto it = previous.find(images[p]);
    if (it != previous.end() && outputs_complete(outdir, it->second)) {
      entries[p] = it->second;
      entries[p]["index"] = p;
      ++summary.skipped;
      progress.skipped();
    } else {
      list.add(p, images[p]);
    }
  }
  return list;
}

// Computes batches of images and hands their maps to the writer pool.
class BatchRunner {
 public:
  BatchRunner(const Model& model, const Engine& engine, const Plan& plan, const std::string& outdir,
              ExplainWriters& writers, WriterPool& pool, ExplainSummary& summary)
      : model_(model),
        engine_(engine),
        plan_(plan),
        outdir_(outdir),
        writers_(writers),
        pool_(pool),
        summary_(summary) {}

  // Images [begin, end) of `ok`: one pass, then their maps to the writers.
  void run(const std::vector<LoadedImage*>& ok, size_t begin, size_t end) {
    const Clock::time_point t0 = Clock::now();
    std::vector<at::Tensor> inputs;
    std::vector<size_t> positions;
    for (size_t i = begin; i < end; ++i) {
      inputs.push_back(ok[i]->input);
      positions.push_back(ok[i]->index);
    }
    MethodParams params = plan_.params;
    if (plan_.region) params.region = region_on_input(*plan_.region, ok[begin]->box);
    for (size_t i = begin; i < end; ++i) {
      params.detect.queries.push_back(input_queries(plan_.targets->of(ok[i]->index), ok[i]->box));
    }
    const BatchMaps maps = compute_maps(
        engine_, plan_.method, at::stack(inputs),
        model_.info().task == Task::kDetect
            // A map that does not depend on its target (Eigen-CAM): the best detection's.
            ? plan_.targets->chooser(positions, plan_.method.scores.empty() ? 1 : kMaxDetections)
            : excluding_class(plan_.targets->chooser(positions), plan_.background),
        params);
    note_segment_targets(maps, ok, begin);
    note_detection_targets(maps, ok, begin);
    const BatchFacts facts =
        batch_facts(model_.info(), *plan_.targets, plan_.method, plan_.unit, maps, plan_.score);
    std::vector<std::shared_ptr<ImageWork>> work;
    for (size_t n = 0; n < end - begin; ++n) {
      LoadedImage& img = *ok[begin + n];
      work.push_back(make_image_work(facts, n, img, ImageDir{outdir_, plan_.stems[img.index]},
                                     plan_.full_view));
    }
    summary_.batch_compute_ms.push_back(ms_since(t0));
    summary_.compute_ms += summary_.batch_compute_ms.back();
    computed = Clock::now();
    submit(work);
  }

  Clock::time_point computed = Clock::now();  // when the last batch's maps were ready

 private:
  // Map by map across the images: writers working at the same time are then
  // mostly in different directories, which the file system handles without
  // making them wait for each other.
  void submit(const std::vector<std::shared_ptr<ImageWork>>& work) {
    std::vector<std::shared_ptr<ImageWork>> pending;
    size_t rows = 0, columns = 0;  // ranks, maps per rank
    for (const std::shared_ptr<ImageWork>& w : work) {
      make_image_dir(w->dir);
      if (w->remaining == 0) {
        writers_.finish(*w);
        continue;
      }
      pending.push_back(w);
      rows = std::max(rows, w->raw.size());
      for (const auto& maps : w->raw) columns = std::max(columns, maps.size());
    }
    const Clock::time_point t = Clock::now();
    for (size_t r = 0; r < rows; ++r) {
      for (size_t m = 0; m < columns; ++m) {
        for (const std::shared_ptr<ImageWork>& w : pending) {
          if (r < w->raw.size() && m < w->raw[r].size()) {
            ExplainWriters* writers = &writers_;
            pool_.submit([writers, w, r, m] { writers->write_one(w, r, m); });
          }
        }
      }
    }
    summary_.wait_ms += ms_since(t);
  }

  // A segmenter's images the default targets left without any (every pixel
  // is the background: their entries list no targets), and its given
  // classes that have no pixel (their maps are zero).
  void note_segment_targets(const BatchMaps& maps, const std::vector<LoadedImage*>& ok,
                            size_t begin) {
    if (model_.info().task != Task::kSegment || maps.classes.empty()) return;
    const std::string where = plan_.region ? " in the region" : "";
    for (size_t n = 0; n < maps.classes.front().size(); ++n) {
      const std::string image = "image '" + ok[begin + n]->path + "': ";
      bool any = false;
      for (const std::vector<int64_t>& rank : maps.classes) {
        if (rank[n] == kNoTarget) continue;
        any = true;
        if (std::isinf(maps.logits[static_cast<int64_t>(n)][rank[n]].item<double>())) {
          writers_.progress.note(image + "class " + std::to_string(rank[n]) + " (" +
                                 model_.info().label(rank[n]) + ") has no pixel" + where +
                                 ": its maps are zero");
        }
      }
      if (!any) writers_.progress.note(image + "no class but the background" + where +
                                       ": nothing to explain");
    }
  }

  // A detector's images without a detection, or without the one --box asks
  // for, and its boxes that match no detection: their entries list no such
  // target.
  void note_detection_targets(const BatchMaps& maps, const std::vector<LoadedImage*>& ok,
                              size_t begin) {
    for (size_t n = 0; n < maps.detections.size(); ++n) {
      const std::string image = "image '" + ok[begin + n]->path + "': ";
      const size_t found = maps.detections[n].size();
      if (found == 0) {
        writers_.progress.note(image + "no box scores above " + score_text(plan_.params) +
                               ": nothing to explain");
        continue;
      }
      const std::vector<BoxSpec>& boxes = plan_.targets->of(ok[begin + n]->index).boxes;
      for (size_t k = 0; k < boxes.size(); ++k) {
        const BoxSpec& b = boxes[k];
        if (!b.box && b.index >= static_cast<int64_t>(found)) {
          writers_.progress.note(image + b.where + " '" + b.text + "': it has " +
                                 std::to_string(found) + " detection" + (found == 1 ? "" : "s") +
                                 " (0 to " + std::to_string(found - 1) + ")");
        } else if (b.box && maps.groups.at(n).at(k).empty()) {
          char iou[32];
          std::snprintf(iou, sizeof(iou), "%.2f", plan_.params.detect.match_iou);
          writers_.progress.note(image + b.where + " '" + b.text +
                                 "': matches no detection (IoU >= " + iou + ")");
        }
      }
    }
  }

  static std::string score_text(const MethodParams& params) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.2f", params.detect.min_score);
    return text;
  }

  static void make_image_dir(const ImageDir& dir) {
    check_image_dir(dir.outdir, dir.subdir);
    std::error_code ec;
    fs::create_directories(fs::path(dir.outdir) / dir.subdir, ec);
    if (ec) {
      throw Error(ErrorCode::kOutput, "cannot create output directory '" + dir.outdir + "/" +
                                          dir.subdir + "': " + ec.message());
    }
  }

  const Model& model_;
  const Engine& engine_;
  const Plan& plan_;
  const std::string& outdir_;
  ExplainWriters& writers_;
  WriterPool& pool_;
  ExplainSummary& summary_;
};

// The process's resident memory, in bytes (0 when it cannot be read).
size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages_total = 0, pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0;
  return pages_resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Hands freed buffers back to the system once the process has grown by half
// past its size after the first two batches: the heap then fragments rather
// than being reused, and peak memory would creep up with the number of
// images (squeezenet1_1, 20 -> 500 images: 453 -> 1223 MiB with the heap
// reuse of reuse_freed_memory() and no trim). Trimming after every batch
// bounds it as well (429 -> 466 MiB), but makes the next batch fault every
// page of its activations in again: on ViT-B/16, 45,000 page faults and
// 320 ms on top of a 550 ms batch.
class FreedMemory {
 public:
  void after_batch() {
#ifdef __GLIBC__
    const size_t resident = resident_bytes();
    if (++batches_ <= 2) {
      reference_ = std::max(reference_, resident);
    } else if (resident > reference_ + reference_ / 2) {
      malloc_trim(0);
    }
#endif
  }

 private:
  size_t batches_ = 0;
  size_t reference_ = 0;
};

// The writer pool for a run: at most about one batch of maps waits, so
// memory stays flat while the next batch computes.
std::unique_ptr<WriterPool> make_pool(const ExplainOptions& o, const Plan& plan) {
  const size_t writers =
      o.writers > 0 ? static_cast<size_t>(o.writers) : static_cast<size_t>(available_cores());
  const size_t maps_per_image = plan.targets->max_ranks() * (plan.layers.size() + 1);
  const size_t batch = std::max<size_t>(1, o.batch_size);  // at most
  return std::make_unique<WriterPool>(writers, std::max(2 * writers, batch * maps_per_image));
}

// The images of `ok` that --region fits; the others fail, each with its own
// line.
template <typename Failed>
std::vector<LoadedImage*> fitting_region(const std::vector<LoadedImage*>& ok, const Region& region,
                                         Failed&& failed) {
  std::vector<LoadedImage*> fit;
  for (LoadedImage* img : ok) {
    try {
      region_on_input(region, img->box);
      fit.push_back(img);
    } catch (const Error& e) {
      failed(img->index, img->path, "image '" + img->path + "': " + e.what());
    }
  }
  return fit;
}

// The images of `ok` whose box queries lie inside them; the others fail,
// each with its own line.
template <typename Failed>
std::vector<LoadedImage*> fitting_boxes(const std::vector<LoadedImage*>& ok, const TargetPlan& plan,
                                        Failed&& failed) {
  std::vector<LoadedImage*> fit;
  for (LoadedImage* img : ok) {
    const CropBox& size = img->box;
    const std::vector<BoxSpec>& boxes = plan.of(img->index).boxes;
    const auto outside = std::find_if(boxes.begin(), boxes.end(), [&](const BoxSpec& b) {
      return b.box && !inside_image(*b.box, size);
    });
    if (outside == boxes.end()) {
      fit.push_back(img);
      continue;
    }
    failed(img->index, img->path,
           "image '" + img->path + "': " + outside->where + " '" + outside->text +
               "': lies outside the image (" + std::to_string(size.src_w) + " x " +
               std::to_string(size.src_h) + " pixels)");
  }
  return fit;
}

// Every batch of `list` through the network and onto the writers; stops at
// the next batch when interrupted.
void run_batches(const Model& model, const Engine& engine, const Plan& plan, const LoadList& list,
                 const ExplainOptions& o, ExplainWriters& writers, ExplainSummary& summary) {
  LoaderOptions loader_options;
  loader_options.batch_size = images_per_pass(model.info().preprocess, o.batch_size);
  loader_options.workers = o.decoders;
  loader_options.keep_rgb = plan.full_view;
  loader_options.max_pixels = o.max_pixels;
  BatchLoader loader(list.paths, model.info().preprocess, loader_options);
  // Declared after what its jobs use: destroyed (drained, joined) first.
  std::unique_ptr<WriterPool> pool = make_pool(o, plan);
  summary.writers = pool->threads();
  BatchRunner runner(model, engine, plan, o.outdir, writers, *pool, summary);
  auto failed = [&](size_t position, const std::string& path, const std::string& message) {
    writers.fail(position, path, message);
    ++summary.failed;
  };
  size_t chunk = loader_options.batch_size;  // images per pass; halved on out-of-memory
  FreedMemory freed;
  for (std::vector<LoadedImage> batch = loader.next(); !batch.empty(); batch = loader.next()) {
    if (interrupted()) {
      summary.interrupted = true;
      break;
    }
    std::vector<LoadedImage*> ok = place_loaded(
        batch, list, [&](LoadedImage& img) { failed(img.index, img.path, img.error->what()); });
    if (plan.region) ok = fitting_region(ok, *plan.region, failed);
    if (model.info().task == Task::kDetect) ok = fitting_boxes(ok, *plan.targets, failed);
    run_in_parts(
        ok.size(), chunk, writers.progress,
        [&](size_t begin, size_t end) { runner.run(ok, begin, end); },
        [&](size_t i, const OutOfMemory& e) {
          failed(ok[i]->index, ok[i]->path, "image '" + ok[i]->path + "': " + e.what());
        });
    pool->check();
    freed.after_batch();
  }
  const Clock::time_point t = Clock::now();
  pool->wait();
  summary.wait_ms += ms_since(t);
  summary.tail_ms = ms_since(runner.computed);
  summary.write_ms = pool->busy_ms();
  summary.write_cpu_ms = pool->cpu_ms();
}

// The manifest's images and summary, written atomically.
void write_manifest(json& doc, std::map<size_t, json>& entries, const Plan& plan,
                    const ExplainOptions& o, ExplainSummary& summary) {
  size_t done = 0;  // entries without an error, the skipped ones included
  for (auto& [p, e] : entries) {
    if (!e.contains("error")) ++done;
    doc["images"].push_back(std::move(e));
  }
  summary.images = plan.positions.size();
  doc["summary"] = {
      {"images", summary.images},
      // This run's work, as the command line's "N done" counts it: not the
      // skipped images, which an earlier run wrote.
      {"written", done - std::min(done, summary.skipped)},
      {"failed", summary.failed},
      {"skipped", summary.skipped},
      {"default_targets", plan.targets->has_file() ? json(summary.default_targets) : json(nullptr)},
      {"interrupted", summary.interrupted}};
  const std::string suffix = o.shard.active() ? "." + o.shard.name() : "";
  const std::string text = dump_json(doc, 2) + "\n";
  write_file_atomic(o.outdir + "/manifest" + suffix + ".json", text.data(), text.size());
}

}  // namespace

ExplainSummary explain(const Model& model, const std::vector<std::string>& images,
                       const ExplainOptions& options, Progress& progress) {
  const Plan plan = make_plan(model, images, options, progress);
  const Engine engine(model, plan.layers, plan.unit, plan.method.lrp,
                      !plan.method.forward_only());
  const OutputDir outdir(options.outdir);
  ExplainSummary summary;
  summary.manifest = manifest_header(model, engine, plan, options, images.size(), progress);
  const std::string run_key = dump_json(json({summary.manifest["model"]["path"], plan.method.name,
                                              plan.layers, summary.manifest["options"]}));

  // One run (or shard) at a time in OUTDIR; image directories that are
  // links would send maps elsewhere: refused before any work.
  const RunLock lock(options.outdir, options.shard.active() ? options.shard.name() : "run");
  for (size_t p : plan.positions) check_image_dir(options.outdir, plan.stems[p]);
  std::map<std::string, json> previous;  // earlier runs' entries, for --skip-existing
  if (options.skip_existing) previous = read_journals(options.outdir, run_key);
  const std::string suffix = options.shard.active() ? "." + options.shard.name() : "";
  Journal journal(options.outdir + "/journal" + suffix + ".jsonl");

  std::map<size_t, json> entries;  // by input position
  ExplainWriters writers{plan.method,
                         plan.selection,
                         plan.style,
                         journal,
                         run_key,
                         progress,
                         entries,
                         options.test_write_delay_ms,
                         {},
                         0,
                         0};
  for (size_t p : plan.positions) {
    if (plan.targets->of(p).error.empty()) continue;
    writers.fail(p, images[p], plan.targets->of(p).error);
    ++summary.failed;
  }
  summary.default_targets = plan.targets->not_in_file();
  const LoadList list =
      images_to_load(images, plan, previous, options.outdir, entries, summary, progress);
  run_batches(model, engine, plan, list, options, writers, summary);
  if (interrupted()) summary.interrupted = true;
  summary.bytes_written = writers.bytes;
  summary.files_written = writers.files;
  write_manifest(summary.manifest, entries, plan, options, summary);
  return summary;
}

std::string where_files_went(const ExplainSummary& summary, const std::string& outdir) {
  if (summary.files_written == 0) return "";
  const std::string root = (fs::path(outdir) / "").string();
  using Json = nlohmann::ordered_json;
  std::vector<const Json*> written;
  const auto images = summary.manifest.find("images");
  if (images == summary.manifest.end() || !images->is_array()) return "";
  for (const Json& image : *images) {
    const auto files = image.find("files");
    if (files != image.end() && files->is_array() && !files->empty()) written.push_back(&image);
  }
  const std::string files = std::to_string(summary.files_written) + " files";
  if (written.size() != 1) {
    return "wrote " + files + " for " + std::to_string(written.size()) + " images to " + root +
           "; 'cnnviz report " + outdir + "' makes a page of them";
  }
  const Json& image = *written[0];
  std::string line = "wrote " + files + " to " + root + image.value("dir", "") + "/";
  for (const Json& f : image["files"]) {
    if (f.value("variant", "") == "contact") {
      return line + "; start with " + root + f.value("path", "");
    }
  }
  return line;
}

}  // namespace cnnviz
