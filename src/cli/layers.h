// `cnnviz layers [-m MODEL]`: every addressable layer of a model.
#ifndef CNNVIZ_CLI_LAYERS_H_
#define CNNVIZ_CLI_LAYERS_H_

#include <iosfwd>

#include "common.h"

namespace cnnviz::cli {

struct LayersOptions {
  ModelOptions model;
  bool json = false;
};

CLI::App* setup_layers(CLI::App& app, LayersOptions& opts);
int run_layers(const LayersOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_LAYERS_H_
