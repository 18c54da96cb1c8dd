#include "image_size.h"

#include <cctype>
#include <cstring>

namespace cnnviz {

namespace {

// Bounds-checked reads; a read past the end makes `ok` false and gives 0.
struct Reader {
  const std::vector<uint8_t>& b;
  bool ok = true;

  uint64_t be(size_t at, int n) {
    if (at + static_cast<size_t>(n) > b.size() || at + static_cast<size_t>(n) < at) {
      ok = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | b[at + static_cast<size_t>(i)];
    return v;
  }
  uint64_t le(size_t at, int n) {
    if (at + static_cast<size_t>(n) > b.size() || at + static_cast<size_t>(n) < at) {
      ok = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[at + static_cast<size_t>(i)];
    return v;
  }
  bool is(size_t at, const char* text) {
    const size_t n = std::strlen(text);
    return at + n <= b.size() && std::memcmp(&b[at], text, n) == 0;
  }
};

std::optional<DeclaredSize> sized(Reader& r, int64_t width, int64_t height) {
  if (!r.ok || width <= 0 || height <= 0) return std::nullopt;
  return DeclaredSize{width, height};
}

std::optional<DeclaredSize> bmp(Reader& r) {
  const uint64_t header = r.le(14, 4);
  if (header == 12) return sized(r, int64_t(r.le(18, 2)), int64_t(r.le(20, 2)));
  const auto width = static_cast<int32_t>(r.le(18, 4));
  const auto height = static_cast<int32_t>(r.le(22, 4));  // negative: stored top-down
  return sized(r, width, height < 0 ? -int64_t{height} : height);
}

// "P6 # comment\n 640 480 255": the first two numbers after the magic, read
// as OpenCV reads them: the character that ends a number is consumed with
// it, so in "640#c\n480" the '#' starts no comment (found by fuzzing).
std::optional<DeclaredSize> pnm(const std::vector<uint8_t>& b) {
  int64_t numbers[2] = {0, 0};
  size_t i = 2;
  for (int64_t& n : numbers) {
    while (i < b.size() && (std::isspace(b[i]) || b[i] == '#')) {
      if (b[i] == '#') {
        while (i < b.size() && b[i] != '\n' && b[i] != '\r') ++i;
      } else {
        ++i;
      }
    }
    int digits = 0;
    for (; i < b.size() && b[i] >= '0' && b[i] <= '9'; ++i) {
      if (++digits > 10) return std::nullopt;
      n = n * 10 + (b[i] - '0');
    }
    if (digits == 0) return std::nullopt;
    ++i;  // the delimiter
  }
  if (numbers[0] <= 0 || numbers[1] <= 0) return std::nullopt;
  return DeclaredSize{numbers[0], numbers[1]};
}

// Classic TIFF: ImageWidth (256) and ImageLength (257) of the first IFD, as
// libtiff reads them: the first of duplicate entries (found by fuzzing: a
// second ImageWidth is ignored), any integer type that fits the entry.
std::optional<DeclaredSize> tiff(Reader& r) {
  const bool big_endian = r.b[0] == 'M';
  auto read = [&](size_t at, int n) { return big_endian ? r.be(at, n) : r.le(at, n); };
  const uint64_t ifd = read(4, 4);
  const uint64_t entries = read(ifd, 2);
  int64_t size[2] = {0, 0};
  for (uint64_t e = 0; e < entries && r.ok; ++e) {
    const size_t at = static_cast<size_t>(ifd + 2 + 12 * e);
    const uint64_t tag = read(at, 2), type = read(at + 2, 2);
    if ((tag != 256 && tag != 257) || size[tag - 256] != 0) continue;
    // BYTE, SHORT, LONG and their signed kinds (6, 8, 9), in the entry.
    const int bytes = type == 1 || type == 6 ? 1 : type == 3 || type == 8 ? 2 : 4;
    if (type != 1 && type != 3 && type != 4 && type != 6 && type != 8 && type != 9) {
      return std::nullopt;
    }
    const uint64_t value = read(at + 8, bytes);
    const bool negative = type >= 6 && (value >> (8 * bytes - 1)) != 0;
    if (negative || value == 0) return std::nullopt;
    size[tag - 256] = static_cast<int64_t>(value);
  }
  return sized(r, size[0], size[1]);
}

std::optional<DeclaredSize> webp(Reader& r) {
  if (r.is(12, "VP8 ")) {  // lossy: after a 3-byte frame tag and the start code
    return sized(r, int64_t(r.le(26, 2) & 0x3FFF), int64_t(r.le(28, 2) & 0x3FFF));
  }
  if (r.is(12, "VP8L")) {  // lossless: 14 bits each, minus one
    const uint64_t bits = r.le(21, 4);
    return sized(r, int64_t(bits & 0x3FFF) + 1, int64_t((bits >> 14) & 0x3FFF) + 1);
  }
  if (r.is(12, "VP8X")) {  // extended: the canvas, 24 bits each, minus one
    return sized(r, int64_t(r.le(24, 3)) + 1, int64_t(r.le(27, 3)) + 1);
  }
  return std::nullopt;
}

// A JPEG 2000 codestream's SIZ segment, right after SOC: the reference grid
// less its offset.
std::optional<DeclaredSize> j2k(Reader& r, size_t at) {
  if (r.be(at, 4) != 0xFF4FFF51) return std::nullopt;
  const uint64_t x = r.be(at + 8, 4), y = r.be(at + 12, 4);
  const uint64_t x0 = r.be(at + 16, 4), y0 = r.be(at + 20, 4);
  if (x0 >= x || y0 >= y) return std::nullopt;
  return sized(r, int64_t(x - x0), int64_t(y - y0));
}

// A JP2 file: the image header box (ihdr) in the JP2 header box (jp2h).
std::optional<DeclaredSize> jp2(Reader& r) {
  size_t at = 0, end = r.b.size();
  for (int boxes = 0; boxes < 64 && at + 8 <= end && r.ok; ++boxes) {
    uint64_t length = r.be(at, 4);
    size_t header = 8;
    if (length == 1) {
      length = r.be(at + 8, 8);
      header = 16;
    } else if (length == 0) {
      length = end - at;
    }
    if (length < header || length > end - at) return std::nullopt;
    if (r.is(at + 4, "jp2h")) {  // a superbox: look inside
      end = at + static_cast<size_t>(length);
      at += header;
      continue;
    }
    if (r.is(at + 4, "ihdr")) {
      return sized(r, int64_t(r.be(at + header + 4, 4)), int64_t(r.be(at + header, 4)));
    }
    at += static_cast<size_t>(length);
  }
  return std::nullopt;
}

}  // namespace

std::optional<DeclaredSize> declared_size(const std::vector<uint8_t>& bytes) {
  Reader r{bytes};
  if (r.is(0, "BM")) return bmp(r);
  if (bytes.size() >= 2 && bytes[0] == 'P' && bytes[1] >= '1' && bytes[1] <= '6') {
    return pnm(bytes);
  }
  if (r.be(0, 4) == 0x49492A00 || r.be(0, 4) == 0x4D4D002A) return tiff(r);  // II*. MM.*
  if (r.is(0, "RIFF") && r.is(8, "WEBP")) return webp(r);
  if (r.be(0, 4) == 0xFF4FFF51) return j2k(r, 0);
  if (r.be(0, 4) == 12 && r.is(4, "jP  ")) return jp2(r);
  return std::nullopt;
}

}  // namespace cnnviz
