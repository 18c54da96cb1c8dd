#include "segment.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <ostream>

#include "cnnviz/core/error.h"
#include "cnnviz/core/formats.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/version.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/manifest.h"
#include "cnnviz/run/progress.h"
#include "cnnviz/run/segment.h"
#include "image_results.h"

namespace cnnviz::cli {

namespace {

using json = nlohmann::ordered_json;

void print_text(std::ostream& out, const SegmentResult& r, const ModelInfo& info) {
  print_image_line(out, r);
  char line[64];
  for (const ClassArea& a : r.areas) {
    std::snprintf(line, sizeof(line), "  %6.2f%%  %10lld  %4lld  ", 100.0 * a.share,
                  static_cast<long long>(a.pixels), static_cast<long long>(a.index));
    out << line << info.label(a.index) << "\n";
  }
}

json result_json(const SegmentResult& r, const ModelInfo& info) {
  json j;
  if (!image_entry(r, info, j)) return j;
  j["classes"] = json::array();
  for (const ClassArea& a : r.areas) {
    j["classes"].push_back({{"index", a.index},
                            {"label", info.label(a.index)},
                            {"pixels", a.pixels},
                            {"share", a.share}});
  }
  j["mask"] = r.mask.empty() ? json(nullptr) : json(r.mask);
  j["overlay"] = r.overlay.empty() ? json(nullptr) : json(r.overlay);
  return j;
}

json segment_json(const SegmentSummary& summary, const ModelInfo& info, const std::string& outdir) {
  return run_document(Format::kSegment, summary, info,
                      {{"outdir", outdir.empty() ? json(nullptr) : json(outdir)}},
                      [&](const SegmentResult& r) { return result_json(r, info); });
}

}  // namespace

CLI::App* setup_segment(CLI::App& app, SegmentCliOptions& opts) {
  CLI::App* sub = app.add_subcommand(
      "segment", "Label each pixel with a segmenter: the area of each class, and pictures");
  add_input_options(*sub, opts.inputs);
  add_model_options(*sub, opts.model);
  sub->add_option("--batch-size", opts.batch_size,
                  "Images per forward pass (one for a model without a crop)")
      ->check(CLI::Range(1, kMaxClassifyBatch))
      ->capture_default_str();
  sub->add_option("--decoders", opts.decoders,
                  "Threads decoding images ahead of the network (default: every core)")
      ->check(CLI::Range(1, kMaxThreads));
  sub->add_option("-o,--outdir", opts.outdir,
                  "Write STEM_mask.png (class colours) and STEM_overlay.png here");
  sub->add_option("--opacity", opts.opacity, "Opacity of the class colours in the overlay")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  sub->add_flag("--json", opts.json, "Print one JSON document instead of text (docs/formats.md)");
  return sub;
}

int run_segment(const SegmentCliOptions& opts, std::ostream& out, std::ostream& err) {
  const std::vector<std::string> all = collect_inputs(opts.inputs, err);
  const Shard shard = parse_shard(opts.inputs.shard);
  std::vector<std::string> images;
  for (size_t p : shard_positions(all.size(), shard)) images.push_back(all[p]);
  Model model = open_model(opts.model, err);
  const ModelInfo& info = model.info();
  SegmentOptions run;
  run.batch_size = static_cast<size_t>(opts.batch_size);
  run.decoders = opts.decoders;
  run.max_pixels = opts.inputs.max_pixels;
  run.outdir = opts.outdir;
  run.opacity = opts.opacity;
  Progress progress(err, images.size(), !opts.inputs.quiet && stderr_is_terminal());
  const SegmentSummary summary = segment(model, images, run, progress, [&](const SegmentResult& r) {
    if (!opts.json) print_text(out, r, info);
  });
  if (opts.json) out << dump_json(segment_json(summary, info, opts.outdir), 2) << "\n";
  if (!opts.inputs.quiet && (summary.interrupted || summary.failed > 0 || images.size() > 1)) {
    progress.summary(summary.interrupted);
  }
  if (summary.interrupted) return kInterruptedExit;
  return summary.failed > 0 ? static_cast<int>(ErrorCode::kInput) : 0;
}

}  // namespace cnnviz::cli
