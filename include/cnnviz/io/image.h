// Reading images from disk into 8-bit RGB.
#ifndef CNNVIZ_IO_IMAGE_H_
#define CNNVIZ_IO_IMAGE_H_

#include <cstdint>
#include <iosfwd>
#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

#include "cnnviz/core/error.h"
#include "cnnviz/core/limits.h"

namespace cnnviz {

// Reads and decodes the image file at `path` into an H x W CV_8UC3 matrix in
// RGB order. Grayscale is replicated to three channels; an alpha channel is
// dropped (not composited), as PIL's convert("RGB") does; 16-bit samples keep
// their high byte (v >> 8), as Pillow does for 16-bit RGB PNGs; EXIF orientation is ignored, as in
// PIL/torchvision, so pixels are used as stored.
// Throws Error(kInput) with "image 'path': problem" when the file is missing,
// not a regular file, larger than max_image_file_bytes(), unreadable, empty,
// not an image, truncated or corrupt (JPEG data libjpeg warns about), or when
// its header declares more than `max_pixels` pixels (checked before
// decoding, from the header, for every format).
cv::Mat read_image_rgb(const std::string& path, int64_t max_pixels = kDefaultMaxPixels);

// The same from bytes already in memory; `name` is used in error messages.
cv::Mat decode_image_rgb(const std::vector<uint8_t>& bytes, const std::string& name,
                         int64_t max_pixels = kDefaultMaxPixels);

// `e` with "image '<path>': " in front unless its message starts so already
// (preprocessing's messages do not name the file).
Error with_image_name(const Error& e, const std::string& path);

// Takes OpenCV's own decoding messages ("imdecode_('...'): can't read
// data: ...", printed for each file it cannot decode, which cnnviz reports
// itself) out of `stream` (std::cerr), letting everything else through. For
// a program's main(); once per process.
void filter_codec_messages(std::ostream& stream);

// The largest image file read for a pixel budget (kMaxImageBytesPerPixel per
// pixel, plus 1 MiB).
int64_t max_image_file_bytes(int64_t max_pixels);

}  // namespace cnnviz

#endif  // CNNVIZ_IO_IMAGE_H_
