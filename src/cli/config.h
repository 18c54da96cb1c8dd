// The config file: defaults for any option, read with CLI11's TOML reader.
//
// Precedence, highest first: the command line, the environment variables
// ($CNNVIZ_MODEL, $CNNVIZ_MODELS, $CNNVIZ_DEVICE), the config file, the
// built-in defaults. Keys without a section apply to every subcommand that
// has an option of that name (`colormap = "magma"`); keys under
// `[subcommand]` to that one only. An unknown key or section is a usage
// error naming the key and the file.
#ifndef CNNVIZ_CLI_CONFIG_H_
#define CNNVIZ_CLI_CONFIG_H_

#include <CLI/CLI.hpp>
#include <string>

namespace cnnviz::cli {

// Largest config file read (it is a handful of settings).
constexpr size_t kMaxConfigBytes = 1 << 20;

// $XDG_CONFIG_HOME/cnnviz/config.toml, else ~/.config/cnnviz/config.toml;
// empty when neither variable is set.
std::string default_config_path();

// Adds `--config FILE` to `app` and to every subcommand it has so far
// (given before or after the subcommand's name).
void add_config_option(CLI::App& app, std::string& path);

// After app.parse(): applies the settings of `path` to the parsed
// subcommand's options that neither the command line nor the environment
// set. `required` (--config was given): a missing file is an error; the
// default file is read only when it exists. Throws Error(kUsage).
void apply_config(CLI::App& app, const std::string& path, bool required);

// True when the config file set `option` (so a message can say where a
// value came from).
bool set_by_config(const CLI::Option* option);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_CONFIG_H_
