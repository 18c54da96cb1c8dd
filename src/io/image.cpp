#include "cnnviz/io/image.h"

// libjpeg's headers need FILE and size_t first.
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <ostream>
#include <streambuf>
#include <string>

#include "cnnviz/core/error.h"
#include "cnnviz/io/files.h"
#include "image_size.h"

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

// BMP, TIFF, WebP, PNM (P1 to P6) and JPEG 2000 (a JP2 file or a bare
// codestream), by their first bytes.
bool opencv_format(const std::vector<uint8_t>& b) {
  auto at = [&](size_t offset, std::initializer_list<uint8_t> magic) {
    if (b.size() < offset + magic.size()) return false;
    return std::equal(magic.begin(), magic.end(), b.begin() + static_cast<std::ptrdiff_t>(offset));
  };
  return at(0, {'B', 'M'}) || at(0, {'I', 'I', 42, 0}) || at(0, {'M', 'M', 0, 42}) ||
         (at(0, {'R', 'I', 'F', 'F'}) && at(8, {'W', 'E', 'B', 'P'})) ||
         (b.size() >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6') ||
         at(0, {0, 0, 0, 12, 'j', 'P', ' ', ' ', 13, 10, 0x87, 10}) ||
         at(0, {0xFF, 0x4F, 0xFF, 0x51});
}

std::string pixels_problem(int64_t width, int64_t height, int64_t max_pixels) {
  return std::to_string(width) + "x" + std::to_string(height) +
         " pixels, more than the budget of " + std::to_string(max_pixels) + " (--max-pixels)";
}

// OpenCV's own log (a JPEG 2000 codestream without a colour space gets a
// warning on stderr) is silenced: cnnviz reports what matters itself.
void quiet_opencv() {
  static std::once_flag once;
  std::call_once(once, [] { cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT); });
}

// JPEG through libjpeg itself rather than OpenCV: its header gives the size
// before anything is allocated, and its warnings tell corrupt or truncated
// data ("Premature end of JPEG file" when the data ends early), which
// libjpeg otherwise decodes "successfully" (grey where data is missing) and
// OpenCV does not report. Data after the end-of-image marker (a motion
// photo's video, a camera's trailer) is not read. Warnings that do not change pixels are accepted,
// as PIL accepts them. Four-component JPEGs (CMYK and YCCK) come out as
// CMYK, converted to RGB by the caller.
enum class JpegResult { kOk, kTooLarge, kCorrupt, kTruncated, kUnsupported };

struct JpegErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool corrupt;
  int warning;  // the first warning's code
};

bool benign_warning(int code) {
  return code == JWRN_EXTRANEOUS_DATA || code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM ||
         code == JWRN_BOGUS_ICC;
}

// Errors about what the file is rather than about damage to it.
bool unsupported_error(int code) {
  return code == JERR_BAD_PRECISION || code == JERR_SOF_UNSUPPORTED || code == JERR_NOT_COMPILED ||
         code == JERR_ARITH_NOTIMPL || code == JERR_CONVERSION_NOTIMPL;
}

void on_jpeg_error(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegErrors*>(c->err);
  c->err->format_message(c, e->message);
  std::longjmp(e->jump, 1);
}

void on_jpeg_message(j_common_ptr c, int level) {
  if (level >= 0) return;  // trace messages
  auto* e = reinterpret_cast<JpegErrors*>(c->err);
  if (benign_warning(c->err->msg_code) || e->corrupt) return;
  e->corrupt = true;
  e->warning = c->err->msg_code;
  c->err->format_message(c, e->message);
}

