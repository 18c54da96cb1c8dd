#include "common.h"

#include <iostream>
#include <ostream>

#include "cnnviz/error.h"
#include "cnnviz/inputs.h"
#include "cnnviz/model_store.h"
#include "cnnviz/runtime.h"

namespace cnnviz::cli {

void add_model_options(CLI::App& sub, ModelOptions& opts) {
  sub.add_option("-m,--model", opts.model,
                 "Model name (looked up as MODELS_DIR/NAME.pt) or path to a TorchScript file")
      ->envname("CNNVIZ_MODEL")
      ->capture_default_str();
  sub.add_option("--models-dir", opts.models_dir,
                 "Directory searched for model names (default: the source tree's models/)")
      ->envname("CNNVIZ_MODELS");
  sub.add_option("--threads", opts.threads, "LibTorch threads (default: every available core)")
      ->check(CLI::Range(1, 1024));
}

void add_input_options(CLI::App& sub, InputOptions& opts) {
  sub.add_option("images", opts.images,
                 "Image files or directories (searched recursively for image files)");
  sub.add_option("--from-list", opts.from_list,
                 "Also read image paths from FILE, one per line ('-' for stdin)");
  sub.add_option("--shard", opts.shard,
                 "Process only the K-th of N deterministic shares of the inputs (K/N)")
      ->capture_default_str();
  sub.add_flag("-q,--quiet", opts.quiet, "No progress bar or summary on stderr");
}

std::vector<std::string> collect_inputs(const InputOptions& opts) {
  std::vector<std::string> images = expand_inputs(opts.images, opts.from_list, std::cin);
  if (images.empty()) {
    throw Error(ErrorCode::kUsage,
                "no input images (give image files or directories, or --from-list FILE)");
  }
  return images;
}

Model open_model(const ModelOptions& opts, std::ostream& err) {
  const std::string dir = opts.models_dir.empty() ? builtin_models_dir() : opts.models_dir;
  Model model = Model::load(resolve_model(opts.model, dir));
  set_threads(opts.threads);
  const ModelInfo& info = model.info();
  if (!info.has_metadata) {
    err << kPrefix << "warning: model '" << info.path
        << "' has no cnnviz.json metadata: using ImageNet preprocessing, classes unnamed\n";
  } else if (info.weights_kind == WeightsKind::kRandom) {
    const std::string export_name = info.arch.empty() ? info.name : info.arch;
    err << kPrefix << "WARNING: model '" << info.name
        << "' has RANDOM weights: its predictions are meaningless\n"
        << kPrefix << "  for real ones: scripts/export_models.py --force " << export_name
        << " (needs network or a torch hub cache; see README, 'Models')\n";
  }
  return model;
}

}  // namespace cnnviz::cli
