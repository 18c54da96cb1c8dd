// Reading images from disk into 8-bit RGB.
#ifndef CNNVIZ_IMAGE_H_
#define CNNVIZ_IMAGE_H_

#include <cstdint>
#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

namespace cnnviz {

// Reads and decodes the image file at `path` into an H x W CV_8UC3 matrix in
// RGB order. Grayscale is replicated to three channels; an alpha channel is
// dropped (not composited), as PIL's convert("RGB") does; 16-bit samples keep
// their high byte (v >> 8), as Pillow does for 16-bit RGB PNGs; EXIF orientation is ignored, as in
// PIL/torchvision, so pixels are used as stored.
// Throws Error(kInput) with "image 'path': problem" when the file is missing,
// a directory, unreadable, empty, not an image, or truncated.
cv::Mat read_image_rgb(const std::string& path);

// The same from bytes already in memory; `name` is used in error messages.
cv::Mat decode_image_rgb(const std::vector<uint8_t>& bytes, const std::string& name);

}  // namespace cnnviz

#endif  // CNNVIZ_IMAGE_H_
