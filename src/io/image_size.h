// The pixel size an image file declares in its header, for the formats
// cnnviz leaves to OpenCV: read before OpenCV allocates anything, since
// OpenCV's own limit (OPENCV_IO_MAX_IMAGE_PIXELS) is fixed when the library
// loads and cannot follow --max-pixels.
#ifndef CNNVIZ_SRC_IO_IMAGE_SIZE_H_
#define CNNVIZ_SRC_IO_IMAGE_SIZE_H_

#include <cstdint>
#include <optional>
#include <vector>

namespace cnnviz {

struct DeclaredSize {
  int64_t width = 0;
  int64_t height = 0;
};

// BMP, PNM (P1 to P6), TIFF (classic and BigTIFF, the first image),
// WebP (lossy, lossless, extended) and JPEG 2000 (a JP2 file or a bare
// codestream). Empty when the bytes are none of these or their header is
// cut short or malformed.
std::optional<DeclaredSize> declared_size(const std::vector<uint8_t>& bytes);

}  // namespace cnnviz

#endif  // CNNVIZ_SRC_IO_IMAGE_SIZE_H_
