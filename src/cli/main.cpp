// cnnviz: the command-line entry point. Parses arguments with CLI11, runs one
// subcommand, and is the only place that turns errors into exit codes.
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
#include "cnnviz/engine.h"
#include "cnnviz/error.h"
#include "cnnviz/image.h"
#include "cnnviz/progress.h"
#include "cnnviz/runtime.h"
#include "cnnviz/version.h"
#include "completion.h"
#include "config.h"
#include "evaluate.h"
#include "layers.h"
#include "merge.h"
#include "models.h"
#include "report.h"
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
  return std::string("cnnviz ") + cnnviz::kVersion + "\nLibTorch " + CNNVIZ_TORCH_VERSION +
         "\nOpenCV " + CV_VERSION + "\nCUDA: " + cuda + "\nbuild type: " + CNNVIZ_BUILD_TYPE;
}

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

  CLI::App app{"cnnviz: see what an ImageNet CNN looks at", "cnnviz"};
  app.set_version_flag("--version", version_text(),
                       "Print the version, what it was built "
                       "against and whether CUDA is usable");
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 runtime failure, 2 usage, 3 bad input (images, manifest), 4 model, "
      "5 unsupported, 6 output, 130 interrupted");

  cli::ClassifyOptions classify;
  CLI::App* classify_cmd = cli::setup_classify(app, classify);
  std::vector<std::unique_ptr<cli::VisualizeOptions>> visualize;
  cli::setup_visualize(app, visualize);
  cli::LayersOptions layers;
  CLI::App* layers_cmd = cli::setup_layers(app, layers);
  cli::MergeOptions merge;
  CLI::App* merge_cmd = cli::setup_merge(app, merge);
  cli::ReportOptions report;
  CLI::App* report_cmd = cli::setup_report(app, report);
  cli::EvaluateCliOptions evaluate;
  CLI::App* evaluate_cmd = cli::setup_evaluate(app, evaluate);
  std::vector<std::unique_ptr<cli::SynthesisCliOptions>> synthesis;
  cli::setup_synthesis(app, synthesis);
  cli::ModelsOptions models;
  cli::ServeOptions serve;
  CLI::App* serve_cmd = cli::setup_serve(app, serve);
  CLI::App* models_cmd = cli::setup_models(app, models);
  std::string shell;
  CLI::App* completion_cmd = cli::setup_completion(app, shell);
  std::string config;
  cli::add_config_option(app, config);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and exit 0; every other parse error is a
    // usage error, said on one line like every other error, with a hint.
    if (e.get_exit_code() == 0) return app.exit(e);
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
    for (const CLI::App* sub : app.get_subcommands())
      help = "cnnviz " + sub->get_name() + " --help";
    std::cerr << cli::kPrefix << first_line(e.what()) << " (see '" << help << "')\n";
    return static_cast<int>(ErrorCode::kUsage);
  }

  // Ctrl-C stops a run at the next batch with a consistent manifest.
  install_interrupt_handler();
  try {
    if (completion_cmd->parsed()) return cli::run_completion(app, shell, std::cout);
    const bool given = !config.empty();
    cli::apply_config(app, given ? config : cli::default_config_path(), given);
    if (models_cmd->parsed()) return cli::run_models(models, std::cout, std::cerr);
    if (classify_cmd->parsed()) return cli::run_classify(classify, std::cout, std::cerr);
    if (layers_cmd->parsed()) return cli::run_layers(layers, std::cout, std::cerr);
    if (merge_cmd->parsed()) return cli::run_merge(merge, std::cout, std::cerr);
    if (report_cmd->parsed()) return cli::run_report(report, std::cout, std::cerr);
    if (evaluate_cmd->parsed()) return cli::run_evaluate(evaluate, std::cout, std::cerr);
    if (serve_cmd->parsed()) return cli::run_serve(serve, std::cout, std::cerr);
    for (auto& v : visualize) {
      if (v->command->parsed()) return cli::run_visualize(*v, std::cout, std::cerr);
    }
    for (auto& s : synthesis) {
      if (s->command->parsed()) return cli::run_synthesis(*s, std::cout, std::cerr);
    }
  } catch (const Error& e) {
    std::cerr << cli::kPrefix << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << cli::kPrefix << "internal error: " << first_line(e.what()) << "\n";
    return static_cast<int>(ErrorCode::kRuntime);
  }
  return static_cast<int>(ErrorCode::kUsage);
}
