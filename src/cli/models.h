// `cnnviz models`: every model found on the models search path, and where
// cnnviz looked.
#ifndef CNNVIZ_CLI_MODELS_H_
#define CNNVIZ_CLI_MODELS_H_

#include <iosfwd>

#include "common.h"

namespace cnnviz::cli {

struct ModelsOptions {
  std::string models_dir;
  const CLI::Option* models_dir_option = nullptr;
  bool json = false;
  bool names = false;  // one usable name per line (shell completion)
};

CLI::App* setup_models(CLI::App& app, ModelsOptions& opts);
int run_models(const ModelsOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_MODELS_H_
