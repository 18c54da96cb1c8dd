#include "cnnviz/run/manifest.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <regex>
#include <set>
#include <tuple>

#include "cnnviz/core/error.h"
#include "cnnviz/core/formats.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/io/files.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {

json model_json(const ModelInfo& info) {
  return {{"name", info.name},
          {"path", info.path},
          {"arch", info.arch},
          {"weights",
           {{"kind", weights_kind_name(info.weights_kind)}, {"source", info.weights_source}}},
          {"channels", info.preprocess.channels}};
}

json input_json(int channels, bool grey) {
  json conversion = nullptr;
  if (channels == 1 && !grey) conversion = "rgb to grey (ITU-R 601 luma)";
  if (channels == 3 && grey) conversion = "grey to rgb (copied)";
  return {{"grey", grey}, {"conversion", conversion}};
}

namespace {

// Names a run writes in OUTDIR itself; an image directory must not take one
// (manifest.json.png would otherwise become the directory manifest.json).
bool reserved_name(const std::string& name) {
  static const std::regex kReserved(R"((manifest|journal|evaluate)(\..*)?|index\.html|\..*)",
                                    std::regex::icase);
  return std::regex_match(name, kReserved);
}

// `s` with every byte that is not part of valid UTF-8 replaced by '_'.
std::string utf8_or_underscores(const std::string& s) {
  if (valid_utf8(s)) return s;
  std::string out;
  for (size_t i = 0; i < s.size();) {
    // The longest valid sequence starting here (1 to 4 bytes), else one '_'.
    size_t n = 0;
    for (size_t len = 4; len >= 1; --len) {
      if (i + len <= s.size() && valid_utf8(std::string_view(s).substr(i, len))) {
        n = len;
        break;
      }
    }
    if (n == 0) {
      out += '_';
      ++i;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

std::string to_hex(const std::string& s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string from_hex(const std::string& hex) {
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  if (hex.size() % 2 != 0) return out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = digit(hex[i]), lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

}  // namespace

std::vector<std::string> unique_stems(const std::vector<std::string>& images) {
  std::vector<std::string> stems;
  std::set<std::string> used;
  for (const std::string& image : images) {
    std::string stem = utf8_or_underscores(fs::path(image).stem().string());
    if (stem.empty() || stem == "." || stem == "..") stem = "image";
    if (reserved_name(stem)) stem += "-image";
    std::string name = stem;
    for (int k = 2; used.count(name); ++k) name = stem + "-" + std::to_string(k);
    used.insert(name);
    stems.push_back(name);
  }
  return stems;
}

void set_image_name(json& entry, const std::string& image) {
  entry["image"] = image;
  if (!valid_utf8(image)) entry["image_hex"] = to_hex(image);
}

std::string image_name(const json& entry) {
  if (entry.contains("image_hex") && entry["image_hex"].is_string()) {
    return from_hex(entry["image_hex"].get<std::string>());
  }
  return entry.contains("image") && entry["image"].is_string() ? entry["image"].get<std::string>()
                                                               : std::string();
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

OutputDir::OutputDir(const std::string& dir) : dir_(dir), exceptions_(std::uncaught_exceptions()) {
  std::error_code ec;
  created_ = !fs::exists(dir, ec);
  make_output_dir(dir);
}

OutputDir::~OutputDir() {
  if (!created_ || std::uncaught_exceptions() <= exceptions_) return;
  std::error_code ec;
  if (fs::is_empty(dir_, ec) && !ec) fs::remove(dir_, ec);
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
  // O_NOFOLLOW: a link named journal.jsonl must not get lines appended to
  // whatever it points to.
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0) {
    if (errno == ELOOP) {
      throw Error(ErrorCode::kOutput, "'" + path +
                                          "' is a symbolic link: refusing to write through it "
                                          "(remove it, or use another output directory)");
    }
    throw Error(ErrorCode::kOutput, "cannot write '" + path + "': " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw Error(ErrorCode::kOutput, "'" + path + "' is not a regular file");
  }
  // A run killed in the middle of a line (a full disk) leaves a line
  // without its newline: end it, so that the next entry is a line of its own.
  if (st.st_size > 0) {
    char last = '\n';
    if (::pread(fd_, &last, 1, st.st_size - 1) == 1 && last != '\n') {
      if (::write(fd_, "\n", 1) != 1) {
        ::close(fd_);
        fd_ = -1;
        throw Error(ErrorCode::kOutput, "cannot write '" + path + "': " + std::strerror(errno));
      }
    }
  }
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

void Journal::append(const json& entry, const std::string& run_key) {
  json line{{"format", format_name(Format::kJournal)},
            {"format_version", format_version(Format::kJournal)}};
  line.update(entry);
  line["run_key"] = run_key;
  const std::string text = dump_json(line) + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  if (::write(fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fdatasync(fd_) != 0) {
    throw Error(ErrorCode::kOutput, "cannot write '" + path_ + "': " + std::strerror(errno));
  }
}

namespace {

// Calls `line` for each line of `path` of at most `max_line` bytes (longer
// ones are skipped without being held in memory); nothing when the file is
// not a regular file or cannot be opened.
void for_each_line(const std::string& path, size_t max_line,
                   const std::function<void(const std::string&)>& line) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
  if (fd < 0) return;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return;
  }
  std::string current;
  bool too_long = false;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n') {
        if (!too_long) line(current);
        current.clear();
        too_long = false;
      } else if (!too_long) {
        current += buf[i];
        if (current.size() > max_line) {
          too_long = true;
          current.clear();
        }
      }
    }
  }
  if (!too_long && !current.empty()) line(current);
  ::close(fd);
}

// A path a manifest may list: relative, inside OUTDIR ("a/b.png", never
// "/etc/passwd" or "../x").
bool safe_relative_path(const std::string& path) {
  if (path.empty() || path[0] == '/' || path.find('\0') != std::string::npos) return false;
  for (const auto& part : fs::path(path)) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

namespace {

// Whether `fd` is still the file at `path` (a holder that ended removed it).
bool still_linked(int fd, const std::string& path) {
  struct stat opened {}, named {};
  return ::fstat(fd, &opened) == 0 && ::stat(path.c_str(), &named) == 0 &&
         opened.st_dev == named.st_dev && opened.st_ino == named.st_ino;
}

}  // namespace

RunLock::RunLock(const std::string& outdir, const std::string& name)
    : path_((fs::path(outdir) / (".cnnviz-lock." + name)).string()) {
  const std::string& path = path_;
  for (int attempt = 0;; ++attempt) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd_ < 0) {
      throw Error(ErrorCode::kOutput,
                  "cannot lock '" + outdir + "' (" + path + ": " + std::strerror(errno) + ")");
    }
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0 || still_linked(fd_, path) || attempt == 100) break;
    ::close(fd_);  // locked a file its holder removed as it ended: take the new one
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) {
      throw Error(ErrorCode::kOutput,
                  "output directory '" + outdir + "' is in use by another cnnviz run" +
                      (name.rfind("shard-", 0) == 0 ? " of " + name : std::string()) +
                      ": wait for it to finish, or write to another directory with -o");
    }
    throw Error(ErrorCode::kOutput, "cannot lock '" + outdir + "': " + std::strerror(err));
  }
}

RunLock::~RunLock() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());  // while still holding the lock
  ::close(fd_);             // releases the flock
}

