// Options and helpers shared by the subcommands.
#ifndef CNNVIZ_CLI_COMMON_H_
#define CNNVIZ_CLI_COMMON_H_

#include <CLI/CLI.hpp>
#include <iosfwd>
#include <string>

#include "cnnviz/model.h"

namespace cnnviz::cli {

// Options every model-running subcommand takes. The environment variables are
// read by CLI11 when the flag is absent.
struct ModelOptions {
  std::string model = "vgg16";  // -m/--model, $CNNVIZ_MODEL
  std::string models_dir;       // --models-dir, $CNNVIZ_MODELS
  int threads = 0;              // --threads; 0 = every available core
};

void add_model_options(CLI::App& sub, ModelOptions& opts);

// Resolves, loads and announces the model: sets the thread count, and warns on
// `err` when the weights are random or the file has no metadata.
Model open_model(const ModelOptions& opts, std::ostream& err);

// The one prefix of every message cnnviz writes to stderr.
constexpr const char* kPrefix = "cnnviz: ";

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_COMMON_H_
