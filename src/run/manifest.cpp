#include "cnnviz/manifest.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <tuple>

#include "cnnviz/error.h"
#include "cnnviz/files.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {

json model_json(const ModelInfo& info) {
  return {{"name", info.name},
          {"path", info.path},
          {"arch", info.arch},
          {"weights",
           {{"kind", weights_kind_name(info.weights_kind)}, {"source", info.weights_source}}}};
}

std::vector<std::string> unique_stems(const std::vector<std::string>& images) {
  std::vector<std::string> stems;
  std::set<std::string> used;
  for (const std::string& image : images) {
    std::string stem = fs::path(image).stem().string();
    if (stem.empty() || stem == "." || stem == "..") stem = "image";
    std::string name = stem;
    for (int k = 2; used.count(name); ++k) name = stem + "-" + std::to_string(k);
    used.insert(name);
    stems.push_back(name);
  }
  return stems;
}

void make_output_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    throw Error(ErrorCode::kOutput,
                "cannot create output directory '" + dir + "': " + ec.message());
  }
  // Existing but read-only directories pass create_directories: probe.
  const std::string probe = (fs::path(dir) / ".cnnviz-write-test").string();
  write_file_atomic(probe, "", 0);
  fs::remove(probe, ec);
}

std::vector<RunFile> find_run_files(const std::string& outdir, const std::string& base,
                                    const std::string& extension) {
  std::vector<RunFile> found;
  std::error_code ec;
  if (fs::is_regular_file(fs::path(outdir) / (base + extension), ec)) {
    found.push_back({base + extension, 0, 0});
  }
  std::vector<RunFile> shards;
  // base and extension are cnnviz's own names ("manifest", ".json"): only
  // the extension's dot needs escaping.
  const std::regex shard(base + R"(\.shard-(\d{1,9})-of-(\d{1,9})\)" + extension);
  for (fs::directory_iterator it(outdir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::smatch m;
    std::error_code fe;
    if (std::regex_match(name, m, shard) && it->is_regular_file(fe)) {
      shards.push_back({name, std::stol(m[1]), std::stol(m[2])});
    }
  }
  std::sort(shards.begin(), shards.end(), [](const RunFile& a, const RunFile& b) {
    return std::tie(a.k, a.n, a.name) < std::tie(b.k, b.n, b.name);
  });
  found.insert(found.end(), shards.begin(), shards.end());
  return found;
}

Journal::Journal(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw Error(ErrorCode::kOutput, "cannot write '" + path + "': " + std::strerror(errno));
  }
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

void Journal::append(const json& entry, const std::string& run_key) {
  json line = entry;
  line["run_key"] = run_key;
  const std::string text = line.dump() + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  if (::write(fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fdatasync(fd_) != 0) {
    throw Error(ErrorCode::kOutput, "cannot write '" + path_ + "': " + std::strerror(errno));
  }
}

std::map<std::string, json> read_journals(const std::string& outdir, const std::string& run_key) {
  std::map<std::string, json> found;
  for (const RunFile& j : find_run_files(outdir, "journal", ".jsonl")) {
    std::ifstream in(fs::path(outdir) / j.name);
    for (std::string line; std::getline(in, line);) {
      json e = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (e.is_discarded() || !e.is_object() || e.value("run_key", "") != run_key) continue;
      if (e.contains("error") || !e.contains("files") || !e.contains("image")) continue;
      if (!e["image"].is_string() || !e["files"].is_array()) continue;
      e.erase("run_key");
      // Key first: json's by-value operator= would move `e` before the key is read.
      const std::string image = e["image"].get<std::string>();
      found[image] = std::move(e);
    }
  }
  return found;
}

bool outputs_complete(const std::string& outdir, const json& entry) {
  std::error_code ec;
  for (const json& f : entry["files"]) {
    if (!f.is_object() || !f.contains("path") || !f["path"].is_string()) return false;
    if (!fs::is_regular_file(fs::path(outdir) / f["path"].get<std::string>(), ec)) return false;
  }
  return !entry["files"].empty();
}

size_t merge_manifests(const std::string& outdir) {
  std::vector<RunFile> shards = find_run_files(outdir, "manifest", ".json");
  shards.erase(
      std::remove_if(shards.begin(), shards.end(), [](const RunFile& f) { return f.n == 0; }),
      shards.end());
  if (shards.empty()) {
    throw Error(ErrorCode::kInput, "merge: no manifest.shard-*.json in '" + outdir + "'");
  }
  json merged;
  std::map<size_t, json> images;
  json totals = {
      {"images", 0}, {"written", 0}, {"failed", 0}, {"skipped", 0}, {"interrupted", false}};
  for (const RunFile& s : shards) {
    const fs::path p = fs::path(outdir) / s.name;
    std::ifstream in(p);
    json doc = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.contains("images")) {
      throw Error(ErrorCode::kInput, "merge: '" + p.string() + "' is not a cnnviz manifest");
    }
    if (merged.is_null()) {
      merged = doc;
    } else if (doc["method"] != merged["method"] || doc["model"] != merged["model"] ||
               doc["layers"] != merged["layers"] || doc["options"] != merged["options"]) {
      throw Error(ErrorCode::kInput, "merge: '" + p.string() +
                                         "' comes from a run with other settings than '" +
                                         (fs::path(outdir) / shards[0].name).string() + "'");
    }
    for (json& e : doc["images"]) {
      const size_t index = e.value("index", images.size());
      images[index] = std::move(e);
    }
    for (const char* k : {"images", "written", "failed", "skipped"}) {
      totals[k] = totals[k].get<size_t>() + doc["summary"].value(k, size_t{0});
    }
    totals["interrupted"] =
        totals["interrupted"].get<bool>() || doc["summary"].value("interrupted", false);
  }
  merged["shard"] = nullptr;
  merged["merged_from"] = json::array();
  for (const RunFile& s : shards) merged["merged_from"].push_back(s.name);
  merged["images"] = json::array();
  for (auto& [i, e] : images) merged["images"].push_back(std::move(e));
  merged["summary"] = totals;
  const std::string text = merged.dump(2) + "\n";
  write_file_atomic((fs::path(outdir) / "manifest.json").string(), text.data(), text.size());
  return images.size();
}

}  // namespace cnnviz