void check_image_dir(const std::string& outdir, const std::string& subdir) {
  const std::string path = (fs::path(outdir) / subdir).string();
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;  // not there yet: created as a directory
  if (S_ISLNK(st.st_mode)) {
    throw Error(ErrorCode::kOutput, "'" + path +
                                        "' is a symbolic link: refusing to write maps through it "
                                        "(remove it, or use another output directory)");
  }
  if (!S_ISDIR(st.st_mode)) {
    throw Error(ErrorCode::kOutput,
                "'" + path + "' is in the way of an image's directory (it is not a directory)");
  }
}

std::map<std::string, json> read_journals(const std::string& outdir, const std::string& run_key) {
  std::map<std::string, json> found;
  for (const RunFile& j : find_run_files(outdir, "journal", ".jsonl")) {
    for_each_line((fs::path(outdir) / j.name).string(), kMaxJournalLineBytes,
                  [&](const std::string& line) {
                    json e = try_parse_json(line);
                    if (e.is_discarded() || !e.is_object()) return;
                    if (!e.contains("run_key") || e["run_key"] != run_key) return;
                    if (e.contains("error") || !e.contains("files") || !e["files"].is_array()) {
                      return;
                    }
                    const std::string image = image_name(e);
                    if (image.empty()) return;
                    e.erase("run_key");
                    e.erase("format");
                    e.erase("format_version");
                    found[image] = std::move(e);
                  });
  }
  return found;
}

