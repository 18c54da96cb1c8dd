#include "cnnviz/io/npy.h"

#include <cstring>
#include <numeric>
#include <regex>

#include "cnnviz/core/error.h"
#include "cnnviz/io/files.h"

namespace cnnviz {

namespace {

int64_t element_count(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

}  // namespace

std::string encode_npy(const NpyArray& array) {
  if (element_count(array.shape) != static_cast<int64_t>(array.data.size())) {
    throw Error(ErrorCode::kRuntime, "encode_npy: shape does not match the data size");
  }
  std::string dims;
  for (size_t i = 0; i < array.shape.size(); ++i) {
    dims += (i ? ", " : "") + std::to_string(array.shape[i]);
  }
  if (array.shape.size() == 1) dims += ",";  // Python's one-element tuple "(3,)"
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + header length (2) + header, padded with spaces
  // and ended by '\n' to a multiple of 64 bytes.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes.push_back(static_cast<char>(header.size() & 0xFF));
  bytes.push_back(static_cast<char>(header.size() >> 8));
  bytes += header;
  const size_t payload = array.data.size() * sizeof(float);
  size_t offset = bytes.size();
  bytes.resize(offset + payload);
  // x86-64 is little-endian. An empty array has no buffer to copy from.
  if (payload > 0) std::memcpy(&bytes[offset], array.data.data(), payload);
  return bytes;
}

void write_npy(const std::string& path, const NpyArray& array) {
  const std::string bytes = encode_npy(array);
  write_file_atomic(path, bytes.data(), bytes.size());
}

NpyArray read_npy(const std::string& path) {
  std::vector<uint8_t> b = read_file(path, "npy file", size_t{1} << 31);
  auto fail = [&](const std::string& problem) -> Error {
    return Error(ErrorCode::kInput, "npy file '" + path + "': " + problem);
  };
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) throw fail("not a .npy file");
  size_t header_len = 0, start = 0;
  if (b[6] == 1) {
    header_len = b[8] | (b[9] << 8);
    start = 10;
  } else {
    if (b.size() < 12) throw fail("truncated header");
    header_len = b[8] | (b[9] << 8) | (b[10] << 16) | (static_cast<size_t>(b[11]) << 24);
    start = 12;
  }
  if (start + header_len > b.size()) throw fail("truncated header");
  std::string header(b.begin() + start, b.begin() + start + header_len);
  if (header.find("'<f4'") == std::string::npos) throw fail("dtype is not little-endian float32");
  if (header.find("'fortran_order': False") == std::string::npos) throw fail("not C order");
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'shape': \\(([0-9, ]*)\\)"))) {
    throw fail("no shape in header");
  }
  NpyArray array;
  std::string dims = m[1];
  std::regex number("[0-9]+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number);
       it != std::sregex_iterator(); ++it) {
    array.shape.push_back(std::stoll(it->str()));
  }
  const size_t count = static_cast<size_t>(element_count(array.shape));
  const size_t offset = start + header_len;
  if (b.size() - offset != count * sizeof(float)) throw fail("data size does not match its shape");
  array.data.resize(count);
  // An empty array (shape (0,)) has no data to copy, nor a buffer to copy to.
  if (count > 0) std::memcpy(array.data.data(), b.data() + offset, count * sizeof(float));
  return array;
}

}  // namespace cnnviz
