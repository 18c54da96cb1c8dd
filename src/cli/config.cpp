#include "config.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>
#include <vector>

#include "cnnviz/core/error.h"

namespace fs = std::filesystem;

namespace cnnviz::cli {

namespace {

std::set<const CLI::Option*>& applied() {
  static std::set<const CLI::Option*> options;
  return options;
}

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw Error(ErrorCode::kUsage, "config file '" + path + "': " + problem);
}

// The option `--NAME` of `app` (underscores read as dashes), or nullptr.
CLI::Option* find_option(CLI::App& app, std::string name) {
  for (char& c : name) {
    if (c == '_') c = '-';
  }
  CLI::Option* opt = app.get_option_no_throw("--" + name);
  if (opt == nullptr && name.size() == 1) opt = app.get_option_no_throw("-" + name);
  return opt;
}

CLI::App* find_subcommand(CLI::App& app, const std::string& name) {
  for (CLI::App* sub : app.get_subcommands({})) {
    if (sub->get_name() == name) return sub;
  }
  return nullptr;
}

bool reserved(const std::string& name) {
  return name == "help" || name == "help-all" || name == "version" || name == "config";
}

}  // namespace

std::string default_config_path() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  if (xdg && xdg[0] == '/') return (fs::path(xdg) / "cnnviz" / "config.toml").string();
  const char* home = std::getenv("HOME");
  if (!home || !*home) return "";
  return (fs::path(home) / ".config" / "cnnviz" / "config.toml").string();
}

void add_config_option(CLI::App& app, std::string& path) {
  const std::string help =
      "Defaults for any option, TOML (default: $XDG_CONFIG_HOME/cnnviz/config.toml); the "
      "command line and environment variables override it";
  app.add_option("--config", path, help)->configurable(false);
  for (CLI::App* sub : app.get_subcommands({})) {
    sub->add_option("--config", path, help)->configurable(false);
  }
}

void apply_config(CLI::App& app, const std::string& path, bool required) {
  if (path.empty()) return;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) {
    if (required) fail(path, "not found");
    return;
  }
  if (!fs::is_regular_file(st)) fail(path, "not a regular file");
  const uintmax_t size = fs::file_size(path, ec);
  if (ec || size > kMaxConfigBytes) {
    fail(path, "larger than " + std::to_string(kMaxConfigBytes >> 10) + " KiB");
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) fail(path, "cannot be read");

  CLI::ConfigTOML reader;
  std::vector<CLI::ConfigItem> items;
  try {
    items = reader.from_config(text);
  } catch (const CLI::Error& e) {
    fail(path, e.what());
  }

  std::vector<CLI::App*> chosen = app.get_subcommands();
  CLI::App* selected = chosen.empty() ? nullptr : chosen.front();
  for (const CLI::ConfigItem& item : items) {
    if (item.name == "++" || item.name == "--") continue;  // section markers
    const std::string key = item.fullname();
    if (reserved(item.name)) fail(path, "'" + key + "' cannot be set in a config file");
    if (item.parents.size() > 1)
      fail(path, "unknown section '" + item.parents[0] + "." + item.parents[1] +
                     "' (sections are subcommands)");
    CLI::Option* target = nullptr;
    if (item.parents.size() == 1) {
      CLI::App* sub = find_subcommand(app, item.parents[0]);
      if (sub == nullptr) {
        fail(path, "unknown section '[" + item.parents[0] + "]' (sections are subcommands)");
      }
      CLI::Option* opt = find_option(*sub, item.name);
      if (opt == nullptr) fail(path, "unknown key '" + key + "'");
      if (sub == selected) target = opt;
    } else {
      bool known = find_option(app, item.name) != nullptr;
      for (CLI::App* sub : app.get_subcommands({})) known = known || find_option(*sub, item.name);
      if (!known) fail(path, "unknown key '" + key + "'");
      if (selected != nullptr) target = find_option(*selected, item.name);
      if (target == nullptr) target = find_option(app, item.name);
    }
    // The command line and the environment (read by CLI11) come first.
    if (target == nullptr || target->count() > 0) continue;
    // Nor does a default that excludes what the command line chose
    // (`all-layers = true` against --layer).
    bool excluded = false;
    for (const CLI::Option* other : target->get_excludes())
      excluded = excluded || other->count() > 0;
    if (excluded) continue;
    try {
      if (target->get_expected_min() == 0) {  // a flag: true/false, on/off, 1/0
        target->add_result(target->get_flag_value(item.name, reader.to_flag(item)));
      } else {
        target->add_result(item.inputs);
      }
      target->run_callback();
    } catch (const CLI::Error& e) {
      fail(path, "'" + key + "': " + e.what());
    }
    applied().insert(target);
  }
}

bool set_by_config(const CLI::Option* option) { return applied().count(option) > 0; }

}  // namespace cnnviz::cli