bool outputs_complete(const std::string& outdir, const json& entry) {
  if (!entry.contains("files") || !entry["files"].is_array() || entry["files"].empty()) {
    return false;
  }
  for (const json& f : entry["files"]) {
    if (!f.is_object() || !f.contains("path") || !f["path"].is_string()) return false;
    const std::string path = f["path"].get<std::string>();
    // Only files inside OUTDIR, and only regular ones (not a link to one).
    if (!safe_relative_path(path)) return false;
    struct stat st {};
    if (::lstat((fs::path(outdir) / path).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return false;
    }
  }
  return true;
}

namespace {

template <typename Numbers>
std::string comma_list(const Numbers& numbers) {
  std::string list;
  for (long n : numbers) list += (list.empty() ? "" : ", ") + std::to_string(n);
  return list;
}

Error not_a_manifest(const std::string& path, const std::string& problem) {
  return Error(ErrorCode::kInput,
               "merge: '" + path + "' is not a cnnviz manifest (" + problem + ")");
}

std::vector<RunFile> shard_manifests(const std::string& outdir) {
  std::vector<RunFile> shards = find_run_files(outdir, "manifest", ".json");
  shards.erase(
      std::remove_if(shards.begin(), shards.end(), [](const RunFile& f) { return f.n == 0; }),
      shards.end());
  if (shards.empty()) {
    throw Error(ErrorCode::kInput, "merge: no manifest.shard-*.json in '" + outdir + "'");
  }
  return shards;
}

// N, which must be the same for every shard: one run's shards.
long shard_count(const std::string& outdir, const std::vector<RunFile>& shards) {
  std::set<long> counts;
  for (const RunFile& f : shards) counts.insert(f.n);
  if (counts.size() > 1) {
    throw Error(ErrorCode::kInput, "merge: '" + outdir + "' holds shards of runs split " +
                                       comma_list(counts) +
                                       " ways: remove the stale ones (or use another -o per run)");
  }
  return counts.count(0) ? 0 : *counts.begin();
}

// The K of 1..n that no shard has; each shard's K must be one of them.
std::vector<long> missing_shards(const std::vector<RunFile>& shards, long n) {
  std::set<long> present;
  for (const RunFile& f : shards) {
    if (f.k < 1 || f.k > f.n) {
      throw Error(ErrorCode::kInput, "merge: '" + f.name + "': shard " + std::to_string(f.k) +
                                         " of " + std::to_string(f.n) + " cannot exist");
    }
    present.insert(f.k);
  }
  std::vector<long> missing;
  for (long k = 1; k <= n; ++k) {
    if (!present.count(k)) missing.push_back(k);
  }
  return missing;
}

json read_shard(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path, "merge: manifest", kMaxManifestBytes);
  json doc = parse_json(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                        "merge: '" + path + "'", ErrorCode::kInput);
  if (!doc.is_object() || !doc.contains("images") || !doc["images"].is_array()) {
    throw not_a_manifest(path, "no \"images\" list");
  }
  return doc;
}

bool same_settings(const json& a, const json& b) {
  return a.value("method", json()) == b.value("method", json()) &&
         a.value("model", json()) == b.value("model", json()) &&
         a.value("layers", json()) == b.value("layers", json()) &&
         a.value("options", json()) == b.value("options", json());
}

// Moves the shard's image entries into `images`, by their index in the whole
// input list.
void take_images(json& doc, const std::string& path, std::map<size_t, json>& images) {
  for (json& e : doc["images"]) {
    if (!e.is_object()) throw not_a_manifest(path, "an image entry is not an object");
    size_t index = images.size();
    if (e.contains("index")) {
      if (!e["index"].is_number_unsigned() && !e["index"].is_number_integer()) {
        throw not_a_manifest(path, "an image's index is not a number");
      }
      if (e["index"].get<int64_t>() < 0) throw not_a_manifest(path, "an image's index is negative");
      index = e["index"].get<size_t>();
    }
    images[index] = std::move(e);
  }
}

void add_summary(const json& doc, const std::string& path, json& totals) {
  const json summary =
      doc.contains("summary") && doc["summary"].is_object() ? doc["summary"] : json::object();
  for (const char* k : {"images", "written", "failed", "skipped"}) {
    if (summary.contains(k)) {
      if (!summary[k].is_number_unsigned())
        throw not_a_manifest(path, std::string("summary.") + k + " is not a count");
      totals[k] = totals[k].get<size_t>() + summary[k].get<size_t>();
    }
  }
  if (summary.contains("interrupted")) {
    if (!summary["interrupted"].is_boolean())
      throw not_a_manifest(path, "summary.interrupted is not true or false");
    totals["interrupted"] = totals["interrupted"].get<bool>() || summary["interrupted"].get<bool>();
  }
}

// The shards read: the first one's document, every shard's images, and their
// summaries summed.
struct Shards {
  json first;
  std::map<size_t, json> images;
  json totals = {
      {"images", 0}, {"written", 0}, {"failed", 0}, {"skipped", 0}, {"interrupted", false}};
};

Shards read_shards(const std::string& outdir, const std::vector<RunFile>& shards) {
  Shards read;
  for (const RunFile& s : shards) {
    const std::string path = (fs::path(outdir) / s.name).string();
    json doc = read_shard(path);
    if (read.first.is_null()) {
      read.first = doc;
    } else if (!same_settings(doc, read.first)) {
      throw Error(ErrorCode::kInput, "merge: '" + path +
                                         "' comes from a run with other settings than '" +
                                         (fs::path(outdir) / shards[0].name).string() + "'");
    }
    take_images(doc, path, read.images);
    add_summary(doc, path, read.totals);
  }
  return read;
}

}  // namespace

