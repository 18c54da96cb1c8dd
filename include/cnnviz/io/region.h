// A region of the source image given as a mask picture (--region): read,
// checked, and carried onto the network's input grid as the image is.
#ifndef CNNVIZ_IO_REGION_H_
#define CNNVIZ_IO_REGION_H_

#include <ATen/core/Tensor.h>

#include <opencv2/core/mat.hpp>
#include <string>

#include "cnnviz/io/preprocess.h"

namespace cnnviz {

struct Region {
  std::string path;
  cv::Mat inside;  // CV_8UC1, 1 inside the region and 0 outside, the picture's size
};

// Reads the picture at `path` (any format read_image_rgb reads, with its
// limits): black is outside the region, and every other pixel must have one
// and the same colour (white, usually), inside it. Throws Error(kInput) with
// "--region 'path': problem" when it cannot be read, has more than one
// colour besides black (not binary: an anti-aliased edge, say), or has no
// pixel inside.
Region read_region(const std::string& path);

// The region on the network's input grid of an image whose crop box is
// `box`, [height,width] bool: resized as the image is (nearest, as PIL's
// NEAREST samples pixel centres), then cropped. Throws Error(kInput) naming
// both sizes when the picture's size is not the image's, and when no pixel
// of the region is left inside the crop.
at::Tensor region_on_input(const Region& region, const CropBox& box);

}  // namespace cnnviz

#endif  // CNNVIZ_IO_REGION_H_
