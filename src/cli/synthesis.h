// The feature-visualization subcommands: `cnnviz filters`, `class-model`,
// `dream`, `invert` and `top-activations` (synthesis_run.h does the work).
#ifndef CNNVIZ_CLI_SYNTHESIS_H_
#define CNNVIZ_CLI_SYNTHESIS_H_

#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "cnnviz/run/synthesis_run.h"
#include "common.h"

namespace cnnviz::cli {

struct SynthesisCliOptions {
  std::string name;  // the subcommand
  ModelOptions model;
  InputOptions inputs;
  SynthesisRunOptions run;
  std::string param = "fft";
  bool decorrelate = true;
  std::string transforms = "jitter,scale,rotate";
  bool json = false;
  CLI::App* command = nullptr;
};

void setup_synthesis(CLI::App& app, std::vector<std::unique_ptr<SynthesisCliOptions>>& all);
int run_synthesis(SynthesisCliOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_SYNTHESIS_H_
