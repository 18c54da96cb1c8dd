#include "cnnviz/inputs.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <istream>

#include "cnnviz/error.h"

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

void read_list(std::istream& in, std::vector<std::string>& out) {
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.pop_back();
    }
    if (line.empty() || line[0] == '#') continue;
    out.push_back(line);
  }
}

}  // namespace

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> exts = {".jpg",  ".jpeg", ".png", ".bmp", ".tif", ".tiff",
                                                ".webp", ".ppm",  ".pgm", ".pbm", ".pnm", ".jp2"};
  return exts;
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& args,
                                       const std::string& list_file, std::istream& in) {
  std::vector<std::string> out;
  for (const std::string& arg : args) {
    std::error_code ec;
    if (!fs::is_directory(arg, ec)) {
      out.push_back(arg);
      continue;
    }
    std::vector<std::string> found;
    fs::recursive_directory_iterator it(arg, fs::directory_options::skip_permission_denied, ec),
        end;
    if (ec) throw Error(ErrorCode::kInput, "directory '" + arg + "': " + ec.message());
    for (; it != end; it.increment(ec)) {
      if (ec) throw Error(ErrorCode::kInput, "directory '" + arg + "': " + ec.message());
      std::error_code fe;
      if (!it->is_directory(fe) && is_image_name(it->path())) found.push_back(it->path().string());
    }
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  if (!list_file.empty()) {
    if (list_file == "-") {
      read_list(in, out);
    } else {
      std::ifstream f(list_file);
      if (!f) throw Error(ErrorCode::kInput, "list file '" + list_file + "': cannot be read");
      read_list(f, out);
    }
  }
  return out;
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
