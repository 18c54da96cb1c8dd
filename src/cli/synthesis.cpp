#include "synthesis.h"

#include <ostream>

#include "cnnviz/core/error.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/limits.h"

namespace cnnviz::cli {

namespace {

constexpr int kDefaultImageSize = 128;
constexpr const char* kLayerHelp =
    "Layer by module path (cnnviz layers), or an ONNX model's value name";

// The optimization options filters, class-model and invert share.
void add_optimization(CLI::App& sub, SynthesisCliOptions& o) {
  SynthesisOptions& s = o.run.synthesis;
  sub.add_option("--steps", s.steps, "Optimization steps")
      ->check(CLI::Range(1, kMaxSamples))
      ->capture_default_str();
  sub.add_option("--lr", s.lr, "Adam's step size")
      ->check(CLI::Range(1e-6, 10.0))
      ->capture_default_str();
  sub.add_option("--param", o.param, "Image parameterization: fft or pixel")
      ->check(CLI::IsMember({"fft", "pixel"}))
      ->capture_default_str();
  sub.add_flag_callback("--decorrelate", [&o] { o.decorrelate = true; },
                        "Mix colours by ImageNet's colour covariance (the default)");
  sub.add_flag_callback("--no-decorrelate", [&o] { o.decorrelate = false; },
                        "Optimize the colours independently");
  sub.add_option("--transforms", o.transforms,
                 "Robustness transforms drawn at each step: any of jitter,scale,rotate, or none")
      ->capture_default_str();
  sub.add_option("--seed", s.seed, "Seed of the random start and transforms")
      ->capture_default_str();
  sub.add_option("--batch", o.run.batch, "Images optimized together")
      ->check(CLI::Range(1, kMaxBatch))
      ->capture_default_str();
  sub.add_option("--l2", s.priors.l2, "Weight of the L2 prior, mean((x - 0.5)^2)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  sub.add_option("--tv", s.priors.tv, "Weight of the total-variation prior")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  sub.add_option("--blur", s.priors.blur, "Weight of the blur prior, mean((x - blur(x))^2)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
}

void add_common(CLI::App& sub, SynthesisCliOptions& o, bool quiet) {
  sub.add_option("-o,--outdir", o.run.outdir, "Output directory")->capture_default_str();
  if (quiet) sub.add_flag("-q,--quiet", o.inputs.quiet, "No progress bar or summary");
  sub.add_flag("--json", o.json, "Print the manifest to stdout");
}

// A subcommand with options of its own, kept in `all` (CLI11 binds the
// flags to their addresses).
SynthesisCliOptions& add_command(CLI::App& app,
                                 std::vector<std::unique_ptr<SynthesisCliOptions>>& all,
                                 const std::string& name, const std::string& description) {
  all.push_back(std::make_unique<SynthesisCliOptions>());
  SynthesisCliOptions& o = *all.back();
  o.name = name;
  o.command = app.add_subcommand(name, description);
  return o;
}

void add_filters(CLI::App& app, std::vector<std::unique_ptr<SynthesisCliOptions>>& all) {
  SynthesisCliOptions& o =
      add_command(app, all, "filters",
                  "Feature visualization: an image that maximizes each chosen channel of a layer");
  CLI::App* sub = o.command;
  add_model_options(*sub, o.model, /*channels_flag=*/false);
  sub->add_option("--layer", o.run.layer, kLayerHelp)->required();
  sub->add_option("--channels", o.run.channels, "Channels: K, A-B, a comma list, or all")
      ->capture_default_str();
  sub->add_flag("--neuron", o.run.neuron,
                "Maximize the centre neuron instead of the channel's mean");
  add_optimization(*sub, o);
  add_common(*sub, o, /*quiet=*/true);
  sub->get_option("--size")->description("Side of the optimized image (default 128)");
}

void add_class_model(CLI::App& app, std::vector<std::unique_ptr<SynthesisCliOptions>>& all) {
  SynthesisCliOptions& o =
      add_command(app, all, "class-model",
                  "Class model visualization: an image the model classifies as a class");
  CLI::App* sub = o.command;
  add_model_options(*sub, o.model);
  sub->add_option("--class", o.run.classes, "Class index or label (repeatable)")
      ->required()
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  add_optimization(*sub, o);
  add_common(*sub, o, /*quiet=*/true);
  sub->get_option("--size")->description("Side of the optimized image (default 128)");
}

void add_dream(CLI::App& app, std::vector<std::unique_ptr<SynthesisCliOptions>>& all) {
  SynthesisCliOptions& o = add_command(
      app, all, "dream", "Deep dream: amplify what a layer sees in each image, octave by octave");
  CLI::App* sub = o.command;
  add_model_options(*sub, o.model);
  add_input_options(*sub, o.inputs);
  DreamOptions& d = o.run.dream;
  sub->add_option("--layer", o.run.layer, kLayerHelp)->required();
  sub->add_option("--octaves", d.octaves, "Octaves (image scales)")
      ->check(CLI::Range(1, 12))
      ->capture_default_str();
  sub->add_option("--octave-scale", d.octave_scale, "Size ratio between octaves")
      ->check(CLI::Range(1.0, 4.0))
      ->capture_default_str();
  sub->add_option("--steps", d.steps, "Steps per octave")
      ->check(CLI::Range(1, kMaxSamples))
      ->capture_default_str();
  sub->add_option("--lr", d.lr, "Step size (the gradient is scaled to mean absolute value 1)")
      ->check(CLI::Range(1e-6, 1.0))
      ->capture_default_str();
  sub->add_option("--jitter", d.jitter, "Largest random shift per step, pixels")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  sub->add_option("--seed", d.seed, "Seed of the shifts")->capture_default_str();
  add_common(*sub, o, /*quiet=*/false);
}

void add_invert(CLI::App& app, std::vector<std::unique_ptr<SynthesisCliOptions>>& all) {
  SynthesisCliOptions& o =
      add_command(app, all, "invert",
                  "Representation inversion: an image whose layer features match each image's");
  // Its own defaults, set before add_optimization captures them for --help.
  o.transforms = "none";
  o.run.synthesis.priors.tv = 0;
  CLI::App* sub = o.command;
  add_model_options(*sub, o.model);
  add_input_options(*sub, o.inputs);
  CLI::Option* layer = sub->add_option("--layer", o.run.layer, kLayerHelp);
  sub->add_flag("--all-layers", o.run.all_layers, "Every feature stage, and a contact sheet")
      ->excludes(layer);
  add_optimization(*sub, o);
  add_common(*sub, o, /*quiet=*/false);
}

void add_top_activations(CLI::App& app, std::vector<std::unique_ptr<SynthesisCliOptions>>& all) {
  SynthesisCliOptions& o =
      add_command(app, all, "top-activations",
                  "The dataset images (and their patches) that excite each channel most");
  CLI::App* sub = o.command;
  add_model_options(*sub, o.model, /*channels_flag=*/false);
  add_input_options(*sub, o.inputs);
  sub->add_option("--layer", o.run.layer, kLayerHelp)->required();
  sub->add_option("--channels", o.run.channels, "Channels: K, A-B, a comma list, or all")
      ->capture_default_str();
  sub->add_option("--k", o.run.k, "Images kept per channel")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  sub->add_option("--batch-size", o.run.batch_size, "Images per forward pass")
      ->check(CLI::Range(1, kMaxClassifyBatch))
      ->capture_default_str();
  sub->add_option("--decoders", o.run.decoders,
                  "Threads decoding images ahead of the network (default: every core)")
      ->check(CLI::Range(1, kMaxThreads));
  sub->add_flag("--resume", o.run.resume, "Continue from the state an earlier run saved");
  sub->add_flag("--merge", o.run.merge,
                "Combine the states of every shard in OUTDIR and write the sheets");
  add_common(*sub, o, /*quiet=*/false);
}

}  // namespace

void setup_synthesis(CLI::App& app, std::vector<std::unique_ptr<SynthesisCliOptions>>& all) {
  add_filters(app, all);
  add_class_model(app, all);
  add_dream(app, all);
  add_invert(app, all);
  add_top_activations(app, all);
}

int run_synthesis(SynthesisCliOptions& o, std::ostream& out, std::ostream& err) {
  SynthesisRunOptions& run = o.run;
  const bool needs_images =
      o.name == "dream" || o.name == "invert" || (o.name == "top-activations" && !run.merge);
  if (o.name == "invert" && run.layer.empty() && !run.all_layers) {
    throw Error(ErrorCode::kUsage, "invert: give --layer PATH or --all-layers");
  }
  std::vector<std::string> images;
  if (needs_images) {
    images = collect_inputs(o.inputs, err);
    run.shard = parse_shard(o.inputs.shard);
    run.max_pixels = o.inputs.max_pixels;
  }
  run.synthesis.param.kind = parse_param_kind(o.param);
  run.synthesis.param.decorrelate = o.decorrelate;
  run.synthesis.transforms = parse_transforms(o.transforms);
  if (o.name == "invert" && run.synthesis.transforms.any()) {
    // Features are compared position by position with the image's own.
    throw Error(ErrorCode::kUsage,
                "invert: --transforms must be none (the features are "
                "compared position by position)");
  }
  if (o.name == "filters" || o.name == "class-model") {
    run.synthesis.param.size = o.model.size > 0 ? o.model.size : kDefaultImageSize;
  }
  if (!run.layer.empty()) o.model.onnx_values = {run.layer};
  Model model = open_model(o.model, err);
  run.layer = model.info().layer_path(run.layer);
  if (model.info().preprocess.channels != 3 && model.info().preprocess.channels != 1) {
    throw Error(ErrorCode::kUnsupported, o.name + ": needs a 1- or 3-channel model");
  }
  size_t total = images.size();
  if (o.name == "class-model") total = run.classes.size();
  Progress progress(err, total, !o.inputs.quiet && stderr_is_terminal());
  nlohmann::ordered_json doc;
  if (o.name == "filters") {
    doc = run_filters(model, run, progress);
  } else if (o.name == "class-model") {
    doc = run_class_model(model, run, progress);
  } else if (o.name == "dream") {
    doc = run_dream(model, images, run, progress);
  } else if (o.name == "invert") {
    doc = run_invert(model, images, run, progress);
  } else {
    doc = run_top_activations(model, images, run, progress);
  }
  if (o.json) out << dump_json(doc, 2) << "\n";
  const bool stopped = doc.value("interrupted", false);
  if (!o.inputs.quiet && needs_images) progress.summary(stopped);
  if (stopped) return kInterruptedExit;
  return progress.failures() > 0 ? static_cast<int>(ErrorCode::kInput) : 0;
}

}  // namespace cnnviz::cli
