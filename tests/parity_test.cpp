// Preprocessing parity with torchvision: tests/reference/preprocess_ref.py runs
// PIL + torchvision transforms on the same file. cnnviz resizes with Pillow's
// own fixed-point arithmetic (resize.h) and normalizes with the same float
// operations, so the tensors should be identical; kMaxAbs allows float
// rounding only. (The bound is 0.05; ATen's float antialiased resize
// reached 0.018, and that was enough to swap close top-5 ranks.)
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cnnviz/io/image.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/preprocess.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

constexpr double kMaxAbs = 1e-5;
constexpr double kMaxMean = 1e-6;

class ModelParityTest : public ::testing::Test {
 protected:
  // Images of every kind the decoder handles, made here, plus the shared
  // photos and scikit-image's chelsea when they are installed.
  std::vector<std::string> images() {
    std::vector<std::string> paths;
    cv::Mat noise(301, 517, CV_8UC3);
    cv::randu(noise, 0, 255);
    cv::GaussianBlur(noise, noise, cv::Size(7, 7), 2.0);  // photo-like smoothness
    cv::imwrite(dir_.file("wide.jpg"), noise);
    cv::imwrite(dir_.file("tall.png"), noise.t());
    cv::Mat gray;
    cv::extractChannel(noise, gray, 1);
    cv::imwrite(dir_.file("gray.png"), gray);
    cv::Mat bgra;
    cv::cvtColor(noise, bgra, cv::COLOR_BGR2BGRA);
    cv::imwrite(dir_.file("rgba.png"), bgra);
    cv::Mat deep;
    noise.convertTo(deep, CV_16UC3, 257.0);
    cv::imwrite(dir_.file("deep.png"), deep);
    for (const char* n : {"wide.jpg", "tall.png", "gray.png", "rgba.png", "deep.png"}) {
      paths.push_back(dir_.file(n));
    }
    std::string shared = test::shared_dir();
    if (!shared.empty()) {
      for (const auto& e : fs::directory_iterator(shared + "/images")) paths.push_back(e.path());
    }
    const char* chelsea = "/usr/lib/python3/dist-packages/skimage/data/chelsea.png";
    if (fs::exists(chelsea)) paths.push_back(chelsea);
    return paths;
  }

  test::TempDir dir_;
};

TEST_F(ModelParityTest, PreprocessingMatchesTorchvision) {
  const std::string ref = test::source_dir() + "/tests/reference/preprocess_ref.py";
  Preprocessing p;
  // One reference run for every image (Python and torch start once).
  const std::vector<std::string> all = images();
  std::vector<std::string> args = {test::python(), ref};
  for (size_t i = 0; i < all.size(); ++i) {
    args.push_back(all[i]);
    args.push_back(dir_.file("ref" + std::to_string(i) + ".npy"));
  }
  test::RunResult r = test::run(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(all[i]);
    NpyArray expected = read_npy(dir_.file("ref" + std::to_string(i) + ".npy"));
    ASSERT_EQ(expected.shape, (std::vector<int64_t>{3, 224, 224}));
    at::Tensor want = at::from_blob(expected.data.data(), {3, 224, 224}, at::kFloat);
    at::Tensor got = preprocess(read_image_rgb(all[i]), p);
    at::Tensor diff = (got - want).abs();
    EXPECT_LE(diff.max().item<double>(), kMaxAbs);
    EXPECT_LE(diff.mean().item<double>(), kMaxMean);
  }
}

// Without a crop: torchvision's Resize alone, the input as tall or wide as the image.
TEST_F(ModelParityTest, PreprocessingWithoutACropMatchesTorchvision) {
  const std::string ref = test::source_dir() + "/tests/reference/preprocess_ref.py";
  Preprocessing p;
  p.crop = 0;
  p.resize = 96;
  const std::vector<std::string> all = images();
  std::vector<std::string> args = {test::python(), ref};
  for (size_t i = 0; i < all.size(); ++i) {
    args.push_back(all[i]);
    args.push_back(dir_.file("whole" + std::to_string(i) + ".npy"));
  }
  for (const char* a : {"--resize", "96", "--crop", "0"}) args.push_back(a);
  test::RunResult r = test::run(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(all[i]);
    NpyArray expected = read_npy(dir_.file("whole" + std::to_string(i) + ".npy"));
    at::Tensor want = at::from_blob(expected.data.data(), expected.shape, at::kFloat);
    at::Tensor got = preprocess(read_image_rgb(all[i]), p);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_EQ(std::min(got.size(1), got.size(2)), 96);
    EXPECT_LE((got - want).abs().max().item<double>(), kMaxAbs);
  }
}

// A 1-channel model: torchvision's Grayscale() (PIL's convert("L"), ITU-R
// 601 luma in fixed point) before the resize, one mean and std.
TEST_F(ModelParityTest, GreyPreprocessingMatchesTorchvision) {
  const std::string ref = test::source_dir() + "/tests/reference/preprocess_ref.py";
  Preprocessing p;
  p.channels = 1;
  p.resize = 36;
  p.crop = 28;
  p.mean[0] = 0.5f;
  p.std[0] = 0.25f;
  const std::vector<std::string> all = images();
  const size_t n = std::min<size_t>(all.size(), 3);  // three images are enough
  std::vector<std::string> args = {test::python(), ref};
  for (size_t i = 0; i < n; ++i) {
    args.push_back(all[i]);
    args.push_back(dir_.file("grey" + std::to_string(i) + ".npy"));
  }
  for (const char* a :
       {"--grey", "--resize", "36", "--crop", "28", "--mean", "0.5", "--std", "0.25"}) {
    args.push_back(a);
  }
  test::RunResult r = test::run(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (size_t i = 0; i < n; ++i) {
    SCOPED_TRACE(all[i]);
    NpyArray expected = read_npy(dir_.file("grey" + std::to_string(i) + ".npy"));
    ASSERT_EQ(expected.shape, (std::vector<int64_t>{1, 28, 28}));
    at::Tensor want = at::from_blob(expected.data.data(), {1, 28, 28}, at::kFloat);
    at::Tensor got = preprocess(read_image_rgb(all[i]), p);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_LE((got - want).abs().max().item<double>(), kMaxAbs);
  }
}

}  // namespace
}  // namespace cnnviz
