// The differential target: cnnviz's JPEG and PNG decoding (its own libjpeg
// and libpng driving) against OpenCV's decoding of the same bytes.
#include <setjmp.h>

// libjpeg's headers need FILE and size_t first.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <jerror.h>
#include <jpeglib.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <stdexcept>
#include <string>

#include "cnnviz/core/error.h"
#include "cnnviz/io/image.h"
#include "targets.h"

namespace cnnviz::fuzz {

namespace {

constexpr int64_t kBudget = 4'000'000;

[[noreturn]] void bug(const std::string& what) { throw std::logic_error("fuzz: " + what); }

struct Probe {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  bool damaged;
};

void probe_error(j_common_ptr c) { longjmp(reinterpret_cast<Probe*>(c->err)->jump, 1); }

void probe_message(j_common_ptr c, int level) {
  if (level >= 0) return;
  const int code = c->err->msg_code;
  // The warnings that leave the pixels as the file means them.
  if (code == JWRN_EXTRANEOUS_DATA || code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM ||
      code == JWRN_BOGUS_ICC) {
    return;
  }
  reinterpret_cast<Probe*>(c->err)->damaged = true;
}

// libjpeg's errors and warnings to `probe`.
void listen(jpeg_decompress_struct& cinfo, Probe& probe) {
  std::memset(&probe, 0, sizeof probe);
  cinfo.err = jpeg_std_error(&probe.mgr);
  probe.mgr.error_exit = probe_error;
  probe.mgr.emit_message = probe_message;
}

// Whether libjpeg, decoding the whole file with its default settings, fails
// or warns of damage: the JPEGs cnnviz may refuse.
bool libjpeg_finds_damage(const uint8_t* data, size_t size) {
  jpeg_decompress_struct cinfo;
  Probe probe;
  listen(cinfo, probe);
  if (setjmp(probe.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return true;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  if (static_cast<int64_t>(cinfo.image_width) * cinfo.image_height > kBudget) {
    jpeg_destroy_decompress(&cinfo);
    return false;  // cnnviz's refusal is then the budget's
  }
  jpeg_start_decompress(&cinfo);
  JSAMPARRAY row = (*cinfo.mem->alloc_sarray)(
      reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
      cinfo.output_width * static_cast<JDIMENSION>(cinfo.output_components), 1);
  while (cinfo.output_scanline < cinfo.output_height) jpeg_read_scanlines(&cinfo, row, 1);
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return probe.damaged;
}

// OpenCV's decode, as stored, with cnnviz's documented conversion to 8-bit
// RGB: high byte of 16-bit samples, grey replicated, alpha dropped.
cv::Mat opencv_rgb(const uint8_t* data, size_t size) {
  cv::Mat raw;
  try {
    raw = cv::imdecode(cv::Mat(1, static_cast<int>(size), CV_8UC1, const_cast<uint8_t*>(data)),
                       cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception&) {
    return cv::Mat();
  }
  if (raw.empty()) return raw;
  if (raw.depth() == CV_16U) {  // the high byte
    cv::Mat high(raw.size(), CV_MAKETYPE(CV_8U, raw.channels()));
    const cv::Mat samples = raw.reshape(1);
    cv::Mat out = high.reshape(1);
    for (int y = 0; y < samples.rows; ++y) {
      for (int x = 0; x < samples.cols; ++x) {
        out.at<uint8_t>(y, x) = static_cast<uint8_t>(samples.at<uint16_t>(y, x) >> 8);
      }
    }
    raw = high;
  }
  if (raw.depth() != CV_8U) bug("OpenCV gave an unexpected sample type");
  static const int kToRgb[] = {0, cv::COLOR_GRAY2RGB, -1, cv::COLOR_BGR2RGB, cv::COLOR_BGRA2RGB};
  if (raw.channels() == 2) cv::extractChannel(raw, raw, 0);  // grey + alpha
  cv::Mat rgb;
  cv::cvtColor(raw, rgb, kToRgb[raw.channels()]);
  return rgb;
}

bool is_budget_refusal(const Error& e) {
  return std::string(e.what()).find("(--max-pixels)") != std::string::npos;
}

// What a JPEG's or PNG's header declares: pixels (-1 if the header cannot
// be read) and, for a JPEG, its components.
struct Header {
  int64_t pixels = -1;
  int components = 0;
};

Header read_header(const uint8_t* data, size_t size, bool jpeg) {
  Header h;
  if (!jpeg) {
    if (size < 24) return h;
    auto be32 = [&](size_t at) {
      return (int64_t{data[at]} << 24) | (int64_t{data[at + 1]} << 16) |
             (int64_t{data[at + 2]} << 8) | int64_t{data[at + 3]};
    };
    const int64_t width = be32(16), height = be32(20);  // below 2^32 each
    h.pixels = width > 0 && height > kBudget / width ? kBudget + 1 : width * height;
    return h;
  }
  jpeg_decompress_struct cinfo;
  Probe probe;
  listen(cinfo, probe);
  if (setjmp(probe.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return Header();
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  h.pixels = static_cast<int64_t>(cinfo.image_width) * cinfo.image_height;
  h.components = cinfo.num_components;
  jpeg_destroy_decompress(&cinfo);
  return h;
}

}  // namespace

int differential(const uint8_t* data, size_t size) {
  const bool jpeg = size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
  const bool png = size >= 8 && std::memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0;
  if (!jpeg && !png) return 0;  // the other formats are OpenCV's decode in both
  const Header header = read_header(data, size, jpeg);
  if (header.pixels > kBudget) {
    try {
      (void)decode_image_rgb(std::vector<uint8_t>(data, data + size), "fuzz", kBudget);
    } catch (const Error& e) {
      const std::string what = e.what();
      if (is_budget_refusal(e) || what.find("corrupt") != std::string::npos ||
          what.find("unsupported") != std::string::npos) {
        return 0;
      }
      bug(std::string("an image over the budget refused for another reason: ") + e.what());
    }
    bug("an image over the budget decoded");
  }
  const cv::Mat reference = opencv_rgb(data, size);
  cv::Mat mine;
  try {
    mine = decode_image_rgb(std::vector<uint8_t>(data, data + size), "fuzz", kBudget);
  } catch (const Error& e) {
    if (reference.empty() || is_budget_refusal(e)) return 0;
    if (jpeg && libjpeg_finds_damage(data, size)) return 0;
    bug(std::string("OpenCV decodes it, cnnviz refuses: ") + e.what());
  }
  if (reference.empty()) return 0;  // cnnviz is the more lenient: allowed
  if (reference.size() != mine.size()) bug("sizes differ from OpenCV's");
  // OpenCV converts CMYK to RGB with its own rounding; cnnviz follows
  // Pillow's (the two differ by at most 2 over all inputs).
  const double tolerance = jpeg && header.components == 4 ? 2 : 0;
  if (cv::norm(reference, mine, cv::NORM_INF) > tolerance) bug("pixels differ from OpenCV's");
  return 0;
}

}  // namespace cnnviz::fuzz
