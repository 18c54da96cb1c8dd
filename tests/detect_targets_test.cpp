// A detector's detections as targets (detection k: its score at its anchor
// and class, the same in every pass) against tests/reference/methods_ref.py,
// which finds them with tests/reference/detect_ref.py's own letterbox,
// decoding and NMS and differentiates them with its own hooks: saliency,
// guided backprop, Grad-CAM at every backbone stage, SmoothGrad (nested
// passes keep the clean image's detections) and Score-CAM (perturbed passes
// through the inference module), on both tiny YOLO-style detectors.
//
// Box queries (--box x1,y1,x2,y2) are checked the same way, with the
// reference matching the box on its own; and D-RISE of both kinds of
// target, occlusion and RISE of a detection, with the reference drawing the
// same masks and windows.
//
// Tolerances: maps as in methods_test.cpp (1e-4 of the map's max |value|).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cnnviz/core/runtime.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/compute.h"
#include "cnnviz/methods/methods.h"
#include "cnnviz/run/detect.h"
#include "cnnviz/run/image_targets.h"
#include "map_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {

using test::expect_close;
using test::load;

class ModelDetectTargetsTest : public ::testing::TestWithParam<std::string> {};

// `method`'s map (a perturbation method) of target `target` of the image x,
// with the reference's settings: masks for RISE and D-RISE, windows for
// occlusion; the score is the detection's own (the logit kind).
at::Tensor perturbation_map(const Model& model, const at::Tensor& x, const std::string& name,
                            int64_t target, const DetectSettings& settings) {
  const MethodDef& method = find_method(name);
  MethodParams p;
  p.masks = 120;
  p.grid = 5;
  p.keep = 0.5;
  p.seed = 3;
  p.window = 16;
  p.stride = 8;
  p.sample_batch = 32;
  p.detect = settings;
  p = run_params(method, p, model.info(), Score{ScoreKind::kLogit, false});
  Engine engine(model, {}, std::nullopt, false, false);
  const BatchMaps maps = compute_maps(engine, method, x, fixed_class(target), p);
  return maps.maps.at(0).at(0).value[0];
}

at::Tensor drise_map(const Model& model, const at::Tensor& x, int64_t target,
                     const DetectSettings& settings) {
  return perturbation_map(model, x, "d-rise", target, settings);
}

const std::vector<std::string> kPerturbArgs = {"--drise", "--masks", "120", "--grid", "5",
                                             "--p",     "0.5",     "--seed", "3",
                                             "--window", "16",     "--stride", "8"};

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
  std::vector<std::string> args = {model.info().path, image, dir.path(), "--all-layers",
                                   "--class", "1", "--score-cam", "--noise",
                                   dir.file("noise.npy"), "--threads", std::to_string(threads)};
  args.insert(args.end(), kPerturbArgs.begin(), kPerturbArgs.end());
  args.push_back("--perturb");
  test::RunResult r = test::run_reference("methods_ref.py", args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  const std::vector<std::string> layers = meta["layers"].get<std::vector<std::string>>();
  // Occlusion and RISE score the detection's anchor in every masked image.
  expect_close(perturbation_map(model, x, "occlusion", target, {}), load(dir.file("occlusion.npy")),
               "occlusion");
  expect_close(perturbation_map(model, x, "rise", target, {}), load(dir.file("rise.npy")), "rise");
  EXPECT_EQ(layers, (std::vector<std::string>{"backbone.0", "backbone.1", "backbone.2",
                                              "backbone.3"}));
  // Before the engine below: one pass at a time.
  expect_close(drise_map(model, x, target, DetectSettings{}), load(dir.file("drise.npy")),
               "d-rise");

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

// A box query (--box x1,y1,x2,y2): the sum of the scores of the detections
// overlapping it, found by the reference with torchvision's box_iou after
// its own letterbox of the box.
TEST_P(ModelDetectTargetsTest, BoxQueriesMatchTheReference) {
  const Model model = Model::load(test::test_models_dir() + "/tiny_" + GetParam() + ".pt");
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = test::structured_image(dir, 150, 90);
  const cv::Mat rgb = read_image_rgb(image);
  const at::Tensor x = preprocess(rgb, model.info().preprocess).unsqueeze(0);
  const CropBox box = crop_box(rgb.cols, rgb.rows, model.info().preprocess);
  const at::Tensor noise =
      at::randn({3, 3, x.size(2), x.size(3)}, at::make_generator<at::CPUGeneratorImpl>(6)) * 0.1;
  test::save_npy_tensor(dir.file("noise.npy"), noise * (x.max() - x.min()));
  // The best detection's box in the image's pixels, widened: it then
  // overlaps its neighbours too at the lower threshold.
  Engine probe(model, {});
  const Detection best = to_source(probe.run(x).detections().at(0).at(0), box);
  char spec[128];
  std::snprintf(spec, sizeof(spec), "%.4f,%.4f,%.4f,%.4f", best.x1, best.y1,
                std::min(best.x2 + 4, 150.0), std::min(best.y2 + 4, 90.0));
  std::vector<std::string> args = {model.info().path, image, dir.path(), "--all-layers",
                                   "--box", spec, "--match-iou", "0.3", "--score-cam", "--noise",
                                   dir.file("noise.npy"), "--threads", std::to_string(threads)};
  args.insert(args.end(), kPerturbArgs.begin(), kPerturbArgs.end());
  test::RunResult r = test::run_reference("methods_ref.py", args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  const std::vector<std::string> layers = meta["layers"].get<std::vector<std::string>>();
  const std::vector<size_t> matched =
      nlohmann::json::parse(test::read_text(dir.file("matched.json"))).get<std::vector<size_t>>();

  DetectSettings settings;
  settings.match_iou = 0.3;
  const BoxSpec query = parse_box_spec(spec, model.info());
  settings.queries = {{to_input(*query.box, box)}};
  expect_close(drise_map(model, x, 0, settings), load(dir.file("drise.npy")), "d-rise");
  Engine engine(model, layers);
  Pass pass = engine.run(x, false, {}, settings);
  ASSERT_EQ(pass.detection_groups().at(0).size(), 1u);
  EXPECT_EQ(pass.detection_groups()[0][0], matched);
  expect_close(pass.explained()[0], load(dir.file("logits.npy")), "box query score");
  test::expect_target_maps(engine, pass, 0, noise, dir);
}

INSTANTIATE_TEST_SUITE_P(Model, ModelDetectTargetsTest, ::testing::Values("yolov8", "yolov5"));

}  // namespace
}  // namespace cnnviz