// Only trivially destructible locals here: libjpeg leaves by longjmp.
// `out` becomes CV_8UC3 (RGB) or CV_8UC4 (CMYK as stored).
JpegResult decode_jpeg(const uint8_t* data, size_t size, int64_t max_pixels, cv::Mat* out,
                       int64_t* width, int64_t* height, char* message) {
  jpeg_decompress_struct cinfo;
  JpegErrors errors;
  std::memset(&errors, 0, sizeof errors);
  cinfo.err = jpeg_std_error(&errors.mgr);
  errors.mgr.error_exit = on_jpeg_error;
  errors.mgr.emit_message = on_jpeg_message;
  if (setjmp(errors.jump)) {
    const bool unsupported = unsupported_error(errors.mgr.msg_code);
    jpeg_destroy_decompress(&cinfo);
    std::strcpy(message, errors.message);
    return unsupported ? JpegResult::kUnsupported : JpegResult::kCorrupt;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  *width = cinfo.image_width;
  *height = cinfo.image_height;
  if (*width * *height > max_pixels) {
    jpeg_destroy_decompress(&cinfo);
    return JpegResult::kTooLarge;
  }
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  out->create(static_cast<int>(cinfo.output_height), static_cast<int>(cinfo.output_width),
              cmyk ? CV_8UC4 : CV_8UC3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out->ptr<uint8_t>(static_cast<int>(cinfo.output_scanline));
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (errors.corrupt) {
    std::strcpy(message, errors.message);
    return errors.warning == JWRN_JPEG_EOF ? JpegResult::kTruncated : JpegResult::kCorrupt;
  }
  return JpegResult::kOk;
}

// CMYK as JPEGs store it to RGB. Four-component JPEGs follow Adobe's
// convention, samples inverted (255 is no ink), as Pillow and OpenCV assume
// for all of them; the conversion is Pillow's, without a colour profile:
// each channel is (1 - ink) x (1 - black), rounded as Pillow rounds.
cv::Mat adobe_cmyk_to_rgb(const cv::Mat& cmyk) {
  cv::Mat rgb(cmyk.rows, cmyk.cols, CV_8UC3);
  for (int y = 0; y < cmyk.rows; ++y) {
    const uint8_t* in = cmyk.ptr<uint8_t>(y);
    uint8_t* out = rgb.ptr<uint8_t>(y);
    for (int x = 0; x < cmyk.cols; ++x, in += 4, out += 3) {
      const int paper = in[3];  // 255 - black ink
      for (int c = 0; c < 3; ++c) {
        const int t = (255 - in[c]) * paper + 128;  // ink x paper / 255, rounded
        out[c] = static_cast<uint8_t>(paper - (((t >> 8) + t) >> 8));
      }
    }
  }
  return rgb;
}

// PNG through libpng itself: OpenCV leaves libpng's default handlers in
// place, which print "libpng error: ..." to stderr, and would need the iCCP
// workaround for its warnings. The pixels are what OpenCV's IMREAD_UNCHANGED
// plus the conversion below give: palettes expanded (transparency ignored),
// grey replicated, alpha dropped, 16-bit samples' high byte kept (as
// Pillow), no gamma correction (as PIL's convert("RGB")).
struct PngReader {
  const uint8_t* data;
  size_t size, pos;
  std::jmp_buf jump;
  char message[256];
};

void on_png_error(png_structp png, png_const_charp message) {
  auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(r->message, sizeof r->message, "%s", message);
  std::longjmp(r->jump, 1);
}

void on_png_warning(png_structp, png_const_charp) {}  // colour profiles and the like

void on_png_read(png_structp png, png_bytep out, png_size_t length) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (length > r->size - r->pos) png_error(png, "the data ends early");
  std::memcpy(out, r->data + r->pos, length);
  r->pos += length;
}

enum class PngResult { kOk, kTooLarge, kCorrupt };

// Only trivially destructible locals here: libpng leaves by longjmp.
PngResult decode_png(const uint8_t* data, size_t size, int64_t max_pixels, cv::Mat* rgb,
                     int64_t* width, int64_t* height, char* message) {
  PngReader reader;
  reader.data = data;
  reader.size = size;
  reader.pos = 0;
  reader.message[0] = 0;
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, on_png_error, on_png_warning);
  if (!png) {
    std::strcpy(message, "out of memory");
    return PngResult::kCorrupt;
  }
  png_infop info = png_create_info_struct(png);
  // volatile: set after setjmp, read after a longjmp (found by fuzzing: the
  // register copy leaked the rows on corrupt data).
  png_bytep* volatile rows = nullptr;
  if (setjmp(reader.jump)) {
    std::free(rows);
    png_destroy_read_struct(&png, &info, nullptr);
    std::strcpy(message, reader.message);
    return PngResult::kCorrupt;
  }
  if (!info) png_error(png, "out of memory");
  png_set_read_fn(png, &reader, on_png_read);
  // libpng's own limit of a million rows or columns would refuse valid
  // strips and panoramas; the pixel budget above is the limit.
  png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  // Colour profiles are ignored (as PIL does): no need to check them.
  png_set_option(png, PNG_SKIP_sRGB_CHECK_PROFILE, PNG_OPTION_ON);
  png_read_info(png, info);
  *width = png_get_image_width(png, info);
  *height = png_get_image_height(png, info);
  if (*width * *height > max_pixels) {
    png_destroy_read_struct(&png, &info, nullptr);
    return PngResult::kTooLarge;
  }
  png_set_expand(png);       // palettes to RGB, grey below 8 bits to 8 bits
  png_set_strip_alpha(png);  // alpha channels and tRNS transparency alike
  png_set_strip_16(png);     // the high byte, as Pillow
  png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8) {
    png_error(png, "unsupported sample layout");
  }
  rgb->create(static_cast<int>(*height), static_cast<int>(*width), CV_8UC3);
  rows = static_cast<png_bytep*>(std::malloc(sizeof(png_bytep) * static_cast<size_t>(*height)));
  if (!rows) png_error(png, "out of memory");
  for (int64_t y = 0; y < *height; ++y) rows[y] = rgb->ptr<uint8_t>(static_cast<int>(y));
  png_read_image(png, rows);
  png_read_end(png, nullptr);
  std::free(rows);
  png_destroy_read_struct(&png, &info, nullptr);
  return PngResult::kOk;
}

