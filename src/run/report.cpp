// `cnnviz report`: the manifest(s) of a run become one static HTML page.
//
// The page is built in the browser from the data embedded as JSON, so the C++
// side only reads, checks and slims the manifests; the markup, style and
// filters live in assets/report/ (index.html, report.css, report.js),
// embedded into the binary at build time. Nothing is fetched: thumbnails
// are the run's own PNGs, by paths relative to OUTDIR, so the page works from
// file:// and keeps working when OUTDIR is moved or copied whole.
#include "cnnviz/run/report.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <tuple>
#include <vector>

#include "assets.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/version.h"
#include "cnnviz/io/files.h"
#include "cnnviz/run/manifest.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {

namespace {

constexpr const char* kManifest = "manifest.json";

Error bad_manifest(const std::string& path, const std::string& problem) {
  return Error(ErrorCode::kInput, "report: '" + path + "': " + problem);
}

// nlohmann's messages start with "[json.exception.<kind>.<id>] ".
std::string json_problem(const std::exception& e) {
  std::string s = first_line(e.what());
  if (s.rfind("[json.exception.", 0) == 0) {
    size_t end = s.find("] ");
    if (end != std::string::npos) s = s.substr(end + 2);
  }
  return s;
}

// manifest.json when it is there, else the shard manifests in increasing K
// (then N, for shards of runs with different shard counts).
std::vector<RunFile> find_manifests(const std::string& outdir) {
  std::vector<RunFile> files = find_run_files(outdir, "manifest", ".json");
  if (!files.empty() && files.front().n == 0) return {files.front()};
  if (files.empty()) {
    throw bad_manifest(outdir + "/" + kManifest,
                       "not found (run a visualization subcommand with -o " + outdir + " first)");
  }
  return files;
}

json read_manifest(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path, "report:", kMaxManifestBytes);
  // Depth-limited: nothing that walks the document later can run out of stack.
  const json doc =
      parse_json(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                 "report: '" + path + "'", ErrorCode::kInput);
  if (!doc.is_object() || !doc.contains("images") || !doc["images"].is_array()) {
    throw bad_manifest(path, "not a cnnviz manifest (no \"images\" array)");
  }
  return doc;
}

// The input image as a path relative to OUTDIR, when it can be found from
// here (an absolute path, or one relative to the current directory) and is a
// format browsers show; null otherwise.
json input_link(const std::string& image, const std::string& outdir) {
  static const std::set<std::string> kShown = {".png",  ".jpg", ".jpeg", ".gif",
                                               ".webp", ".bmp", ".avif"};
  std::string ext = fs::path(image).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  std::error_code ec;
  if (!kShown.count(ext) || !fs::is_regular_file(image, ec)) return nullptr;
  fs::path rel = fs::relative(fs::absolute(image, ec), fs::absolute(outdir, ec), ec);
  if (ec || rel.empty()) return nullptr;
  return rel.generic_string();
}

json pick(const json& from, std::initializer_list<const char*> keys) {
  json out = json::object();
  for (const char* k : keys) out[k] = from.contains(k) ? from[k] : json(nullptr);
  return out;
}

// The run's row: its source file, model, weights, method and layers.
json run_json(const RunFile& file, const json& doc) {
  const json model = doc.contains("model") && doc["model"].is_object() ? doc["model"] : json();
  return {{"source", file.name},
          {"model", model.is_object() ? model.value("name", "") : ""},
          {"weights", model.is_object() && model.contains("weights") && model["weights"].is_object()
                          ? model["weights"].value("kind", "")
                          : ""},
          {"method", doc.value("method", "")},
          {"layers", doc.contains("layers") ? doc["layers"] : json::array()}};
}

// Map files the manifests list that are not in OUTDIR, for one note.
struct MissingMaps {
  size_t count = 0;
  std::string first;
};

// The entry's PNG maps (flagged when the file is missing) and raw arrays.
void add_files(const json& e, const std::string& outdir, json& img, MissingMaps& missing) {
  img["maps"] = json::array();
  img["raw"] = json::array();
  for (const json& f : e.value("files", json::array())) {
    json m = pick(f, {"path", "method", "layer", "class", "detection", "query", "variant"});
    const std::string rel = f.at("path").get<std::string>();
    if (f.value("format", "") == "png") {
      std::error_code ec;
      if (!fs::exists(outdir + "/" + rel, ec)) {
        m["missing"] = true;
        if (missing.count++ == 0) missing.first = rel;
      }
      img["maps"].push_back(std::move(m));
    } else {
      img["raw"].push_back(std::move(m));
    }
  }
}

