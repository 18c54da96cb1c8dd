// `cnnviz evaluate IMAGE... --method M`: faithfulness metrics of methods.
#ifndef CNNVIZ_CLI_EVALUATE_H_
#define CNNVIZ_CLI_EVALUATE_H_

#include <CLI/CLI.hpp>
#include <iosfwd>
#include <string>

#include "cnnviz/run/evaluate.h"
#include "common.h"

namespace cnnviz::cli {

struct EvaluateCliOptions {
  ModelOptions model;
  InputOptions inputs;
  EvaluateOptions evaluate;
  bool json = false;
};

CLI::App* setup_evaluate(CLI::App& app, EvaluateCliOptions& opts);
int run_evaluate(EvaluateCliOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_EVALUATE_H_
