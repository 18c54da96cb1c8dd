// cnnviz: the command-line entry point. Parses arguments with CLI11, runs one
// subcommand, and is the only place that turns errors into exit codes.
#include <algorithm>
#include <torch/cuda.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <string>

#include "classify.h"
#include "cnnviz/core/blas.h"
#include "cnnviz/core/engine.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/core/text.h"
#include "cnnviz/core/version.h"
#include "cnnviz/io/image.h"
#include "cnnviz/run/progress.h"
#include "common.h"
#include "completion.h"
#include "config.h"
#include "evaluate.h"
#include "layers.h"
#include "merge.h"
#include "models.h"
#include "report.h"
#include "detect.h"
#include "segment.h"
#include "serve.h"
#include "synthesis.h"
#include "visualize.h"

namespace {

// `cnnviz --version`: the version first (help2man reads that line), then
// what this binary was built against and what it finds at run time.
std::string version_text() {
  const int gpus = static_cast<int>(torch::cuda::device_count());
  std::string cuda =
      cnnviz::cuda_built()
          ? (gpus > 0 ? "available, " + std::to_string(gpus) + (gpus == 1 ? " device" : " devices")
                      : "built in, no device visible")
          : "not built in (CPU only)";
  const cnnviz::BlasInfo& blas = cnnviz::loaded_blas();
  return std::string("cnnviz ") + cnnviz::kVersion + "\nLibTorch " + CNNVIZ_TORCH_VERSION +
         "\nBLAS: " + blas.name + (blas.path.empty() ? "" : ", " + blas.path) + "\nOpenCV " +
         CV_VERSION + "\nCUDA: " + cuda + "\nbuild type: " + CNNVIZ_BUILD_TYPE;
}

// For an unexpected "--option", the subcommand's options it is likely a
// typo of (two edits away, or a longer name it begins): "did you mean
// --all-layers? ".
std::string option_hint(const CLI::App& command, const std::string& what) {
  const std::string marker = "was not expected: ";
  const size_t at = what.find(marker);
  if (at == std::string::npos) return "";
  std::string given = what.substr(at + marker.size());
  given = given.substr(0, given.find_first_of(" =,"));
  if (given.rfind("--", 0) != 0) return "";
  std::vector<std::string> names;
  for (const CLI::Option* option : command.get_options()) {
    for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
  }
  std::string hint;
  for (const std::string& n : cnnviz::near_matches(given, names, 2)) {
    const bool begins = given.size() >= 5 && n.rfind(given, 0) == 0;
    if (cnnviz::edit_distance(given, n) > 2 && !begins) continue;
    hint += (hint.empty() ? "did you mean " : " or ") + n;
  }
  return hint.empty() ? "" : hint + "? ";
}

// A parse error as one line with a hint, like every other error: the
// nearest subcommands for an unknown one, else the subcommand's help.
int usage_error(const CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  using namespace cnnviz;
  if (app.get_subcommands().empty() && argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> names;
    for (const CLI::App* sub : app.get_subcommands({})) {
      names.push_back(sub->get_name());
      for (const std::string& alias : sub->get_aliases()) names.push_back(alias);
    }
    std::string hint;
    for (const std::string& n : near_matches(argv[1], names, 3)) {
      hint += (hint.empty() ? "" : ", ") + n;
    }
    std::cerr << cli::kPrefix << "unknown subcommand '" << argv[1] << "' (nearest: " << hint
              << "; 'cnnviz --help' lists them all)\n";
    return static_cast<int>(ErrorCode::kUsage);
  }
  std::string help = "cnnviz --help";
  const CLI::App* chosen = &app;
  for (const CLI::App* sub : app.get_subcommands()) {
    help = "cnnviz " + sub->get_name() + " --help";
    chosen = sub;
  }
  const std::string what = first_line(e.what());
  std::cerr << cli::kPrefix << what << " (" << option_hint(*chosen, what) << "see '" << help
            << "')\n";
  return static_cast<int>(ErrorCode::kUsage);
}

// "--batch-size N in [1 - 256]", not CLI11's "UINT:INT in [1 - 256]": the
// range of a ranged option becomes its type name.
void tidy_type_names(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands({})) {
    for (CLI::Option* option : sub->get_options()) {
      const std::string type = option->get_type_name();
      const size_t colon = type.find(':'), range = type.find(" in [");
      if (colon == std::string::npos || range == std::string::npos || range < colon) continue;
      option->get_validator(0)->description("");
      option->type_name((type.rfind("FLOAT", 0) == 0 ? "X" : "N") + type.substr(range));
    }
  }
}

