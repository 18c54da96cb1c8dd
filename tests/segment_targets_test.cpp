// A segmenter's class targets (the sum of a class's scores over the pixels
// labelled with it, within --region) against tests/reference/methods_ref.py,
// which computes them with its own hooks on the eager tiny FCN: the default
// class, Grad-CAM at the backbone's stages and at the head, guided
// backprop, SmoothGrad (nested passes keep the clean image's labels) and
// Score-CAM (perturbed passes through the inference module), with and
// without a region.
//
// Tolerances: maps as in methods_test.cpp (1e-4 of the map's max |value|).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cnnviz/core/runtime.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/io/region.h"
#include "cnnviz/methods/methods.h"
#include "map_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {

using test::expect_close;
using test::load;


// White inside [x0,x1) x [y0,y1), black elsewhere.
std::string region_picture(const test::TempDir& dir, int width, int height, cv::Rect inside) {
  cv::Mat m = cv::Mat::zeros(height, width, CV_8UC3);
  m(inside).setTo(cv::Scalar(255, 255, 255));
  const std::string path = dir.file("region.png");
  cv::imwrite(path, m);
  return path;
}

void check_against_reference(const Model& model, const std::string& image,
                             const std::string& region_path, const test::TempDir& dir) {
  const int threads = set_threads(0);
  const cv::Mat rgb = read_image_rgb(image);
  const at::Tensor x = preprocess(rgb, model.info().preprocess).unsqueeze(0);
  const at::Tensor noise =
      at::randn({3, 3, x.size(2), x.size(3)}, at::make_generator<at::CPUGeneratorImpl>(5)) * 0.1;
  test::save_npy_tensor(dir.file("noise.npy"), noise * (x.max() - x.min()));
  std::vector<std::string> args = {model.info().path, image,  dir.path(), "--all-layers",
                                   "--score-cam",     "--noise", dir.file("noise.npy"),
                                   "--threads",       std::to_string(threads)};
  at::Tensor region;
  if (!region_path.empty()) {
    args.insert(args.end(), {"--region", region_path});
    region = region_on_input(read_region(region_path),
                             crop_box(rgb.cols, rgb.rows, model.info().preprocess));
  }
  test::RunResult r = test::run_reference("methods_ref.py", args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  const int64_t cls = meta["class"].get<int64_t>();
  const std::vector<std::string> layers = meta["layers"].get<std::vector<std::string>>();
  EXPECT_EQ(layers, (std::vector<std::string>{"backbone.0", "backbone.1", "classifier"}));
  // cnnviz's own discovery, through the backbone's dict output, agrees.
  EXPECT_EQ(feature_stages(Engine::describe(model).layers), layers);

  Engine engine(model, layers);
  Pass pass = engine.run(x, false, region);
  // The default target: the largest class but the background (class 0).
  const TargetChooser chooser = excluding_class(top_classes(1), model.info().background_class());
  EXPECT_EQ(chooser(pass.logits()), (std::vector<std::vector<int64_t>>{{cls}}));
  expect_close(pass.explained()[0], load(dir.file("logits.npy")), "class scores");
  EXPECT_NEAR(at::softmax(pass.logits(), 1).sum().item<double>(), 1.0, 1e-6);

  test::expect_target_maps(engine, pass, cls, noise, dir);
}

TEST(ModelSegmentTargetsTest, MatchTheReferenceOverTheWholeImage) {
  const Model model = Model::load(test::test_models_dir() + "/tiny_fcn.pt");
  test::TempDir dir;
  check_against_reference(model, test::structured_image(dir, 150, 90), "", dir);
}

TEST(ModelSegmentTargetsTest, MatchTheReferenceWithinARegion) {
  const Model model = Model::load(test::test_models_dir() + "/tiny_fcn.pt");
  test::TempDir dir;
  const std::string image = test::structured_image(dir, 150, 90);
  check_against_reference(model, image, region_picture(dir, 150, 90, cv::Rect(40, 10, 90, 60)),
                          dir);
}

TEST(SegmentTargetsTest, ClassScoresSumEachClassOverItsOwnPixels) {
  // Two images of 2x2 pixels, three classes; labels -1 count for none.
  const at::Tensor scores = at::arange(24, at::kFloat).view({2, 3, 2, 2});
  const at::Tensor labels = at::tensor({0, 2, 2, -1, 1, 1, 1, 1}, at::kLong).view({2, 2, 2});
  const at::Tensor s = class_scores(scores, labels);
  // Image 0: class 0 at (0,0) -> 0; class 2 at (0,1), (1,0) -> 9 + 10.
  EXPECT_TRUE(at::equal(s[0], at::tensor({0.0f, 0.0f, 19.0f})));
  EXPECT_TRUE(at::equal(s[1], at::tensor({0.0f, 16.0f + 17 + 18 + 19, 0.0f})));
  const at::Tensor shares = at::softmax(log_area_shares(labels, 3), 1);
  EXPECT_TRUE(at::allclose(shares[0], at::tensor({1.0f / 3, 0.0f, 2.0f / 3})));
  // Absent classes are never chosen by rank.
  EXPECT_EQ(top_classes(2)(log_area_shares(labels, 3)),
            (std::vector<std::vector<int64_t>>{{2, 1}, {0, kNoTarget}}));
}

}  // namespace
}  // namespace cnnviz
