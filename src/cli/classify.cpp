#include "classify.h"

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "cnnviz/core/error.h"
#include "cnnviz/core/formats.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/predict.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/core/stopwatch.h"
#include "cnnviz/core/version.h"
#include "cnnviz/run/classify.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/manifest.h"
#include "cnnviz/run/progress.h"

namespace cnnviz::cli {

namespace {

using json = nlohmann::ordered_json;

void print_text(std::ostream& out, const ClassifyResult& result, const ModelInfo& info) {
  out << result.image << "\n";
  char line[64];
  const std::vector<Prediction>& preds = result.predictions;
  for (size_t r = 0; r < preds.size(); ++r) {
    std::snprintf(line, sizeof(line), "  %2zu  %.4f  %4lld  ", r + 1, preds[r].probability,
                  static_cast<long long>(preds[r].index));
    out << line << info.label(preds[r].index) << "\n";
  }
  // Given classes: "=" instead of a rank column would hide where they stand.
  for (const TargetScore& t : result.targets) {
    std::snprintf(line, sizeof(line), "  =%-3lld %.4f  %4lld  ", static_cast<long long>(t.rank),
                  t.probability, static_cast<long long>(t.index));
    out << line << info.label(t.index) << "\n";
  }
}

cnnviz::ClassifyOptions run_options(const ClassifyOptions& opts) {
  cnnviz::ClassifyOptions run;
  run.top_k = opts.top_k;
  run.max_pixels = opts.inputs.max_pixels;
  run.batch_size = static_cast<size_t>(opts.batch_size);
  run.decoders = opts.decoders;
  run.targets.classes = opts.classes;
  run.targets.targets_file = opts.targets_file;
  return run;
}

json result_json(const ClassifyResult& result, const ModelInfo& info) {
  json r;
  r["image"] = result.image;
  if (result.error) {
    r["error"] = *result.error;
    return r;
  }
  r["input"] = input_json(info.preprocess.channels, result.grey);
  r["predictions"] = json::array();
  int rank = 1;
  for (const Prediction& p : result.predictions) {
    r["predictions"].push_back({{"rank", rank++},
                                {"index", p.index},
                                {"label", info.label(p.index)},
                                {"probability", p.probability}});
  }
  if (!result.targets.empty()) {
    r["targets"] = json::array();
    for (const TargetScore& t : result.targets) {
      r["targets"].push_back({{"class", t.index},
                              {"label", info.label(t.index)},
                              {"spec", t.spec},
                              {"source", t.source},
                              {"rank", t.rank},
                              {"logit", t.logit},
                              {"probability", t.probability}});
    }
  }
  return r;
}

// The --json document ("format": "cnnviz/classify").
json classify_json(const ClassifySummary& summary, const ModelInfo& info) {
  json doc;
  doc["format"] = format_name(Format::kClassify);
  doc["format_version"] = format_version(Format::kClassify);
  doc["cnnviz_version"] = kVersion;
  doc["model"] = model_json(info);
  doc["results"] = json::array();
  for (const ClassifyResult& result : summary.results) {
    if (!result.done()) continue;  // not reached (interrupted)
    doc["results"].push_back(result_json(result, info));
  }
  doc["summary"] = {{"images", summary.results.size()},
                    {"failed", summary.failed},
                    {"interrupted", summary.interrupted}};
  return doc;
}

// The --timings line.
json timings_json(const ClassifySummary& summary, const Model& model, const ClassifyOptions& opts,
                  double load_ms) {
  const size_t n = summary.results.size();
  const double per = 1.0 / static_cast<double>(std::max<size_t>(1, n));
  return {{"images", n},
          {"failed", summary.failed},
          {"device", model.device().str()},
          {"threads", current_threads()},
          {"batch_size", opts.batch_size},
          {"load_ms", load_ms},
          {"run_ms", summary.run_ms},
          {"per_image_ms", summary.run_ms * per},
          {"network_ms", summary.network_ms},
          {"wait_ms", summary.wait_ms},
          {"decode_cpu_ms_per_image", summary.decode_cpu_ms * per}};
}

}  // namespace

CLI::App* setup_classify(CLI::App& app, ClassifyOptions& opts) {
  CLI::App* sub = app.add_subcommand("classify", "Print the top-K ImageNet classes of each image");
  add_input_options(*sub, opts.inputs);
  add_model_options(*sub, opts.model);
  sub->add_option("-k,--top-k", opts.top_k,
                  "Number of classes to print per image (default: 5; at most the model's "
                  "number of classes)")
      ->check(CLI::Range(int64_t{1}, kMaxClasses));
  sub->add_option("--batch-size", opts.batch_size, "Images per forward pass")
      ->check(CLI::Range(1, kMaxClassifyBatch))
      ->capture_default_str();
  sub->add_option("--decoders", opts.decoders,
                  "Threads decoding images ahead of the network (default: every core)")
      ->check(CLI::Range(1, kMaxThreads));
  CLI::Option* cls = sub->add_option("--class", opts.classes,
                                     "Also report this class's probability and rank (index or "
                                     "label; repeatable)");
  cls->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--targets", opts.targets_file,
                  "CSV or TSV file: image path or name, then the classes to report for it");
  sub->add_flag("--json", opts.json, "Print one JSON document instead of text (docs/formats.md)");
  sub->add_flag("--timings", opts.timings,
                "Print load and run times (ms) to stderr as a JSON line, for benchmarks");
  return sub;
}

int run_classify(const ClassifyOptions& opts, std::ostream& out, std::ostream& err) {
  const std::vector<std::string> all = collect_inputs(opts.inputs, err);
  const Shard shard = parse_shard(opts.inputs.shard);
  std::vector<std::string> images;
  for (size_t p : shard_positions(all.size(), shard)) images.push_back(all[p]);
  const Clock::time_point start = Clock::now();
  Model model = open_model(opts.model, err);
  const ModelInfo& info = model.info();
  const double load_ms = ms_since(start);

  const cnnviz::ClassifyOptions run = run_options(opts);
  Progress progress(err, images.size(), !opts.inputs.quiet && stderr_is_terminal());
  // Text results stream out batch by batch; JSON is one document at the end.
  const ClassifySummary summary =
      classify(model, images, run, progress, [&](const ClassifyResult& r) {
        if (!opts.json) print_text(out, r, info);
      });
  const size_t n = summary.results.size();

  if (opts.json) out << dump_json(classify_json(summary, info), 2) << "\n";
  if (opts.timings) {
    err << kPrefix << "timings " << timings_json(summary, model, opts, load_ms).dump() << "\n";
  }
  if (!opts.inputs.quiet && (summary.interrupted || summary.failed > 0 || n > 1)) {
    progress.summary(summary.interrupted);
  }
  if (summary.interrupted) return kInterruptedExit;
  return summary.failed > 0 ? static_cast<int>(ErrorCode::kInput) : 0;
}

}  // namespace cnnviz::cli