MergeResult merge_manifests(const std::string& outdir, bool partial) {
  const std::vector<RunFile> shards = shard_manifests(outdir);
  MergeResult result;
  result.shards = shard_count(outdir, shards);
  result.missing = missing_shards(shards, result.shards);
  if (!result.missing.empty() && !partial) {
    throw Error(ErrorCode::kInput, "merge: shard" +
                                       std::string(result.missing.size() > 1 ? "s " : " ") +
                                       comma_list(result.missing) + " of " +
                                       std::to_string(result.shards) + " missing in '" + outdir +
                                       "' (run them, or merge what is there with --partial)");
  }
  Shards read = read_shards(outdir, shards);
  json merged = std::move(read.first);
  merged["shard"] = nullptr;
  merged["merged_from"] = json::array();
  for (const RunFile& s : shards) merged["merged_from"].push_back(s.name);
  if (!result.missing.empty()) merged["missing_shards"] = result.missing;
  merged["images"] = json::array();
  for (auto& [i, e] : read.images) merged["images"].push_back(std::move(e));
  merged["summary"] = read.totals;
  const std::string text = dump_json(merged, 2) + "\n";
  write_file_atomic((fs::path(outdir) / "manifest.json").string(), text.data(), text.size());
  result.images = read.images.size();
  return result;
}

}  // namespace cnnviz
