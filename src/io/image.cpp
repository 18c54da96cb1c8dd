#include "cnnviz/image.h"

#include <cstring>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cnnviz/error.h"
#include "cnnviz/files.h"

namespace cnnviz {

namespace {

bool starts_with(const std::vector<uint8_t>& b, std::initializer_list<uint8_t> magic) {
  if (b.size() < magic.size()) return false;
  size_t i = 0;
  for (uint8_t m : magic) {
    if (b[i++] != m) return false;
  }
  return true;
}

// libjpeg decodes a truncated JPEG "successfully", filling the missing part
// with grey and printing a warning. A complete file ends with the EOI marker
// (FF D9); entropy-coded data never contains FF D9, so finding it near the
// end (cameras may append a few padding bytes) tells a complete file.
bool jpeg_has_end_marker(const std::vector<uint8_t>& b) {
  constexpr size_t kTailWindow = 4096;
  size_t start = b.size() > kTailWindow ? b.size() - kTailWindow : 2;
  for (size_t i = b.size() - 1; i > start; --i) {
    if (b[i - 1] == 0xFF && b[i] == 0xD9) return true;
  }
  return false;
}

// libpng prints warnings about broken ICC profiles ("iCCP: known incorrect
// sRGB profile") straight to stderr, and OpenCV offers no way to silence it.
// cnnviz ignores colour profiles anyway (as PIL does), so iCCP chunks are
// dropped before decoding. Returns false when there is none to drop.
bool strip_png_iccp(const std::vector<uint8_t>& in, std::vector<uint8_t>& out) {
  constexpr size_t kSignature = 8;
  bool found = false;
  size_t pos = kSignature;
  while (pos + 12 <= in.size()) {
    const size_t len = (size_t{in[pos]} << 24) | (size_t{in[pos + 1]} << 16) |
                       (size_t{in[pos + 2]} << 8) | size_t{in[pos + 3]};
    if (len > in.size() - pos - 12) break;  // truncated: leave it to the decoder
    if (std::memcmp(&in[pos + 4], "iCCP", 4) == 0) {
      if (!found) out.assign(in.begin(), in.begin() + pos);
      found = true;
    } else if (found) {
      out.insert(out.end(), in.begin() + pos, in.begin() + pos + 12 + len);
    }
    pos += 12 + len;
  }
  if (found) out.insert(out.end(), in.begin() + pos, in.end());
  return found;
}

}  // namespace

cv::Mat decode_image_rgb(const std::vector<uint8_t>& bytes, const std::string& name) {
  auto fail = [&](const std::string& problem) -> Error {
    return Error(ErrorCode::kInput, "image '" + name + "': " + problem);
  };
  if (bytes.empty()) throw fail("empty file");
  const bool jpeg = starts_with(bytes, {0xFF, 0xD8, 0xFF});
  if (jpeg && !jpeg_has_end_marker(bytes)) throw fail("truncated JPEG (no end-of-image marker)");

  const bool png = starts_with(bytes, {0x89, 'P', 'N', 'G'});
  std::vector<uint8_t> stripped;
  const std::vector<uint8_t>& data = png && strip_png_iccp(bytes, stripped) ? stripped : bytes;

  cv::Mat raw;
  try {
    // IMREAD_UNCHANGED keeps alpha, 16-bit depth and grayscale as stored, and
    // does not apply EXIF orientation (PIL does not either).
    raw = cv::imdecode(
        cv::Mat(1, static_cast<int>(data.size()), CV_8UC1, const_cast<uint8_t*>(data.data())),
        cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    throw fail("cannot decode (" + first_line(e.what()) + ")");
  }
  if (raw.empty()) {
    throw fail(png || jpeg ? "corrupt or truncated image data"
                           : "not an image or unsupported format");
  }

  cv::Mat eight;
  switch (raw.depth()) {
    case CV_8U:
      eight = raw;
      break;
    case CV_16U: {
      // Keep the high byte, as Pillow does when it opens 16-bit RGB PNGs.
      eight.create(raw.size(), CV_MAKETYPE(CV_8U, raw.channels()));
      const int n = raw.cols * raw.channels();
      for (int y = 0; y < raw.rows; ++y) {
        const uint16_t* in = raw.ptr<uint16_t>(y);
        uint8_t* out = eight.ptr<uint8_t>(y);
        for (int i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(in[i] >> 8);
      }
      break;
    }
    case CV_32F:
      raw.convertTo(eight, CV_8U, 255.0);  // float images (TIFF, EXR) in [0,1]
      break;
    default:
      throw fail("unsupported sample type (8-bit, 16-bit or float images only)");
  }
  cv::Mat rgb;
  switch (eight.channels()) {
    case 1:
      cv::cvtColor(eight, rgb, cv::COLOR_GRAY2RGB);
      break;
    case 2: {  // grayscale + alpha
      cv::Mat gray;
      cv::extractChannel(eight, gray, 0);
      cv::cvtColor(gray, rgb, cv::COLOR_GRAY2RGB);
      break;
    }
    case 3:
      cv::cvtColor(eight, rgb, cv::COLOR_BGR2RGB);
      break;
    case 4:
      cv::cvtColor(eight, rgb, cv::COLOR_BGRA2RGB);
      break;
    default:
      throw fail("unsupported number of channels (" + std::to_string(eight.channels()) + ")");
  }
  return rgb;
}

cv::Mat read_image_rgb(const std::string& path) {
  return decode_image_rgb(read_file(path, "image"), path);
}

}  // namespace cnnviz
