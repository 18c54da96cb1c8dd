#include "map_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cnnviz/io/npy.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz::test {

at::Tensor load_npy_tensor(const std::string& path) {
  NpyArray a = read_npy(path);
  return at::from_blob(a.data.data(), a.shape, at::kFloat).clone();
}

void save_npy_tensor(const std::string& path, const at::Tensor& t) {
  at::Tensor c = t.contiguous().to(at::kFloat);
  write_npy(path, NpyArray{c.sizes().vec(), std::vector<float>(c.data_ptr<float>(),
                                                               c.data_ptr<float>() + c.numel())});
}

void expect_maps_close(const at::Tensor& got, const at::Tensor& want, double rel_tol,
                       const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double scale = want.abs().max().item<double>();
  const double diff = (got - want).abs().max().item<double>();
  EXPECT_LE(diff, rel_tol * scale + 1e-12) << what << ": max diff " << diff << ", scale " << scale;
}

std::string smooth_image(const TempDir& dir, int seed) {
  cv::Mat img(240, 320, CV_8UC3);
  cv::RNG rng(static_cast<uint64_t>(seed));
  rng.fill(img, cv::RNG::UNIFORM, 0, 255);
  cv::GaussianBlur(img, img, cv::Size(9, 9), 3.0);
  std::string path = dir.file("smooth.png");
  cv::imwrite(path, img);
  return path;
}

std::string structured_image(const TempDir& dir, int width, int height) {
  cv::Mat img(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double u = static_cast<double>(x) / width, v = static_cast<double>(y) / height;
      img.at<cv::Vec3b>(y, x) =
          cv::Vec3b(static_cast<uint8_t>(255 * u), static_cast<uint8_t>(255 * v),
                    static_cast<uint8_t>(127.5 + 127 * std::sin(12 * u * v)));
    }
  }
  const std::string path = dir.file("structured_" + std::to_string(width) + ".png");
  cv::imwrite(path, img);
  return path;
}

void expect_gradient_maps(Capture& capture, const TempDir& dir) {
  expect_close(capture.input_gradient(Backprop::kPlain)[0], load(dir.file("saliency.npy")),
               "saliency");
  expect_close(capture.input_gradient(Backprop::kGuided)[0], load(dir.file("guided.npy")),
               "guided backprop");
  for (const MethodMap& m : find_method("gradcam").compute(capture)) {
    expect_close(m.value[0], load(dir.file("gradcam_" + m.layer + ".npy")), "gradcam " + m.layer);
  }
}

void expect_target_maps(const Engine& engine, Pass& pass, int64_t target, const at::Tensor& noise,
                        const TempDir& dir) {
  MethodParams params;
  params.sample_batch = 2;  // 3 noisy copies: a partial last chunk
  params.score = Score{};
  Capture capture(engine, pass, {target}, params);
  expect_gradient_maps(capture, dir);
  expect_close(method_util::smooth_gradient(capture, noise, Backprop::kPlain)[0],
               load(dir.file("smoothgrad.npy")), "smoothgrad");
  for (const MethodMap& m : find_method("scorecam").compute(capture)) {
    expect_close(m.value[0], load(dir.file("scorecam_" + m.layer + ".npy")), "scorecam " + m.layer);
  }
}

}  // namespace cnnviz::test
