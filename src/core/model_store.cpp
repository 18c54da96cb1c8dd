#include "cnnviz/model_store.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "cnnviz/error.h"

namespace fs = std::filesystem;

namespace cnnviz {

std::string builtin_models_dir() { return CNNVIZ_BUILTIN_MODELS_DIR; }

std::vector<std::string> list_models(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.extension() == ".pt" && it->is_regular_file(ec)) names.push_back(p.stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string resolve_model(const std::string& name_or_path, const std::string& dir) {
  if (name_or_path.empty()) throw Error(ErrorCode::kUsage, "--model: empty model name");
  std::error_code ec;
  const bool looks_like_path =
      name_or_path.find('/') != std::string::npos || fs::path(name_or_path).extension() == ".pt";
  if (looks_like_path || fs::exists(name_or_path, ec)) {
    if (!fs::exists(name_or_path, ec)) {
      throw Error(ErrorCode::kModel, "model file '" + name_or_path + "': not found");
    }
    return name_or_path;
  }
  fs::path candidate = fs::path(dir) / (name_or_path + ".pt");
  if (fs::exists(candidate, ec)) return candidate.string();

  std::vector<std::string> found = list_models(dir);
  std::string available;
  for (const std::string& n : found) available += (available.empty() ? "" : ", ") + n;
  if (available.empty()) available = "none";
  throw Error(ErrorCode::kModel,
              "model '" + name_or_path + "': not found in " + dir + " (available: " + available +
                  "; export it with: scripts/export_models.py " + name_or_path + ")");
}

}  // namespace cnnviz
