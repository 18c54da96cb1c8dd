// A detector's detections as targets (detection k: its score at its anchor
// and class, the same in every pass) against tests/reference/methods_ref.py,
// which finds them with tests/reference/detect_ref.py's own letterbox,
// decoding and NMS and differentiates them with its own hooks: saliency,
// guided backprop, Grad-CAM at every backbone stage, SmoothGrad (nested
// passes keep the clean image's detections) and Score-CAM (perturbed passes
// through the inference module), on both tiny YOLO-style detectors.
//
// Tolerances: maps as in methods_test.cpp (1e-4 of the map's max |value|).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cnnviz/core/runtime.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/methods.h"
#include "map_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {

using test::expect_close;
using test::load;

class ModelDetectTargetsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelDetectTargetsTest, MatchTheReference) {
  const Model model = Model::load(test::test_models_dir() + "/tiny_" + GetParam() + ".pt");
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = test::structured_image(dir, 150, 90);
  const at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
  const at::Tensor noise =
      at::randn({3, 3, x.size(2), x.size(3)}, at::make_generator<at::CPUGeneratorImpl>(5)) * 0.1;
  test::save_npy_tensor(dir.file("noise.npy"), noise * (x.max() - x.min()));
  const int64_t target = 1;  // the second best detection
  test::RunResult r = test::run_reference(
      "methods_ref.py", {model.info().path, image, dir.path(), "--all-layers", "--class", "1",
                         "--score-cam", "--noise", dir.file("noise.npy"), "--threads",
                         std::to_string(threads)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  const std::vector<std::string> layers = meta["layers"].get<std::vector<std::string>>();
  EXPECT_EQ(layers, (std::vector<std::string>{"backbone.0", "backbone.1", "backbone.2",
                                              "backbone.3"}));

  Engine engine(model, layers);
  Pass pass = engine.run(x, false, {}, DetectSettings{});
  const at::Tensor want_scores = load(dir.file("logits.npy"));
  ASSERT_EQ(static_cast<int64_t>(pass.detections()[0].size()), want_scores.size(0));
  expect_close(pass.explained()[0], want_scores, "detection scores");
  for (size_t k = 0; k < pass.detections()[0].size(); ++k) {
    EXPECT_NEAR(pass.detections()[0][k].score, want_scores[static_cast<int64_t>(k)].item<double>(),
                1e-5);
  }
  test::expect_target_maps(engine, pass, target, noise, dir);
}

INSTANTIATE_TEST_SUITE_P(Model, ModelDetectTargetsTest, ::testing::Values("yolov8", "yolov5"));

}  // namespace
}  // namespace cnnviz
