#include "detect.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <ostream>

#include "cnnviz/core/error.h"
#include "cnnviz/core/formats.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/version.h"
#include "cnnviz/run/detect.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/manifest.h"
#include "cnnviz/run/progress.h"
#include "image_results.h"

namespace cnnviz::cli {

namespace {

using json = nlohmann::ordered_json;

void print_text(std::ostream& out, const DetectResult& r, const ModelInfo& info) {
  print_image_line(out, r);
  char line[96];
  for (const Detection& d : r.detections) {
    std::snprintf(line, sizeof(line), "  %.4f  [%7.1f, %7.1f, %7.1f, %7.1f]  %4lld  ", d.score, d.x1,
                  d.y1, d.x2, d.y2, static_cast<long long>(d.label));
    out << line << info.label(d.label) << "\n";
  }
}

json result_json(const DetectResult& r, const ModelInfo& info) {
  json j;
  if (!image_entry(r, info, j)) return j;
  j["detections"] = json::array();
  for (size_t k = 0; k < r.detections.size(); ++k) {
    const Detection& d = r.detections[k];
    j["detections"].push_back({{"index", k},
                               {"box", {d.x1, d.y1, d.x2, d.y2}},
                               {"score", d.score},
                               {"class", d.label},
                               {"label", info.label(d.label)},
                               {"anchor", d.anchor}});
  }
  j["boxes"] = r.boxes.empty() ? json(nullptr) : json(r.boxes);
  return j;
}

json detect_json(const DetectSummary& summary, const ModelInfo& info, const DetectOptions& run) {
  const json fields = {{"layout", layout_name(info.layout)},
                       {"settings",
                        {{"min_score", run.settings.min_score},
                         {"iou", run.settings.iou},
                         {"multi_label", run.settings.multi_label},
                         {"max_detections", run.settings.max_detections}}},
                       {"outdir", run.outdir.empty() ? json(nullptr) : json(run.outdir)}};
  return run_document(Format::kDetect, summary, info, fields,
                      [&](const DetectResult& r) { return result_json(r, info); });
}

// --layout makes any model a detector read that way: for a YOLO export
// without metadata, with the letterbox YOLO takes.
void apply_layout(const ModelOptions& opts, ModelInfo& info) {
  const DetectLayout layout = detect_layout(opts);
  if (layout == DetectLayout::kNone) return;
  info.layout = layout;
  info.task = Task::kDetect;
  if (info.preprocess.channels != 3) {
    throw Error(ErrorCode::kUsage,
                std::string("--layout ") + layout_name(layout) + ": a detector takes RGB images");
  }
  info.preprocess.letterbox = true;
  info.preprocess.crop = 0;
}

}  // namespace

CLI::App* setup_detect(CLI::App& app, DetectCliOptions& opts) {
  CLI::App* sub = app.add_subcommand(
      "detect", "Find boxes with a detector: label, score and box of each, and pictures");
  add_input_options(*sub, opts.inputs);
  add_model_options(*sub, opts.model, /*channels_flag=*/true, /*detector_layouts=*/true);
  sub->add_option("--min-score", opts.min_score, "Keep boxes scoring above this")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  sub->add_option("--iou", opts.iou,
                  "Non-maximum suppression: drop a box overlapping a better one of its class by "
                  "more than this intersection over union (default: the model's own, else 0.45)")
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--max-detections", opts.max_detections, "Keep at most this many boxes per image")
      ->check(CLI::Range(1, kMaxDetections))
      ->capture_default_str();
  sub->add_option("--batch-size", opts.batch_size, "Images per forward pass")
      ->check(CLI::Range(1, kMaxClassifyBatch))
      ->capture_default_str();
  sub->add_option("--decoders", opts.decoders,
                  "Threads decoding images ahead of the network (default: every core)")
      ->check(CLI::Range(1, kMaxThreads));
  sub->add_option("-o,--outdir", opts.outdir, "Write STEM_boxes.png (the image with its boxes) here");
  sub->add_flag("--json", opts.json, "Print one JSON document instead of text (docs/formats.md)");
  return sub;
}

int run_detect(const DetectCliOptions& opts, std::ostream& out, std::ostream& err) {
  const std::vector<std::string> all = collect_inputs(opts.inputs, err);
  const Shard shard = parse_shard(opts.inputs.shard);
  std::vector<std::string> images;
  for (size_t p : shard_positions(all.size(), shard)) images.push_back(all[p]);
  Model model = open_model(opts.model, err);
  apply_layout(opts.model, model.mutable_info());
  const ModelInfo& info = model.info();
  DetectOptions run;
  run.batch_size = static_cast<size_t>(opts.batch_size);
  run.decoders = opts.decoders;
  run.max_pixels = opts.inputs.max_pixels;
  run.outdir = opts.outdir;
  run.settings = detect_defaults(info);
  run.settings.min_score = opts.min_score;
  run.settings.iou = opts.iou.value_or(run.settings.iou);
  run.settings.max_detections = opts.max_detections;
  Progress progress(err, images.size(), !opts.inputs.quiet && stderr_is_terminal());
  const DetectSummary summary = detect(model, images, run, progress, [&](const DetectResult& r) {
    if (!opts.json) print_text(out, r, info);
  });
  if (opts.json) out << dump_json(detect_json(summary, info, run), 2) << "\n";
  if (!opts.inputs.quiet && (summary.interrupted || summary.failed > 0 || images.size() > 1)) {
    progress.summary(summary.interrupted);
  }
  if (summary.interrupted) return kInterruptedExit;
  return summary.failed > 0 ? static_cast<int>(ErrorCode::kInput) : 0;
}

}  // namespace cnnviz::cli