// std::cerr's buffer with OpenCV's decoding messages taken out: its loader
// prints "imdecode_('...'): can't read data: ..." to std::cerr for every
// file a decoder gives up on, which cnnviz reports on one line of its own.
// A line that may still become one of those is held back until it cannot;
// everything else passes at once (so a progress bar's "\r..." is not
// delayed). Thread-safe: decoders run on several threads.
class CodecNoiseFilter : public std::streambuf {
 public:
  explicit CodecNoiseFilter(std::streambuf* out) : out_(out) {}

 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    const char ch = traits_type::to_char_type(c);
    std::lock_guard<std::mutex> lock(mutex_);
    put(ch);
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::streamsize i = 0; i < n; ++i) put(s[i]);
    return n;
  }
  int sync() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return out_->pubsync();
  }

 private:
  static bool noise_prefix(const std::string& line, bool whole) {
    for (const char* p : {"imdecode_(", "imread_("}) {
      const std::string prefix = p;
      if (whole ? line.rfind(prefix, 0) == 0
                : prefix.compare(0, std::min(prefix.size(), line.size()), line, 0,
                                 std::min(prefix.size(), line.size())) == 0) {
        return true;
      }
    }
    return false;
  }
  void put(char ch) {
    if (passing_) {
      out_->sputc(ch);
      if (ch == '\n') passing_ = false;
      return;
    }
    held_ += ch;
    if (ch == '\n') {
      // OpenCV's message (whose text ends in a newline) is followed by
      // std::endl: the empty lines after one go too.
      const bool noise = noise_prefix(held_, true) || (after_noise_ && held_ == "\n");
      if (!noise) out_->sputn(held_.data(), static_cast<std::streamsize>(held_.size()));
      after_noise_ = noise;
      held_.clear();
    } else if (!noise_prefix(held_, false)) {
      after_noise_ = false;
      out_->sputn(held_.data(), static_cast<std::streamsize>(held_.size()));
      held_.clear();
      passing_ = true;
    }
  }

  std::streambuf* out_;
  std::mutex mutex_;
  std::string held_;
  bool passing_ = false;
  bool after_noise_ = false;
};

}  // namespace

