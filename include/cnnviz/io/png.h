// PNG encoding for the maps a run writes: 8-bit grey or RGB, each row
// filtered with PNG's Up filter and compressed by ISA-L's igzip at level 1
// (Debian's libisal). About 4x faster than OpenCV's encoder (libpng, zlib
// level 1) on the same images, at the same size within 1%: a run writes
// dozens of maps per image, and encoding them was most of its time.
#ifndef CNNVIZ_IO_PNG_H_
#define CNNVIZ_IO_PNG_H_

#include <cstdint>
#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

namespace cnnviz {

// The channel order of an 8-bit three-channel image (OpenCV draws in BGR).
enum class PixelOrder { kRgb, kBgr };

// `image`: CV_8UC1 (grey) or CV_8UC3 in `order`, at least 1 x 1. Returns the
// bytes of a PNG file (colour type grey or RGB, 8 bits, not interlaced).
// Uses no thread but the caller's. Throws Error(kRuntime) for another type.
std::vector<uint8_t> encode_png(const cv::Mat& image, PixelOrder order);
// The same into `png` (its old contents replaced, its capacity reused).
void encode_png(const cv::Mat& image, PixelOrder order, std::vector<uint8_t>& png);

// encode_png, then written atomically (write_file_atomic). Throws
// Error(kOutput) when the file cannot be written.
void write_png(const std::string& path, const cv::Mat& image, PixelOrder order);

}  // namespace cnnviz

#endif  // CNNVIZ_IO_PNG_H_
