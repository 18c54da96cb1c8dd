// torchvision's detectors, exported as dense predictions
// (scripts/torchvision_detectors.py), against tests/reference/methods_ref.py,
// which runs the torchvision model itself: its own transform, heads (and
// region proposals), decoding, threshold (0.25) and NMS at its own IoU (no
// top-k cap). The test models are tiny_retinanet and tiny_fasterrcnn
// (torchvision's RetinaNet and Faster R-CNN with their FPN, heads, anchors
// and box coders, on a small ResNet; random weights).
//
// Checked: the detections (boxes, labels, scores, in order), then for a
// detection and for a box query: saliency, guided backprop, and Grad-CAM at
// the body's last stage and at two FPN levels, each against the gradient of
// torchvision's own output score. Faster R-CNN's passes of one image all
// score the first pass's proposals.
//
// Tolerances: detections 1e-4 px and 1e-5 in score; maps 1e-4 of the map's
// max |value| (methods_test.cpp).
#include <ATen/ATen.h>
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

const std::vector<std::string> kLayers = {"backbone.body.layer4", "backbone.fpn.layer_blocks.0",
                                          "backbone.fpn.layer_blocks.1"};

struct Reference {
  test::TempDir dir;
  nlohmann::json detections;
};

// methods_ref.py on `image` with `extra` arguments; the model's own
// detections in reference.detections.
void run_reference(const Model& model, const std::string& image,
                   const std::vector<std::string>& extra, Reference& ref) {
  std::string layers;
  for (const std::string& l : kLayers) layers += (layers.empty() ? "" : ",") + l;
  std::vector<std::string> args = {model.info().path, image, ref.dir.path(), "--layers", layers,
                                   "--threads", std::to_string(set_threads(0))};
  args.insert(args.end(), extra.begin(), extra.end());
  const test::RunResult r = test::run_reference("methods_ref.py", args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ref.detections = nlohmann::json::parse(test::read_text(ref.dir.file("detections.json")));
}

// Saliency, guided backprop and Grad-CAM of `target` against the reference's.
void expect_maps(const Engine& engine, Pass& pass, int64_t target, const test::TempDir& dir) {
  MethodParams params;
  params.score = Score{};
  Capture capture(engine, pass, {target}, params);
  ASSERT_EQ(capture.layers().size(), kLayers.size());
  test::expect_gradient_maps(capture, dir);
}

class TorchvisionDetectTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Model>(
        Model::load(test::test_models_dir() + "/tiny_" + GetParam() + ".pt"));
    image_ = test::structured_image(images_, 150, 100);
    rgb_ = read_image_rgb(image_);
    x_ = preprocess(rgb_, model_->info().preprocess).unsqueeze(0);
    settings_ = detect_defaults(model_->info());
  }
  test::TempDir images_;
  std::unique_ptr<Model> model_;
  std::string image_;
  cv::Mat rgb_;
  at::Tensor x_;
  DetectSettings settings_;
};

TEST_P(TorchvisionDetectTest, DetectionsAndMapsMatchTorchvision) {
  // torchvision's resize: min(96 / 100, 128 / 150), sides floored.
  EXPECT_EQ(x_.size(2), 85);
  EXPECT_EQ(x_.size(3), 128);
  EXPECT_TRUE(settings_.multi_label);
  EXPECT_DOUBLE_EQ(settings_.iou, 0.5);
  EXPECT_EQ(model_->info().proposals, GetParam() == "fasterrcnn");
  Reference ref;
  run_reference(*model_, image_, {"--class", "1"}, ref);
  Engine engine(*model_, kLayers);
  Pass pass = engine.run(x_, false, {}, settings_);
  const std::vector<Detection>& found = pass.detections().at(0);
  ASSERT_EQ(found.size(), ref.detections["scores"].size());
  ASSERT_GE(found.size(), 2u);
  for (size_t k = 0; k < found.size(); ++k) {
    const auto& box = ref.detections["boxes"][k];
    EXPECT_NEAR(found[k].score, ref.detections["scores"][k].get<double>(), 1e-5) << k;
    EXPECT_EQ(found[k].label, ref.detections["labels"][k].get<int64_t>()) << k;
    EXPECT_NEAR(found[k].x1, box[0].get<double>(), 1e-4) << k;
    EXPECT_NEAR(found[k].y1, box[1].get<double>(), 1e-4) << k;
    EXPECT_NEAR(found[k].x2, box[2].get<double>(), 1e-4) << k;
    EXPECT_NEAR(found[k].y2, box[3].get<double>(), 1e-4) << k;
  }
  expect_maps(engine, pass, 1, ref.dir);
  // A nested pass of the same image scores the same proposals (Faster
  // R-CNN), the same anchors (RetinaNet): the same scores.
  const Pass again = pass.nested(x_, {0});
  expect_close(again.explained()[0], pass.explained()[0], "nested pass");
}

TEST_P(TorchvisionDetectTest, BoxQueryMatchesTorchvision) {
  Engine probe(*model_, {});
  const CropBox geometry = crop_box(rgb_.cols, rgb_.rows, model_->info().preprocess);
  const Detection best = to_source(probe.run(x_, false, {}, settings_).detections().at(0).at(0),
                                   geometry);
  char spec[128];
  std::snprintf(spec, sizeof(spec), "%.4f,%.4f,%.4f,%.4f", best.x1, best.y1,
                std::min(best.x2 + 3, 150.0), std::min(best.y2 + 3, 100.0));
  Reference ref;
  run_reference(*model_, image_, {"--box", spec, "--match-iou", "0.3"}, ref);
  const std::vector<size_t> matched = nlohmann::json::parse(
      test::read_text(ref.dir.file("matched.json"))).get<std::vector<size_t>>();
  DetectSettings settings = settings_;
  settings.match_iou = 0.3;
  settings.queries = {{to_input(*parse_box_spec(spec, model_->info()).box, geometry)}};
  Engine engine(*model_, kLayers);
  Pass pass = engine.run(x_, false, {}, settings);
  ASSERT_EQ(pass.detection_groups().at(0).size(), 1u);
  EXPECT_EQ(pass.detection_groups()[0][0], matched);
  expect_close(pass.explained()[0], load(ref.dir.file("logits.npy")), "box query score");
  expect_maps(engine, pass, 0, ref.dir);
}

INSTANTIATE_TEST_SUITE_P(Model, TorchvisionDetectTest,
                         ::testing::Values("retinanet", "fasterrcnn"));

}  // namespace
}  // namespace cnnviz
