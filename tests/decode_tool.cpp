// cnnviz_decode_tool: cnnviz's image decoding from the command line, for
// tests/conformance_test.py, which compares it with Pillow's.
//
//   cnnviz_decode_tool decode OUTDIR MAX_PIXELS IMAGE...
//     decodes each IMAGE as cnnviz does; for the i-th (from 0), writes the
//     8-bit RGB pixels to OUTDIR/i.ppm (binary PPM) and prints "i ok", or
//     prints "i error EXIT-CODE MESSAGE" when cnnviz refuses it. Each line
//     is flushed before the next image, so a crash names its image.
//   cnnviz_decode_tool cmyk-jpeg IMAGE OUT.jpg cmyk|ycck
//     writes IMAGE as an Adobe-style CMYK or YCCK JPEG (inverted samples,
//     with the Adobe marker), the kind print workflows write, through
//     libjpeg's own encoder.
// libjpeg's header needs FILE and size_t first.
#include <cstdio>
#include <cstdlib>

#include <jpeglib.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "cnnviz/core/error.h"
#include "cnnviz/io/files.h"
#include "cnnviz/io/image.h"

namespace {

void write_ppm(const std::string& path, const cv::Mat& rgb) {
  std::string out = "P6\n" + std::to_string(rgb.cols) + " " + std::to_string(rgb.rows) + "\n255\n";
  for (int y = 0; y < rgb.rows; ++y) {
    out.append(reinterpret_cast<const char*>(rgb.ptr<uint8_t>(y)), rgb.cols * 3u);
  }
  cnnviz::write_file_atomic(path, out.data(), out.size());
}

// RGB to inverted CMYK as Adobe stores it: K takes the grey component, and
// every sample is 255 minus the ink.
std::vector<uint8_t> adobe_cmyk(const cv::Mat& rgb) {
  std::vector<uint8_t> cmyk;
  cmyk.reserve(rgb.total() * 4);
  for (int y = 0; y < rgb.rows; ++y) {
    const uint8_t* p = rgb.ptr<uint8_t>(y);
    for (int x = 0; x < rgb.cols; ++x, p += 3) {
      const int k = 255 - std::max({p[0], p[1], p[2]});
      for (int c = 0; c < 3; ++c) {
        const int ink = k == 255 ? 0 : (255 - p[c] - k) * 255 / (255 - k);
        cmyk.push_back(static_cast<uint8_t>(255 - ink));
      }
      cmyk.push_back(static_cast<uint8_t>(255 - k));
    }
  }
  return cmyk;
}

void write_cmyk_jpeg(const cv::Mat& rgb, const std::string& path, bool ycck) {
  std::vector<uint8_t> cmyk = adobe_cmyk(rgb);
  jpeg_compress_struct cinfo;
  jpeg_error_mgr err;
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = static_cast<JDIMENSION>(rgb.cols);
  cinfo.image_height = static_cast<JDIMENSION>(rgb.rows);
  cinfo.input_components = 4;
  cinfo.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&cinfo);
  jpeg_set_colorspace(&cinfo, ycck ? JCS_YCCK : JCS_CMYK);  // writes the Adobe marker
  jpeg_set_quality(&cinfo, 95, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = &cmyk[static_cast<size_t>(cinfo.next_scanline) * rgb.cols * 4];
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  cnnviz::write_file_atomic(path, buffer, size);
  std::free(buffer);
}

int usage() {
  std::cerr << "usage: cnnviz_decode_tool decode OUTDIR MAX_PIXELS IMAGE...\n"
               "       cnnviz_decode_tool cmyk-jpeg IMAGE OUT.jpg cmyk|ycck\n";
  return 2;
}

int decode_all(const std::string& outdir, int64_t budget, const std::vector<std::string>& images) {
  for (size_t i = 0; i < images.size(); ++i) {
    try {
      write_ppm(outdir + "/" + std::to_string(i) + ".ppm", cnnviz::read_image_rgb(images[i], budget));
      std::cout << i << " ok" << std::endl;
    } catch (const cnnviz::Error& e) {
      std::cout << i << " error " << e.exit_code() << " " << e.what() << std::endl;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  cnnviz::filter_codec_messages(std::cerr);  // as cnnviz's main does
  try {
    if (args.size() >= 3 && args[0] == "decode") {
      return decode_all(args[1], std::stoll(args[2]), {args.begin() + 3, args.end()});
    }
    if (args.size() == 4 && args[0] == "cmyk-jpeg" && (args[3] == "cmyk" || args[3] == "ycck")) {
      write_cmyk_jpeg(cnnviz::read_image_rgb(args[1]), args[2], args[3] == "ycck");
      return 0;
    }
  } catch (const cnnviz::Error& e) {
    std::cerr << "cnnviz: " << e.what() << "\n";
    return e.exit_code();
  }
  return usage();
}