Error with_image_name(const Error& e, const std::string& path) {
  const std::string subject = "image '" + path + "'";
  if (std::string(e.what()).rfind(subject, 0) == 0) return e;
  return Error(e.code(), subject + ": " + e.what());
}

void filter_codec_messages(std::ostream& stream) {
  static CodecNoiseFilter* filter = nullptr;  // lives as long as the process
  if (!filter) {
    filter = new CodecNoiseFilter(stream.rdbuf());
    stream.rdbuf(filter);
  }
}

int64_t max_image_file_bytes(int64_t max_pixels) {
  return max_pixels * kMaxImageBytesPerPixel + (int64_t{1} << 20);
}

namespace {

// Builds an image's error: "image 'NAME': PROBLEM".
struct ImageFail {
  const std::string& name;
  Error operator()(const std::string& problem) const {
    return Error(ErrorCode::kInput, "image '" + name + "': " + problem);
  }
};

// A JPEG through libjpeg.
cv::Mat decode_jpeg_rgb(const std::vector<uint8_t>& bytes, int64_t max_pixels,
                        const ImageFail& fail) {
  cv::Mat decoded;
  int64_t width = 0, height = 0;
  char message[JMSG_LENGTH_MAX] = "";
  switch (decode_jpeg(bytes.data(), bytes.size(), max_pixels, &decoded, &width, &height, message)) {
    case JpegResult::kOk:
      return decoded.channels() == 4 ? adobe_cmyk_to_rgb(decoded) : decoded;
    case JpegResult::kTooLarge:
      throw fail(pixels_problem(width, height, max_pixels));
    case JpegResult::kUnsupported:
      throw fail(std::string("unsupported kind of JPEG (") + message +
                 "): cnnviz reads 8-bit baseline, progressive and arithmetic-coded JPEGs");
    case JpegResult::kTruncated:
      throw fail("truncated JPEG (the data ends before the end-of-image marker)");
    case JpegResult::kCorrupt:
      break;
  }
  throw fail(std::string("corrupt or truncated JPEG data (") + message + ")");
}

// A PNG through libpng, its size checked from the header first.
cv::Mat decode_png_rgb(const std::vector<uint8_t>& bytes, int64_t max_pixels,
                       const ImageFail& fail) {
  // The size is in the header, read before anything is allocated (a 124 KB
  // file can hold 32000x32000 1-bit pixels); the first chunk is the header,
  // whatever its checksum says.
  if (bytes.size() >= 24 && std::memcmp(&bytes[12], "IHDR", 4) == 0) {
    auto be32 = [&](size_t at) {
      return (int64_t{bytes[at]} << 24) | (int64_t{bytes[at + 1]} << 16) |
             (int64_t{bytes[at + 2]} << 8) | int64_t{bytes[at + 3]};
    };
    // Each side is below 2^32: their product may not fit in int64.
    const int64_t w = be32(16), h = be32(20);
    if (w > 0 && h > max_pixels / w) throw fail(pixels_problem(w, h, max_pixels));
  }
  cv::Mat rgb;
  int64_t width = 0, height = 0;
  char message[256] = "";
  switch (decode_png(bytes.data(), bytes.size(), max_pixels, &rgb, &width, &height, message)) {
    case PngResult::kOk:
      return rgb;
    case PngResult::kTooLarge:
      throw fail(pixels_problem(width, height, max_pixels));
    case PngResult::kCorrupt:
      break;
  }
  throw fail(std::string("corrupt or truncated PNG data (") + message + ")");
}

// OpenCV's decode of the other formats, as stored (alpha, 16-bit, grey).
cv::Mat decode_with_opencv(const std::vector<uint8_t>& bytes, int64_t max_pixels,
                           const ImageFail& fail) {
  // Only the formats cnnviz takes from folders reach OpenCV: its other
  // decoders (DICOM through GDCM, found by fuzzing; OpenEXR, Radiance HDR,
  // Sun raster, PFM) recognize files by content whatever their name, and
  // GDCM aborts the process on malformed input.
  if (!opencv_format(bytes)) {
    throw fail(
        "not an image (or an unsupported format: JPEG, PNG, BMP, TIFF, WebP, PNM, JPEG 2000)");
  }
  // OpenCV's own size limit is fixed when the library loads: the budget is
  // checked here, from the header, before OpenCV allocates anything.
  const std::optional<DeclaredSize> size = declared_size(bytes);
  if (!size) throw fail("not an image (or an unsupported format, or corrupt or truncated data)");
  if (size->height > max_pixels / size->width) {
    throw fail(pixels_problem(size->width, size->height, max_pixels));
  }
  quiet_opencv();
  cv::Mat raw;
  try {
    // IMREAD_UNCHANGED keeps alpha, 16-bit depth and grayscale as stored, and
    // does not apply EXIF orientation (PIL does not either).
    raw = cv::imdecode(
        cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<uint8_t*>(bytes.data())),
        cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    const std::string what = first_line(e.what());
    if (what.find("CV_IO_MAX_IMAGE_WIDTH") != std::string::npos ||
        what.find("CV_IO_MAX_IMAGE_HEIGHT") != std::string::npos) {
      throw fail(std::to_string(size->width) + "x" + std::to_string(size->height) +
                 " pixels: wider or taller than OpenCV's limit of 1048576 for BMP, TIFF, WebP, "
                 "PNM and JPEG 2000 (raise it with OPENCV_IO_MAX_IMAGE_WIDTH and "
                 "OPENCV_IO_MAX_IMAGE_HEIGHT in the environment)");
    }
    throw fail("cannot decode (" + what + ")");
  }
  if (raw.empty()) {
    throw fail("not an image (or an unsupported format, or corrupt or truncated data)");
  }
  return raw;
}

// Any sample depth OpenCV decodes, as 8 bits.
cv::Mat to_eight_bits(const cv::Mat& raw, const ImageFail& fail) {
  cv::Mat eight;
  switch (raw.depth()) {
    case CV_8U:
      return raw;
    case CV_16U: {
      // Keep the high byte, as Pillow does when it opens 16-bit RGB PNGs.
      eight.create(raw.size(), CV_MAKETYPE(CV_8U, raw.channels()));
      const int n = raw.cols * raw.channels();
      for (int y = 0; y < raw.rows; ++y) {
        const uint16_t* in = raw.ptr<uint16_t>(y);
        uint8_t* out = eight.ptr<uint8_t>(y);
        for (int i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(in[i] >> 8);
      }
      return eight;
    }
    case CV_32F:
      raw.convertTo(eight, CV_8U, 255.0);  // float images (TIFF, EXR) in [0,1]
      return eight;
    default:
      throw fail("unsupported sample type (8-bit, 16-bit or float images only)");
  }
}

// OpenCV's BGR(A) or grey(+alpha) as RGB; alpha is dropped.
cv::Mat opencv_to_rgb(const cv::Mat& eight, const ImageFail& fail) {
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

}  // namespace

cv::Mat decode_image_rgb(const std::vector<uint8_t>& bytes, const std::string& name,
                         int64_t max_pixels) {
  const ImageFail fail{name};
  if (bytes.empty()) throw fail("empty file");
  if (starts_with(bytes, {0xFF, 0xD8, 0xFF})) return decode_jpeg_rgb(bytes, max_pixels, fail);
  if (starts_with(bytes, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})) {
    return decode_png_rgb(bytes, max_pixels, fail);
  }
  const cv::Mat raw = decode_with_opencv(bytes, max_pixels, fail);
  return opencv_to_rgb(to_eight_bits(raw, fail), fail);
}

cv::Mat read_image_rgb(const std::string& path, int64_t max_pixels) {
  return decode_image_rgb(
      read_file(path, "image", static_cast<size_t>(max_image_file_bytes(max_pixels))), path,
      max_pixels);
}

}  // namespace cnnviz
