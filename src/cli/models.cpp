#include "models.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <system_error>

#include "cnnviz/core/formats.h"

namespace fs = std::filesystem;

namespace cnnviz::cli {

namespace {

std::string size_text(uint64_t bytes) {
  char buf[32];
  if (bytes >= (1u << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  }
  return buf;
}

}  // namespace

CLI::App* setup_models(CLI::App& app, ModelsOptions& opts) {
  CLI::App* sub = app.add_subcommand(
      "models",
      "List the models found by name (architecture, weights, classes, size, path) and "
      "every directory searched, in order");
  opts.models_dir_option = add_models_dir_option(*sub, opts.models_dir);
  sub->add_flag("--json", opts.json, "Print JSON instead of a table");
  sub->add_flag("--names", opts.names, "Print only the names -m accepts, one per line");
  return sub;
}

int run_models(const ModelsOptions& opts, std::ostream& out, std::ostream& err) {
  const std::vector<ModelDir> path = models_search_path(opts.models_dir, opts.models_dir_option);
  const std::vector<ModelEntry> models = find_models(path);
  if (opts.names) {
    std::set<std::string> names;
    for (const ModelEntry& m : models) {
      if (m.problem.empty()) names.insert(m.name);
    }
    for (const std::string& n : names) out << n << "\n";
    return 0;
  }
  if (opts.json) {
    nlohmann::ordered_json doc;
    doc["format"] = format_name(Format::kModels);
    doc["format_version"] = format_version(Format::kModels);
    doc["search_path"] = nlohmann::ordered_json::array();
    for (const ModelDir& d : path) {
      std::error_code ec;
      doc["search_path"].push_back(
          {{"path", d.path}, {"source", d.source}, {"exists", fs::is_directory(d.path, ec)}});
    }
    doc["models"] = nlohmann::ordered_json::array();
    for (const ModelEntry& m : models) {
      nlohmann::ordered_json j{
          {"name", m.name},       {"path", m.path},   {"source", m.dir_source},
          {"arch", m.arch},       {"task", m.task},   {"weights", m.weights},
          {"classes", m.classes}, {"bytes", m.bytes}, {"shadowed", m.shadowed}};
      if (!m.problem.empty()) j["problem"] = m.problem;
      doc["models"].push_back(j);
    }
    out << doc.dump(2) << "\n";
    return 0;
  }
  out << "Searched, in order (the first NAME.pt, or ONNX file NAME, found wins):\n";
  for (size_t i = 0; i < path.size(); ++i) {
    std::error_code ec;
    const bool exists = fs::is_directory(path[i].path, ec);
    size_t n = 0;
    // By directory, not by path prefix (/m and /m2 are two directories).
    for (const ModelEntry& m : models) {
      n += fs::path(m.path).parent_path() == fs::path(path[i].path) ? 1 : 0;
    }
    out << "  " << i + 1 << ". " << path[i].path << "  (" << path[i].source << "; "
        << (exists ? std::to_string(n) + (n == 1 ? " model" : " models") : "does not exist")
        << ")\n";
  }
  if (models.empty()) {
    out << "\nNo models found. Export one: cnnviz-export vgg16 (or scripts/export_models.py "
           "vgg16 in the source tree)\n";
    return 0;
  }
  size_t wn = 4, wa = 4;
  for (const ModelEntry& m : models) {
    wn = std::max(wn, m.name.size());
    wa = std::max(wa, m.arch.size());
  }
  char line[256];
  std::snprintf(line, sizeof line, "\n%-*s  %-*s  %-10s  %7s  %10s  %s\n", static_cast<int>(wn),
                "NAME", static_cast<int>(wa), "ARCH", "WEIGHTS", "CLASSES", "SIZE", "PATH");
  out << line;
  for (const ModelEntry& m : models) {
    std::snprintf(line, sizeof line, "%-*s  %-*s  %-10s  %7s  %10s  ", static_cast<int>(wn),
                  m.name.c_str(), static_cast<int>(wa), m.arch.empty() ? "-" : m.arch.c_str(),
                  m.problem.empty() ? m.weights.c_str() : "unusable",
                  m.classes > 0 ? std::to_string(m.classes).c_str() : "-",
                  size_text(m.bytes).c_str());
    out << line << m.path;
    if (m.shadowed) out << "  (hidden by an earlier directory)";
    if (!m.problem.empty()) out << "  (" << m.problem << ")";
    out << "\n";
  }
  (void)err;
  return 0;
}

}  // namespace cnnviz::cli
