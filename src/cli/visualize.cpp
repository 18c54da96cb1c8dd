#include "visualize.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <ostream>

#include "cnnviz/error.h"
#include "cnnviz/inputs.h"
#include "cnnviz/methods.h"
#include "cnnviz/progress.h"
#include "cnnviz/render.h"
#include "cnnviz/runtime.h"

namespace cnnviz::cli {

void setup_visualize(CLI::App& app, std::vector<std::unique_ptr<VisualizeOptions>>& all) {
  for (const MethodDef& method : method_table()) {
    auto opts = std::make_unique<VisualizeOptions>();
    opts->explain.method = method.name;
    CLI::App* sub = app.add_subcommand(method.name, method.summary);
    if (method.name == std::string("guided-backprop")) sub->alias("gbp");
    if (method.name == std::string("gradcam++")) sub->alias("gradcampp");
    if (method.name == std::string("integrated-gradients")) sub->alias("ig");
    add_input_options(*sub, opts->inputs);
    sub->add_flag("--skip-existing", opts->explain.skip_existing,
                  "Skip images whose outputs from an earlier run with the same settings are "
                  "complete in OUTDIR");
    add_model_options(*sub, opts->model);
    sub->add_option("-o,--outdir", opts->explain.outdir, "Output directory")->capture_default_str();
    sub->add_option("--class", opts->target_class,
                    "Target class: index or ImageNet label (default: each image's top-1)");
    sub->add_option("--top", opts->explain.top, "Maps for each of the top N classes")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str()
        ->excludes("--class");
    if (method.uses_layers) {
      CLI::Option* layer =
          sub->add_option("--layer", opts->explain.layers,
                          "Layer by module path (repeatable; default: the model's Grad-CAM layer)");
      // One value per --layer, so that the images after it stay positional.
      layer->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
      sub->add_flag("--all-layers", opts->explain.all_layers,
                    "Every layer of the feature extractor, from one forward and backward pass")
          ->excludes(layer);
    }
    MethodParams& p = opts->explain.params;
    if (method.params & kParamSamples) {
      sub->add_option("--samples", p.samples, "Noisy copies per image")
          ->check(CLI::Range(1, 100000))
          ->capture_default_str();
      sub->add_option("--noise", p.noise, "Noise sigma as a fraction of the input's value range")
          ->check(CLI::Range(0.0, 10.0))
          ->capture_default_str();
      sub->add_option("--seed", p.seed, "Seed of the noise")->capture_default_str();
      sub->add_option("--of", p.smooth_of, "Gradient to smooth")
          ->check(CLI::IsMember({"saliency", "guided-backprop"}))
          ->capture_default_str();
    }
    if (method.params & kParamSteps) {
      sub->add_option("--steps", p.steps, "Riemann steps from the baseline to the image")
          ->check(CLI::Range(1, 100000))
          ->capture_default_str();
      sub->add_option("--baseline", p.baseline, "Baseline image")
          ->check(CLI::IsMember({"black", "blurred"}))
          ->capture_default_str();
      sub->add_option("--blur-sigma", p.blur_sigma,
                      "Gaussian sigma (pixels) of the blurred baseline")
          ->check(CLI::Range(0.1, 1000.0))
          ->capture_default_str();
    }
    if (method.params & kParamSampleBatch) {
      sub->add_option("--sample-batch", p.sample_batch,
                      "Images per pass for noisy copies, steps or masks")
          ->check(CLI::Range(1, 4096))
          ->capture_default_str();
    }
    sub->add_flag(
        "--no-raw", [o = opts.get()](int64_t) { o->explain.raw = false; },
        "Do not write the raw float32 .npy arrays");
    sub->add_option("--colormap", opts->explain.colormap, "Heatmap colormap")
        ->capture_default_str()
        ->check(CLI::IsMember(colormap_names()));
    sub->add_option("--alpha", opts->explain.alpha, "Heatmap weight in overlays")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    sub->add_option("--batch-size", opts->explain.batch_size, "Images per forward pass")
        ->check(CLI::Range(1, 1024))
        ->capture_default_str();
    sub->add_option("--decoders", opts->explain.decoders,
                    "Threads decoding images ahead of the network (default: every core)")
        ->check(CLI::Range(1, 256));
    sub->add_flag("--json", opts->json, "Print the manifest to stdout");
    sub->add_flag("--timings", opts->timings,
                  "Print load, compute and write times (ms) to stderr as a JSON line");
    opts->command = sub;
    all.push_back(std::move(opts));
  }
}

int run_visualize(VisualizeOptions& opts, std::ostream& out, std::ostream& err) {
  const std::vector<std::string> images = collect_inputs(opts.inputs);
  opts.explain.shard = parse_shard(opts.inputs.shard);
  auto start = std::chrono::steady_clock::now();
  Model model = open_model(opts.model, err);
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!opts.target_class.empty()) opts.explain.target_class = opts.target_class;
  const size_t share = shard_positions(images.size(), opts.explain.shard).size();
  Progress progress(err, share, !opts.inputs.quiet && stderr_is_terminal());
  ExplainSummary summary = explain(model, images, opts.explain, progress);
  if (opts.json) out << summary.manifest.dump(2) << "\n";
  if (opts.timings) {
    nlohmann::ordered_json t = {{"images", summary.images},         {"failed", summary.failed},
                                {"device", model.device().str()},
                                {"threads", current_threads()},     {"load_ms", load_ms},
                                {"compute_ms", summary.compute_ms}, {"write_ms", summary.write_ms}};
    err << kPrefix << "timings " << t.dump() << "\n";
  }
  if (!opts.inputs.quiet) progress.summary(summary.interrupted);
  if (summary.interrupted) return kInterruptedExit;
  return summary.failed > 0 ? static_cast<int>(ErrorCode::kInput) : 0;
}

}  // namespace cnnviz::cli