// Every subcommand's options, bound to its parser.
struct Commands {
  cnnviz::cli::ClassifyOptions classify;
  CLI::App* classify_cmd = nullptr;
  cnnviz::cli::SegmentCliOptions segment;
  CLI::App* segment_cmd = nullptr;
  cnnviz::cli::DetectCliOptions detect;
  CLI::App* detect_cmd = nullptr;
  std::vector<std::unique_ptr<cnnviz::cli::VisualizeOptions>> visualize;
  cnnviz::cli::LayersOptions layers;
  CLI::App* layers_cmd = nullptr;
  cnnviz::cli::MergeOptions merge;
  CLI::App* merge_cmd = nullptr;
  cnnviz::cli::ReportOptions report;
  CLI::App* report_cmd = nullptr;
  cnnviz::cli::EvaluateCliOptions evaluate;
  CLI::App* evaluate_cmd = nullptr;
  std::vector<std::unique_ptr<cnnviz::cli::SynthesisCliOptions>> synthesis;
  cnnviz::cli::ModelsOptions models;
  CLI::App* models_cmd = nullptr;
  cnnviz::cli::ServeOptions serve;
  CLI::App* serve_cmd = nullptr;
  std::string shell;
  CLI::App* completion_cmd = nullptr;
  std::string config;

  explicit Commands(CLI::App& app) {
    using namespace cnnviz::cli;
    classify_cmd = setup_classify(app, classify);
    segment_cmd = setup_segment(app, segment);
    detect_cmd = setup_detect(app, detect);
    setup_visualize(app, visualize);
    layers_cmd = setup_layers(app, layers);
    merge_cmd = setup_merge(app, merge);
    report_cmd = setup_report(app, report);
    evaluate_cmd = setup_evaluate(app, evaluate);
    setup_synthesis(app, synthesis);
    serve_cmd = setup_serve(app, serve);
    models_cmd = setup_models(app, models);
    completion_cmd = setup_completion(app, shell);
    tidy_type_names(app);
    add_config_option(app, config);
  }

  // Runs the parsed subcommand; its exit status.
  int run(CLI::App& app) {
    using namespace cnnviz::cli;
    if (completion_cmd->parsed()) return run_completion(app, shell, std::cout);
    const bool given = !config.empty();
    apply_config(app, given ? config : default_config_path(), given);
    if (models_cmd->parsed()) return run_models(models, std::cout, std::cerr);
    if (classify_cmd->parsed()) return run_classify(classify, std::cout, std::cerr);
    if (segment_cmd->parsed()) return run_segment(segment, std::cout, std::cerr);
    if (detect_cmd->parsed()) return run_detect(detect, std::cout, std::cerr);
    if (layers_cmd->parsed()) return run_layers(layers, std::cout, std::cerr);
    if (merge_cmd->parsed()) return run_merge(merge, std::cout, std::cerr);
    if (report_cmd->parsed()) return run_report(report, std::cout, std::cerr);
    if (evaluate_cmd->parsed()) return run_evaluate(evaluate, std::cout, std::cerr);
    if (serve_cmd->parsed()) return run_serve(serve, std::cout, std::cerr);
    for (auto& v : visualize) {
      if (v->command->parsed()) return run_visualize(*v, std::cout, std::cerr);
    }
    for (auto& s : synthesis) {
      if (s->command->parsed()) return run_synthesis(*s, std::cout, std::cerr);
    }
    return static_cast<int>(cnnviz::ErrorCode::kUsage);
  }
};

}  // namespace

int main(int argc, char** argv) {
  using namespace cnnviz;
  // OpenCV's own warnings would break the one-line-per-error rule.
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  // cnnviz runs images in parallel on its own threads (decoders, writers);
  // OpenCV's pool inside each of them would only oversubscribe the cores.
  cv::setNumThreads(0);
  filter_codec_messages(std::cerr);
  route_torch_warnings(std::cerr);
  reuse_freed_memory();
  set_simulated_memory_limit(cli::test_seams().oom_above);

  CLI::App app{"cnnviz: see what an ImageNet CNN looks at", "cnnviz"};
  app.set_version_flag("--version", version_text(),
                       "Print the version, what it was built "
                       "against and whether CUDA is usable");
  app.require_subcommand(1);
  app.footer("Exit codes: " + exit_codes_text());
  Commands commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and exit 0; every other parse error is a
    // usage error.
    if (e.get_exit_code() == 0) return app.exit(e);
    return usage_error(app, e, argc, argv);
  }
  // Ctrl-C stops a run at the next batch with a consistent manifest.
  install_interrupt_handler();
  try {
    return commands.run(app);
  } catch (const Error& e) {
    std::cerr << cli::kPrefix << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << cli::kPrefix << "internal error: " << first_line(e.what()) << "\n";
    return static_cast<int>(ErrorCode::kRuntime);
  }
}
