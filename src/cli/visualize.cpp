#include "visualize.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <ostream>
#include <variant>

#include "cnnviz/core/error.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/core/stopwatch.h"
#include "cnnviz/io/render.h"
#include "cnnviz/methods/methods.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/outputs.h"
#include "cnnviz/run/progress.h"

namespace cnnviz::cli {

namespace {

// --<param> for one MethodParams field, checked as param_table() says.
void add_param(CLI::App& sub, const ParamDef& p, MethodParams& params) {
  std::visit(
      [&](auto field) {
        CLI::Option* o = sub.add_option(p.flag(), params.*field, p.help)->capture_default_str();
        if (!p.choices.empty()) o->check(CLI::IsMember(p.choices));
        if (p.min < p.max) o->check(CLI::Range(p.min, p.max));
      },
      p.field);
}

// --class, --top, --targets and, for methods that explain units, --unit.
void add_target_options(CLI::App& sub, const MethodDef& method, VisualizeOptions& opts) {
  // Kept when given, even empty: `--class ''` is an error, not the default.
  CLI::Option* cls = sub.add_option_function<std::vector<std::string>>(
      "--class",
      [o = &opts](const std::vector<std::string>& v) {
        o->explain.classes.insert(o->explain.classes.end(), v.begin(), v.end());
      },
      "Target class: index or label (repeatable: maps for each; default: each image's top-1, "
      "for a segmenter the class with the largest area but the background)");
  cls->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub.add_option("--top", opts.explain.top, "Maps for each of the top N classes")
      ->check(CLI::Range(1, kMaxTop))
      ->capture_default_str()
      ->excludes(cls);
  CLI::Option* targets =
      sub.add_option("--targets", opts.explain.targets_file,
                     "CSV or TSV file: image path or name, then its classes (images not in it "
                     "get --class or --top)");
  sub.add_option("--box", opts.explain.boxes,
                 "Detectors: explain detection K (the K-th best, from 0), or x1,y1,x2,y2[:LABEL], "
                 "the detections matching that box of the image (repeatable; default: every "
                 "detection)")
      // One box per --box: the images may follow it.
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->excludes(cls);
  sub.add_option("--iou", opts.explain.match_iou,
                 "Detectors: a detection matches a --box x1,y1,x2,y2 at this IoU or more "
                 "(default 0.5)");
  sub.add_option("--min-score", opts.explain.min_score,
                 "Detectors: the detections are the boxes scoring above this")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  if (!method.scores.empty()) {
    sub.add_option("--region", opts.explain.region,
                   "Segmenters: count only this mask's pixels, a picture of the image's size "
                   "(black outside the region, one colour inside)");
  }
  if (method.units) {
    sub.add_option("--unit", opts.explain.unit,
                   "Explain a channel of a layer instead of a class: LAYER:K (its mean "
                   "activation) or LAYER:K:Y:X (one neuron)")
        ->excludes(cls)
        ->excludes(targets)
        ->excludes("--top");
  }
}

// What the method itself takes: --score, --counterfactual, layers, and its
// registry parameters.
void add_method_options(CLI::App& sub, const MethodDef& method, VisualizeOptions& opts) {
  if (!method.scores.empty()) {
    sub.add_option_function<std::string>(
           "--score", [o = &opts](const std::string& v) { o->explain.score = parse_score(v); },
           "What is explained: logit, probability, log-probability or sigmoid (default: " +
               score_name(method.scores.front()) + ")")
        ->check(CLI::IsMember(score_names()));
  }
  if (method.counterfactual) {
    sub.add_flag("--counterfactual", opts.explain.counterfactual,
                 "Explain the negated score: the evidence against the class");
  }
  if (method.layers == LayerUse::kChosen || method.layers == LayerUse::kOptional) {
    CLI::Option* layer = sub.add_option(
        "--layer", opts.explain.layers,
        method.layers == LayerUse::kChosen
            ? "Layer by module path or an ONNX model's value name (repeatable; default: the "
              "model's Grad-CAM layer)"
            : "Also a map at this layer, by module path or ONNX value name (repeatable)");
    // One value per --layer, so that the images after it stay positional.
    layer->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    sub.add_flag("--all-layers", opts.explain.all_layers,
                 "Every layer of the feature extractor, from one forward and backward pass")
        ->excludes(layer);
  }
  for (const std::string& name : method.params) {
    add_param(sub, find_param(name), opts.explain.params);
  }
}

// The outputs the method can write, comma-separated, for --write's help.
std::string write_variants(const MethodDef& method) {
  std::string variants;
  for (const std::string& v : map_variants(method.output))
    variants += (variants.empty() ? "" : ",") + v;
  if (method.layer_maps) {
    for (const std::string& v : map_variants(MapKind::kLayerMap)) {
      if (variants.find(v) == std::string::npos) variants += "," + v;
    }
  }
  return variants;
}

// --write, --no-raw, --colormap and --alpha.
void add_output_options(CLI::App& sub, const MethodDef& method, VisualizeOptions& opts) {
  sub.add_option(
         "--write", opts.explain.write,
         "Outputs to write, comma-separated (default: all of " + write_variants(method) + ")")
      // The choices for the help and the shell completions; the run checks
      // them against the method, with a message that says why.
      ->check(CLI::Validator([](std::string&) { return std::string(); },
                             "{" + write_variants(method) + "}"))
      ->delimiter(',')
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub.add_flag(
      "--no-raw", [o = &opts](int64_t) { o->explain.raw = false; },
      "Do not write the raw float32 .npy arrays (as --write without npy)");
  sub.add_option("--colormap", opts.explain.colormap, "Heatmap colormap")
      ->capture_default_str()
      ->check(CLI::IsMember(colormap_names()));
  // A method parameter of that name (LRP's alpha-beta rule) takes the
  // flag: its maps are input gradients, drawn without overlays.
  if (!method.takes("alpha")) {
    sub.add_option("--alpha", opts.explain.alpha, "Heatmap weight in overlays")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
  }
}

// --batch-size, --decoders, --writers, --json and --timings.
void add_run_options(CLI::App& sub, VisualizeOptions& opts) {
  sub.add_option("--batch-size", opts.explain.batch_size, "Images per forward pass")
      ->check(CLI::Range(1, kMaxBatch))
      ->capture_default_str();
  sub.add_option("--decoders", opts.explain.decoders,
                 "Threads decoding images ahead of the network (default: every core)")
      ->check(CLI::Range(1, kMaxThreads));
  sub.add_option("--writers", opts.explain.writers,
                 "Threads rendering and writing files while the network computes (default: "
                 "every core)")
      ->check(CLI::Range(1, kMaxThreads));
  sub.add_flag("--json", opts.json, "Print the manifest to stdout");
  sub.add_flag("--timings", opts.timings,
               "Print load, compute and write times (ms) to stderr as a JSON line");
}

}  // namespace

void setup_visualize(CLI::App& app, std::vector<std::unique_ptr<VisualizeOptions>>& all) {
  for (const MethodDef& method : method_table()) {
    auto opts = std::make_unique<VisualizeOptions>();
    opts->explain.method = method.name;
    CLI::App* sub = app.add_subcommand(method.name, method.summary);
    for (const std::string& alias : method.aliases) sub->alias(alias);
    add_input_options(*sub, opts->inputs);
    sub->add_flag("--skip-existing", opts->explain.skip_existing,
                  "Skip images whose outputs from an earlier run with the same settings are "
                  "complete in OUTDIR");
    add_model_options(*sub, opts->model);
    sub->add_option("-o,--outdir", opts->explain.outdir, "Output directory")->capture_default_str();
    add_target_options(*sub, method, *opts);
    add_method_options(*sub, method, *opts);
    add_output_options(*sub, method, *opts);
    add_run_options(*sub, *opts);
    opts->command = sub;
    all.push_back(std::move(opts));
  }
}

int run_visualize(VisualizeOptions& opts, std::ostream& out, std::ostream& err) {
  const std::vector<std::string> images = collect_inputs(opts.inputs, err);
  opts.explain.shard = parse_shard(opts.inputs.shard);
  opts.explain.max_pixels = opts.inputs.max_pixels;
  opts.explain.test_write_delay_ms = test_seams().write_delay_ms;
  Clock::time_point start = Clock::now();
  opts.model.onnx_values = opts.explain.layers;
  Model model = open_model(opts.model, err);
  const double load_ms = ms_since(start);
  const size_t share = shard_positions(images.size(), opts.explain.shard).size();
  Progress progress(err, share, !opts.inputs.quiet && stderr_is_terminal());
  start = Clock::now();
  ExplainSummary summary = explain(model, images, opts.explain, progress);
  const double run_ms = ms_since(start);
  if (opts.json) out << dump_json(summary.manifest, 2) << "\n";
  if (opts.timings) {
    nlohmann::ordered_json t = {{"images", summary.images},
                                {"failed", summary.failed},
                                {"device", model.device().str()},
                                {"threads", current_threads()},
                                {"writers", summary.writers},
                                {"load_ms", load_ms},
                                {"run_ms", run_ms},
                                {"compute_ms", summary.compute_ms},
                                {"batch_compute_ms", summary.batch_compute_ms},
                                {"write_ms", summary.write_ms},
                                {"write_cpu_ms", summary.write_cpu_ms},
                                {"wait_ms", summary.wait_ms},
                                {"tail_ms", summary.tail_ms},
                                {"files", summary.files_written},
                                {"bytes", summary.bytes_written}};
    err << kPrefix << "timings " << t.dump() << "\n";
  }
  if (!opts.inputs.quiet) {
    progress.summary(summary.interrupted);
    const std::string where = where_files_went(summary, opts.explain.outdir);
    if (!where.empty()) err << kPrefix << where << "\n";
  }
  if (summary.interrupted) return kInterruptedExit;
  return summary.failed > 0 ? static_cast<int>(ErrorCode::kInput) : 0;
}

}  // namespace cnnviz::cli
