#include "cnnviz/core/model_store.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <system_error>

#include "cnnviz/core/error.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/onnx.h"

namespace fs = std::filesystem;

namespace cnnviz {

namespace {

// The running binary's directory; empty when /proc is not mounted.
fs::path exe_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}

bool same_dir(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return !a.empty() && !b.empty() && fs::equivalent(a, b, ec) && !ec;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

std::string user_models_dir() {
  // XDG Base Directory: a relative $XDG_DATA_HOME is invalid and ignored.
  const std::string xdg = env("XDG_DATA_HOME");
  if (!xdg.empty() && xdg[0] == '/') return (fs::path(xdg) / "cnnviz" / "models").string();
  const std::string home = env("HOME");
  if (home.empty()) return "";
  return (fs::path(home) / ".local" / "share" / "cnnviz" / "models").string();
}

std::vector<ModelDir> model_search_path(const ModelDir& chosen) {
  std::vector<ModelDir> path;
  if (!chosen.path.empty()) path.push_back(chosen);
  const std::string user = user_models_dir();
  if (!user.empty()) path.push_back({user, "user data directory"});
  const fs::path bin = exe_dir();
  if (same_dir(bin, CNNVIZ_BUILD_DIR)) {
    path.push_back({CNNVIZ_BUILTIN_MODELS_DIR, "source tree (binary run from its build tree)"});
  } else if (!bin.empty()) {
    path.push_back(
        {(bin.parent_path() / "share" / "cnnviz" / "models").string(), "installation prefix"});
  }
  return path;
}

namespace {

// The file of a model named `name` in a models directory: NAME.pt, or the
// ONNX file itself.
std::string model_file(const std::string& name) {
  return is_onnx_path(name) || fs::path(name).extension() == ".pt" ? name : name + ".pt";
}

}  // namespace

std::vector<std::string> list_models(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    // TorchScript models by their stem, ONNX models by their file name.
    if (p.extension() == ".pt" && it->is_regular_file(ec)) names.push_back(p.stem().string());
    if (is_onnx_path(p.string()) && it->is_regular_file(ec)) names.push_back(p.filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string resolve_model(const std::string& name_or_path, const std::vector<ModelDir>& path) {
  if (name_or_path.empty()) throw Error(ErrorCode::kUsage, "--model: empty model name");
  std::error_code ec;
  // (An ONNX file name without a folder is looked up in the models path too.)
  const bool looks_like_path =
      name_or_path.find('/') != std::string::npos || fs::path(name_or_path).extension() == ".pt";
  if (looks_like_path || fs::exists(name_or_path, ec)) {
    if (!fs::exists(name_or_path, ec)) {
      throw Error(ErrorCode::kModel, "model file '" + name_or_path + "': not found");
    }
    return name_or_path;
  }
  for (const ModelDir& dir : path) {
    const fs::path candidate = fs::path(dir.path) / model_file(name_or_path);
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
  }
  std::set<std::string> found;
  std::string looked;
  for (const ModelDir& dir : path) {
    looked += (looked.empty() ? "" : ", ") + dir.path;
    for (const std::string& n : list_models(dir.path)) found.insert(n);
  }
  std::string available;
  for (const std::string& n : found) available += (available.empty() ? "" : ", ") + n;
  if (available.empty()) available = "none";
  if (looked.empty()) looked = "no models directory";
  throw Error(ErrorCode::kModel,
              "model '" + name_or_path + "': not found in " + looked + " (available: " + available +
                  "; export it with: cnnviz-export " + name_or_path +
                  ", or scripts/export_models.py " + name_or_path + " in the source tree)");
}

std::string resolve_model(const std::string& name_or_path, const std::string& dir) {
  return resolve_model(name_or_path, std::vector<ModelDir>{{dir, "--models-dir"}});
}

std::vector<ModelEntry> find_models(const std::vector<ModelDir>& path) {
  std::vector<ModelEntry> entries;
  std::set<std::string> seen;
  for (const ModelDir& dir : path) {
    for (const std::string& name : list_models(dir.path)) {
      ModelEntry e;
      e.name = name;
      e.path = (fs::path(dir.path) / model_file(name)).string();
      e.dir_source = dir.source;
      e.shadowed = !seen.insert(name).second;
      std::error_code ec;
      e.bytes = fs::file_size(e.path, ec);
      try {
        const ModelInfo info = read_model_info(e.path);
        e.arch = info.arch;
        e.task = task_name(info.task);
        e.weights = info.has_metadata ? weights_kind_name(info.weights_kind) : "unknown";
        e.classes =
            !info.labels.empty() ? static_cast<int64_t>(info.labels.size()) : info.num_classes;
      } catch (const Error& err) {
        e.problem = err.what();
      }
      entries.push_back(std::move(e));
    }
  }
  return entries;
}

}  // namespace cnnviz