// One image of the page from its manifest entry (manifest `path`, run
// `run_index`).
json image_json(const json& e, const std::string& path, const std::string& outdir, size_t run_index,
                MissingMaps& missing) {
  if (!e.is_object() || !e.contains("image") || !e["image"].is_string()) {
    throw bad_manifest(path, "not a cnnviz manifest (an entry of \"images\" names no image)");
  }
  json img = {
      {"image", e.at("image").get<std::string>()}, {"dir", e.value("dir", "")}, {"run", run_index}};
  img["input"] = input_link(img["image"], outdir);
  if (e.contains("error")) img["error"] = e["error"].get<std::string>();
  img["warnings"] = e.value("warnings", json::array());
  img["predictions"] = json::array();
  for (const json& p : e.value("predictions", json::array())) {
    img["predictions"].push_back(pick(p, {"index", "label", "probability"}));
  }
  img["targets"] = json::array();
  for (const json& t : e.value("targets", json::array())) {
    img["targets"].push_back(pick(
        t, {"class", "label", "rank", "probability", "detection", "query", "detection_score", "area"}));
  }
  add_files(e, outdir, img, missing);
  return img;
}

// Shards: say when some are absent, or when stale shards of another run
// (a different N) were merged too.
void add_shard_notes(const std::vector<RunFile>& files, json& notes) {
  std::map<long, std::vector<long>> by_count;
  for (const RunFile& f : files) {
    if (f.n > 0) by_count[f.n].push_back(f.k);
  }
  if (by_count.size() > 1) {
    std::string counts;
    for (const auto& [n, ks] : by_count) counts += (counts.empty() ? "" : ", ") + std::to_string(n);
    notes.push_back("shard manifests of runs with different shard counts (" + counts +
                    ") were merged: images may repeat");
  } else if (by_count.size() == 1) {
    const auto& [n, ks] = *by_count.begin();
    if (static_cast<long>(ks.size()) < n) {
      notes.push_back("only " + std::to_string(ks.size()) + " of " + std::to_string(n) +
                      " shard manifests are present");
    }
  }
}

// What the page needs from the manifests: one run per manifest file, the
// images in order, their PNG maps (with a flag for files that are missing)
// and raw arrays, and notes about what could not be shown.
json report_data(const std::string& outdir, const std::vector<RunFile>& files) {
  json data;
  data["title"] = fs::absolute(outdir).lexically_normal().filename().string();
  if (data["title"] == "") data["title"] = outdir;
  data["generator"] = std::string("cnnviz ") + kVersion;
  data["runs"] = json::array();
  data["notes"] = json::array();
  data["images"] = json::array();
  MissingMaps missing;
  for (const RunFile& file : files) {
    const std::string path = outdir + "/" + file.name;
    const json doc = read_manifest(path);
    try {
      const size_t run_index = data["runs"].size();
      data["runs"].push_back(run_json(file, doc));
      for (const json& e : doc["images"]) {
        data["images"].push_back(image_json(e, path, outdir, run_index, missing));
      }
    } catch (const json::exception& e) {
      throw bad_manifest(path, "not a cnnviz manifest (" + json_problem(e) + ")");
    }
  }
  if (missing.count > 0) {
    data["notes"].push_back(std::to_string(missing.count) + " map file" +
                            (missing.count > 1 ? "s" : "") + " listed in the manifest " +
                            (missing.count > 1 ? "are" : "is") +
                            " missing (first: " + missing.first + ")");
  }
  add_shard_notes(files, data["notes"]);
  return data;
}

// JSON inside <script>: only "</script" (or "<!--") could end or confuse the
// element, and '<' appears in JSON only inside strings, where \u003c means
// the same.
std::string embed_json(const json& data) {
  const std::string text = data.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size() + 64);
  for (char c : text) {
    if (c == '<') {
      out += "\\u003c";
    } else {
      out += c;
    }
  }
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace

std::string write_report(const std::string& outdir_arg) {
  std::string outdir = outdir_arg;
  while (outdir.size() > 1 && outdir.back() == '/') outdir.pop_back();
  const std::vector<RunFile> files = find_manifests(outdir);
  const json data = report_data(outdir, files);

  // The page is assets/report/index.html with its {{placeholders}} filled
  // in one pass, so nothing inserted is read again as a placeholder.
  const std::string_view page = assets::report_html();
  const std::map<std::string_view, std::string> fills = {
      {"title", html_escape(data["title"].get<std::string>())},
      {"generator", std::string("cnnviz ") + kVersion},
      {"style", std::string(assets::common_css()) + std::string(assets::report_css())},
      {"data", embed_json(data)},
      {"script", std::string(assets::common_js()) + "\n" + std::string(assets::report_js())}};
  std::string html;
  html.reserve(page.size() + fills.at("data").size() + 16384);
  for (size_t at = 0;;) {
    const size_t open = page.find("{{", at);
    const size_t close = open == std::string_view::npos ? open : page.find("}}", open);
    if (close == std::string_view::npos) {
      html.append(page.substr(at));
      break;
    }
    auto it = fills.find(page.substr(open + 2, close - open - 2));
    if (it == fills.end()) {  // not a placeholder: keep the braces
      html.append(page.substr(at, open + 2 - at));
      at = open + 2;
      continue;
    }
    html.append(page.substr(at, open - at));
    html.append(it->second);
    at = close + 2;
  }

  const std::string path = outdir + "/index.html";
  write_file_atomic(path, html.data(), html.size());
  return path;
}

}  // namespace cnnviz
