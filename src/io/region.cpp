#include "cnnviz/io/region.h"

#include <ATen/ATen.h>

#include <opencv2/imgproc.hpp>

#include "cnnviz/core/error.h"
#include "cnnviz/io/image.h"

namespace cnnviz {

namespace {

std::string size_text(int width, int height) {
  return std::to_string(width) + "x" + std::to_string(height);
}

}  // namespace

Region read_region(const std::string& path) {
  const std::string subject = "--region '" + path + "': ";
  cv::Mat rgb;
  try {
    rgb = read_image_rgb(path);
  } catch (const Error& e) {
    std::string why = e.what();
    const std::string prefix = "image '" + path + "': ";
    if (why.rfind(prefix, 0) == 0) why = why.substr(prefix.size());
    throw Error(ErrorCode::kInput, subject + why);
  }
  Region r{path, cv::Mat::zeros(rgb.rows, rgb.cols, CV_8UC1)};
  bool found = false;
  cv::Vec3b colour;
  for (int y = 0; y < rgb.rows; ++y) {
    const auto* row = rgb.ptr<cv::Vec3b>(y);
    auto* out = r.inside.ptr<uint8_t>(y);
    for (int x = 0; x < rgb.cols; ++x) {
      const cv::Vec3b& p = row[x];
      if (p == cv::Vec3b(0, 0, 0)) continue;
      if (!found) {
        colour = p;
        found = true;
      } else if (p != colour) {
        throw Error(ErrorCode::kInput,
                    subject + "not binary: pixel (" + std::to_string(x) + ", " +
                        std::to_string(y) + ") has another colour than the region's first " +
                        "(expected black outside the region and one colour inside)");
      }
      out[x] = 1;
    }
  }
  if (!found) throw Error(ErrorCode::kInput, subject + "empty: every pixel is black");
  return r;
}

at::Tensor region_on_input(const Region& region, const CropBox& box) {
  const cv::Mat& m = region.inside;
  if (m.cols != box.src_w || m.rows != box.src_h) {
    throw Error(ErrorCode::kInput, "--region '" + region.path + "' is " +
                                       size_text(m.cols, m.rows) + "; the image is " +
                                       size_text(box.src_w, box.src_h) +
                                       " (a region has its image's size)");
  }
  cv::Mat resized;
  cv::resize(m, resized, cv::Size(box.resized_w, box.resized_h), 0, 0, cv::INTER_NEAREST_EXACT);
  const cv::Mat crop = resized(cv::Rect(box.left, box.top, box.width, box.height)).clone();
  if (cv::countNonZero(crop) == 0) {
    throw Error(ErrorCode::kInput, "--region '" + region.path +
                                       "': no pixel of the region is inside the network's " +
                                       size_text(box.width, box.height) + " crop");
  }
  return at::from_blob(crop.data, {crop.rows, crop.cols}, at::kByte).to(at::kBool).clone();
}

}  // namespace cnnviz
