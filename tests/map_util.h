// Helpers of the tests that compare maps with tests/reference/: .npy tensors,
// the relative tolerance check, and a smooth synthetic photo.
#ifndef CNNVIZ_TESTS_MAP_UTIL_H_
#define CNNVIZ_TESTS_MAP_UTIL_H_

#include <ATen/core/Tensor.h>

#include <string>

#include "cnnviz/core/engine.h"
#include "test_util.h"

namespace cnnviz {
class Capture;
}

namespace cnnviz::test {

// A float32 .npy file as a tensor, and back.
at::Tensor load_npy_tensor(const std::string& path);
void save_npy_tensor(const std::string& path, const at::Tensor& t);

// The tolerance of map comparisons with the references: 1e-4 of the map's
// scale (both sides run the same float32 kernels, in different graphs whose
// reduction orders may differ).
constexpr double kMapRelTol = 1e-4;

// max |got - want| <= rel_tol * max |want| (+1e-12), with the figures in the
// failure message.
void expect_maps_close(const at::Tensor& got, const at::Tensor& want, double rel_tol,
                       const std::string& what);
inline void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  expect_maps_close(got, want, kMapRelTol, what);
}
inline at::Tensor load(const std::string& path) { return load_npy_tensor(path); }

// A 320x240 PNG of blurred uniform noise (`seed`) in `dir`: photo-like
// smoothness, no structure any model recognizes. Returns its path.
std::string smooth_image(const TempDir& dir, int seed);

// Saliency, guided backprop and Grad-CAM at every layer of `capture`'s
// target against methods_ref.py's saliency.npy, guided.npy and
// gradcam_<layer>.npy in `dir`.
void expect_gradient_maps(Capture& capture, const TempDir& dir);

// For target `target` of the one image of `pass` (the logit score), the
// maps methods_ref.py wrote to `dir` with --all-layers --score-cam --noise
// (`noise`, unit scale): saliency, guided backprop, Grad-CAM of every layer
// of `engine`, SmoothGrad (nested passes of 2 images) and Score-CAM.
void expect_target_maps(const Engine& engine, Pass& pass, int64_t target, const at::Tensor& noise,
                        const TempDir& dir);

// A width x height PNG with regions and gradients in `dir`
// ("structured_<width>.png"), so that random segmenters' and detectors'
// classes vary across it. Returns its path.
std::string structured_image(const TempDir& dir, int width, int height);

}  // namespace cnnviz::test

#endif  // CNNVIZ_TESTS_MAP_UTIL_H_
