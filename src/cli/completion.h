// `cnnviz completion bash|zsh`: the shell completion script, generated from
// the CLI's own definition (subcommands, options, the choices of options
// that have a fixed set); model names are asked of `cnnviz models --names`
// as the user types. The build writes both scripts and installs them.
#ifndef CNNVIZ_CLI_COMPLETION_H_
#define CNNVIZ_CLI_COMPLETION_H_

#include <CLI/CLI.hpp>
#include <iosfwd>
#include <string>

namespace cnnviz::cli {

CLI::App* setup_completion(CLI::App& app, std::string& shell);
int run_completion(const CLI::App& app, const std::string& shell, std::ostream& out);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_COMPLETION_H_
