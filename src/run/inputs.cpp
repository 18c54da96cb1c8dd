#include "cnnviz/run/inputs.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <istream>

#include "cnnviz/core/error.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/io/files.h"

namespace fs = std::filesystem;

namespace cnnviz {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool is_image_name(const fs::path& p) {
  const std::string ext = lower(p.extension().string());
  const auto& known = image_extensions();
  return std::find(known.begin(), known.end(), ext) != known.end();
}

// One path per NUL-terminated entry, exactly as written, when the text ends
// with a NUL byte (`find -print0`, `xargs -0` and `printf '%s\0'` end every
// name with one); else one path per line (trailing spaces and CRs dropped;
// blank lines and '#' comments skipped). A NUL byte inside a line is shown
// as "\0": no file has that name, so the entry fails alone, and its message
// stays one printable line.
void split_list(const std::string& text, std::vector<std::string>& out) {
  if (!text.empty() && text.back() == '\0') {
    size_t start = 0;
    for (size_t end; (end = text.find('\0', start)) != std::string::npos; start = end + 1) {
      if (end > start) out.push_back(text.substr(start, end - start));
    }
    return;
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.pop_back();
    }
    if (line.empty() || line[0] == '#') continue;
    for (size_t at; (at = line.find('\0')) != std::string::npos;) line.replace(at, 1, "\\0");
    out.push_back(line);
  }
}

std::string read_stream(std::istream& in, const std::string& name) {
  std::string text;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxListBytes) {
      throw Error(ErrorCode::kInput, "list file '" + name + "': too large (more than " +
                                         std::to_string(kMaxListBytes) + " bytes)");
    }
  }
  return text;
}

std::string first_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < 3; ++i) out += (i ? ", " : "") + names[i];
  return names.size() > 3 ? out + ", ..." : out;
}

}  // namespace

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> exts = {".jpg",  ".jpeg", ".png", ".bmp", ".tif", ".tiff",
                                                ".webp", ".ppm",  ".pgm", ".pbm", ".pnm", ".jp2"};
  return exts;
}

ExpandedInputs expand_inputs(const std::vector<std::string>& args, const std::string& list_file,
                             std::istream& in) {
  ExpandedInputs out;
  for (const std::string& arg : args) {
    std::error_code ec;
    if (!fs::is_directory(arg, ec)) {
      out.images.push_back(arg);
      continue;
    }
    std::vector<std::string> found, other, irregular;
    fs::recursive_directory_iterator it(arg, fs::directory_options::skip_permission_denied, ec),
        end;
    if (ec) throw Error(ErrorCode::kInput, "directory '" + arg + "': " + ec.message());
    for (; it != end; it.increment(ec)) {
      if (ec) throw Error(ErrorCode::kInput, "directory '" + arg + "': " + ec.message());
      std::error_code fe;
      const fs::file_status st = it->status(fe);  // follows links
      if (fs::is_directory(st)) continue;
      const std::string path = it->path().string();
      if (!is_image_name(it->path())) {
        other.push_back(it->path().filename().string());
      } else if (!fs::is_regular_file(st)) {
        // A FIFO or device would block or never end; a broken link fails.
        irregular.push_back(it->path().filename().string());
      } else {
        found.push_back(path);
      }
    }
    std::sort(found.begin(), found.end());
    out.images.insert(out.images.end(), found.begin(), found.end());
    if (!other.empty() || !irregular.empty()) {
      std::sort(other.begin(), other.end());
      std::sort(irregular.begin(), irregular.end());
      std::string note = "'" + arg + "': skipped ";
      if (!other.empty()) {
        note += std::to_string(other.size()) + " file" + (other.size() > 1 ? "s" : "") +
                " without an image extension (" + first_names(other) + ")";
      }
      if (!irregular.empty()) {
        note += std::string(other.empty() ? "" : " and ") + std::to_string(irregular.size()) +
                " that " + (irregular.size() > 1 ? "are" : "is") + " not a regular file (" +
                first_names(irregular) + ")";
      }
      out.notes.push_back(note);
    }
  }
  if (!list_file.empty()) {
    const std::string text = list_file == "-" ? read_stream(in, "-") : [&] {
      const std::vector<uint8_t> bytes = read_file(list_file, "list file", kMaxListBytes);
      return std::string(bytes.begin(), bytes.end());
    }();
    split_list(text, out.images);
  }
  return out;
}

std::vector<std::string> parse_labels(const std::string& text, const std::string& path) {
  auto fail = [&](const std::string& problem) {
    return Error(ErrorCode::kInput, "labels file '" + path + "': " + problem);
  };
  if (text.find('\0') != std::string::npos) throw fail("not text (holds a NUL byte)");
  std::vector<std::string> labels;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.size() > kMaxMetadataString) {
      throw fail("line " + std::to_string(labels.size() + 1) + " is longer than " +
                 std::to_string(kMaxMetadataString) + " bytes");
    }
    labels.push_back(std::move(line));
    if (labels.size() > static_cast<size_t>(kMaxClasses) + 1) {
      throw fail("more than " + std::to_string(kMaxClasses) + " labels");
    }
  }
  while (!labels.empty() && labels.back().empty()) labels.pop_back();
  if (labels.empty()) throw fail("no labels");
  if (labels.size() > static_cast<size_t>(kMaxClasses)) {
    throw fail("more than " + std::to_string(kMaxClasses) + " labels");
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i].empty()) {
      throw fail("line " + std::to_string(i + 1) + " is empty (one class name per line)");
    }
  }
  return labels;
}

