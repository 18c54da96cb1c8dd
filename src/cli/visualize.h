// The visualization subcommands: one per entry of the method registry, with
// its aliases and parameters and the same shared options, so a new method
// needs no CLI code.
#ifndef CNNVIZ_CLI_VISUALIZE_H_
#define CNNVIZ_CLI_VISUALIZE_H_

#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "cnnviz/run/explain.h"
#include "common.h"

namespace cnnviz::cli {

struct VisualizeOptions {
  ModelOptions model;
  InputOptions inputs;
  ExplainOptions explain;
  bool json = false;
  bool timings = false;
  CLI::App* command = nullptr;
};

// Adds one subcommand per registered method; `opts` gets one entry each.
void setup_visualize(CLI::App& app, std::vector<std::unique_ptr<VisualizeOptions>>& opts);

int run_visualize(VisualizeOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_VISUALIZE_H_