std::vector<std::string> read_labels(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path, "labels file", kMaxLabelsBytes);
  return parse_labels(std::string(bytes.begin(), bytes.end()), path);
}

namespace {

std::string normal_path(const std::string& p) { return fs::path(p).lexically_normal().string(); }

// The fields of one line: tab-separated when it holds a tab, else CSV.
// Returns false for an unclosed quote.
bool split_fields(const std::string& line, std::vector<std::string>& fields) {
  fields.clear();
  const char sep = line.find('\t') != std::string::npos ? '\t' : ',';
  auto trim = [](std::string s) {
    const size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  };
  size_t i = 0;
  while (true) {
    std::string field;
    while (i < line.size() && line[i] == ' ') ++i;
    if (sep == ',' && i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          closed = true;
          ++i;
          break;
        }
        field += line[i++];
      }
      if (!closed) return false;
      while (i < line.size() && line[i] != sep) field += line[i++];
    } else {
      while (i < line.size() && line[i] != sep) field += line[i++];
    }
    fields.push_back(trim(field));
    if (i >= line.size()) break;
    ++i;  // the separator
  }
  return true;
}

}  // namespace

std::string fnv1a_hex(const void* data, size_t size) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ p[i]) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

TargetsFile parse_targets(const std::string& text, const std::string& path) {
  auto fail = [&](size_t line, const std::string& problem) {
    return Error(ErrorCode::kInput, "targets file '" + path + "'" +
                                        (line ? " line " + std::to_string(line) : "") + ": " +
                                        problem);
  };
  if (text.find('\0') != std::string::npos) throw fail(0, "not text (holds a NUL byte)");
  if (!valid_utf8(text)) throw fail(0, "not UTF-8 text");
  TargetsFile file;
  file.path = path;
  file.digest = fnv1a_hex(text.data(), text.size());

  const size_t max_line = kMaxMetadataString * 4;
  std::vector<std::string> fields;
  bool first = true;
  size_t start = 0, number = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a BOM
    if (line.size() > max_line) {
      throw fail(number, "longer than " + std::to_string(max_line) + " bytes");
    }
    if (line.find_first_not_of(" \t") == std::string::npos || line[0] == '#') continue;
    if (!split_fields(line, fields)) throw fail(number, "a quote is not closed");
    const bool header = first && (lower(fields[0]) == "image" || lower(fields[0]) == "path" ||
                                  lower(fields[0]) == "file" || lower(fields[0]) == "filename");
    first = false;
    if (header) continue;
    if (fields[0].empty()) throw fail(number, "no image (the first field is empty)");
    if (fields.size() < 2) {
      throw fail(number,
                 "no class after '" + fields[0] + "' (expected: image, then one or more classes)");
    }
    if (fields.size() - 1 > static_cast<size_t>(kMaxTop)) {
      throw fail(number, "more than " + std::to_string(kMaxTop) + " classes");
    }
    TargetRow row{fields[0], {fields.begin() + 1, fields.end()}, number};
    for (size_t f = 0; f < row.classes.size(); ++f) {
      if (row.classes[f].empty()) {
        throw fail(number, "field " + std::to_string(f + 2) + " is empty (a class index or label)");
      }
    }
    const bool bare = row.image.find('/') == std::string::npos;
    std::map<std::string, size_t>& index = bare ? file.by_name : file.by_path;
    const std::string key = bare ? row.image : normal_path(row.image);
    auto [it, added] = index.emplace(key, file.rows.size());
    if (!added) {
      throw fail(number, "image '" + row.image + "' is also on line " +
                             std::to_string(file.rows[it->second].line));
    }
    file.rows.push_back(std::move(row));
  }
  if (file.rows.empty()) throw fail(0, "no rows (expected: image, then one or more classes)");
  return file;
}

TargetsFile read_targets(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path, "targets file", kMaxListBytes);
  return parse_targets(std::string(bytes.begin(), bytes.end()), path);
}

const TargetRow* TargetsFile::find(const std::string& image) const {
  auto p = by_path.find(normal_path(image));
  if (p != by_path.end()) return &rows[p->second];
  // A bare name also matches an input given as a bare name ("cat.jpg").
  auto n = by_name.find(fs::path(image).filename().string());
  if (n != by_name.end()) return &rows[n->second];
  return nullptr;
}

std::string Shard::name() const {
  return "shard-" + std::to_string(index) + "-of-" + std::to_string(count);
}

Shard parse_shard(const std::string& text) {
  const size_t slash = text.find('/');
  auto bad = [&]() {
    return Error(ErrorCode::kUsage, "--shard " + text + ": expected K/N with 1 <= K <= N");
  };
  if (slash == std::string::npos || slash == 0 || slash + 1 == text.size()) throw bad();
  const std::string k = text.substr(0, slash), n = text.substr(slash + 1);
  auto digits = [](const std::string& s) {
    return s.size() < 10 && std::all_of(s.begin(), s.end(), ::isdigit);
  };
  if (!digits(k) || !digits(n)) throw bad();
  Shard s{std::stoul(k), std::stoul(n)};
  if (s.count < 1 || s.index < 1 || s.index > s.count) throw bad();
  return s;
}

std::vector<size_t> shard_positions(size_t n, const Shard& shard) {
  std::vector<size_t> positions;
  for (size_t i = shard.index - 1; i < n; i += shard.count) positions.push_back(i);
  return positions;
}

}  // namespace cnnviz
