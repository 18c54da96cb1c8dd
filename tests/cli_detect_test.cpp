// `cnnviz detect` on the tiny YOLO-style detectors (tests/reference/
// tiny_models.py, random weights): each image's boxes, labels and scores
// agree with tests/reference/detect_ref.py (its own letterbox, decoding and
// torchvision's batched NMS); pictures, bad images, layouts that do not fit
// and the refusals between detectors and the other subcommands.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cnnviz/io/label_map.h"
#include "map_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {

class CliDetectTest : public test::PhotoCliTest {
 protected:
  // What `cnnviz detect --json` finds in the photo with `model`.
  nlohmann::json detections_of(const std::string& model) {
    const test::RunResult r = cnnviz({"detect", "-q", "-m", model, "--json", image_});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out)["results"][0]["detections"]
                            : nlohmann::json::array();
  }
};

std::string detector(const std::string& layout) {
  return test::test_models_dir() + "/tiny_" + layout + ".pt";
}


// The same detections, best first. Boxes whose scores tie (the letterbox's
// grey padding gives identical rows) may come in another order when the
// reference's convolutions round the last bit differently, so each of ours
// is matched to an unused one of the reference's of equal score (1e-5),
// label and box (0.01 px).
void expect_same_detections(const nlohmann::json& got, const nlohmann::json& want) {
  ASSERT_EQ(got["detections"].size(), want["detections"].size());
  std::vector<bool> used(want["detections"].size());
  double last = 2.0;
  for (size_t k = 0; k < got["detections"].size(); ++k) {
    SCOPED_TRACE("detection " + std::to_string(k));
    const nlohmann::json& g = got["detections"][k];
    EXPECT_LE(g["score"].get<double>(), last) << "not best first";
    last = g["score"].get<double>();
    bool found = false;
    for (size_t j = 0; j < used.size() && !found; ++j) {
      const nlohmann::json& w = want["detections"][j];
      bool same = !used[j] && g["class"] == w["label"] &&
                  std::abs(g["score"].get<double>() - w["score"].get<double>()) < 1e-5;
      for (size_t c = 0; c < 4 && same; ++c) {
        same = std::abs(g["box"][c].get<double>() - w["box"][c].get<double>()) < 1e-2;
      }
      if (same) used[j] = found = true;
    }
    EXPECT_TRUE(found) << g.dump();
  }
}

TEST_F(CliDetectTest, BoxesMatchTheReference) {
  const std::string wide = test::structured_image(dir_, 150, 90);
  const std::string tall = test::structured_image(dir_, 70, 120);
  for (const std::string layout : {"yolov8", "yolov5"}) {
    SCOPED_TRACE(layout);
    const std::string model = detector(layout);
    test::RunResult r =
        cnnviz({"detect", "-q", "-m", model, "--json", "-o", out_ + layout, wide, tall, image_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json doc = nlohmann::json::parse(r.out);
    EXPECT_EQ(doc["layout"], layout);
    ASSERT_EQ(doc["results"].size(), 3u);
    size_t boxes = 0;
    for (const nlohmann::json& got : doc["results"]) {
      const std::string image = got["image"];
      SCOPED_TRACE(image);
      const std::string ref = dir_.file("ref.json");
      test::RunResult py = test::run_reference("detect_ref.py", {model, image, ref});
      ASSERT_EQ(py.exit_code, 0) << py.err;
      const nlohmann::json want = nlohmann::json::parse(test::read_text(ref));
      EXPECT_EQ(got["size"]["width"], want["size"][0]);
      EXPECT_EQ(got["input_size"]["width"], 64);
      expect_same_detections(got, want);
      boxes += got["detections"].size();
      // The picture: the image at its own size.
      const cv::Mat picture = cv::imread(out_ + layout + "/" + got["boxes"].get<std::string>());
      EXPECT_EQ(picture.cols, want["size"][0].get<int>());
      EXPECT_EQ(picture.rows, want["size"][1].get<int>());
    }
    EXPECT_GT(boxes, 3u) << "the test images should show boxes";
  }
}

TEST_F(CliDetectTest, ThresholdsAndEmptyImages) {
  const std::string model = detector("yolov8");
  test::RunResult r = cnnviz({"detect", "-m", model, "--min-score", "1", "--json", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("image '" + image_ + "': no box scores above 1.00"), std::string::npos)
      << r.err;
  EXPECT_TRUE(nlohmann::json::parse(r.out)["results"][0]["detections"].empty());
  r = cnnviz({"detect", "-q", "-m", model, "--max-detections", "2", "--min-score", "0",
              "--json", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["results"][0]["detections"].size(), 2u);
  // Text: one line per box after the image's.
  r = cnnviz({"detect", "-q", "-m", model, "--max-detections", "3", "--min-score", "0", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 4) << r.out;
  EXPECT_NE(r.out.find("tiny "), std::string::npos) << r.out;
  for (const char* bad : {"--iou=1.5", "--min-score=-0.1", "--max-detections=0"}) {
    r = cnnviz({"detect", "-q", "-m", model, bad, image_});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
  }
}

TEST_F(CliDetectTest, LayoutsAndTasksAreChecked) {
  const std::string bad = dir_.file("bad.png");
  test::write_text(bad, "not an image");
  // A bad image fails alone.
  test::RunResult r = cnnviz({"detect", "-q", "-m", detector("yolov5"), "--json", image_, bad});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(nlohmann::json::parse(r.out)["results"][1].contains("error"));
  // The YOLOv8 output read as YOLOv5's: the shape is named.
  r = cnnviz({"detect", "-q", "-m", detector("yolov8"), "--layout", "yolov5", image_});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("does not fit layout yolov5 ([N, A, 5+C] with C = 3 classes)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("its output [1, 7, "), std::string::npos) << r.err;
  r = cnnviz({"detect", "-q", "-m", detector("yolov8"), "--layout", "yolov7", image_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  // --layout also names the input's layout: once per kind, nhwc for ONNX
  // models only, and the detector layouts for detect only.
  r = cnnviz(
      {"detect", "-q", "-m", detector("yolov5"), "--layout", "yolov5", "--layout", "nchw", image_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = cnnviz({"detect", "-q", "-m", detector("yolov5"), "--layout", "yolov5", "--layout", "yolov8",
              image_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--layout yolov5 and --layout yolov8: pick one"), std::string::npos)
      << r.err;
  r = cnnviz({"detect", "-q", "-m", detector("yolov5"), "--layout", "nhwc", image_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("a channels-last input (nhwc) is for ONNX models"), std::string::npos)
      << r.err;
  r = cnnviz({"classify", "-q", "-m", detector("yolov5"), "--layout", "yolov5", image_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  // Classifiers are not detectors, and the other subcommands refuse detectors.
  r = cnnviz({"detect", "-q", "-m", model_, image_});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("is not a detector"), std::string::npos) << r.err;
  for (const std::string sub : {"classify", "segment"}) {
    r = cnnviz({sub, "-q", "-m", detector("yolov8"), "-o", out_ + sub, image_});
    if (sub == "classify") r = cnnviz({sub, "-q", "-m", detector("yolov8"), image_});
    EXPECT_EQ(r.exit_code, 5) << sub << ": " << r.err;
    EXPECT_NE(r.err.find("is a detector: `cnnviz detect` finds its boxes"), std::string::npos)
        << sub << ": " << r.err;
  }
}

TEST_F(CliDetectTest, EveryMethodExplainsDetections) {
  const std::string model = detector("yolov5");
  const nlohmann::json found = detections_of(model);
  ASSERT_GE(found.size(), 2u);
  test::RunResult r;
  // --box 1: the second best, at every stage; its box as detect gave it.
  r = cnnviz({"gradcam", "-q", "-m", model, "--all-layers", "--box", "1", "--write",
              "overlay_full", "-o", out_, image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json manifest = nlohmann::json::parse(test::read_text(out_ + "/manifest.json"));
  EXPECT_EQ(manifest["layers"].size(), 4u);
  const nlohmann::json& images = manifest["images"][0];
  ASSERT_EQ(images["targets"].size(), 1u);
  const nlohmann::json& target = images["targets"][0];
  EXPECT_EQ(target["detection"], 1);
  EXPECT_EQ(target["class"], found[1]["class"]);
  for (size_t c = 0; c < 4; ++c) {
    // The explanation's pass and detect's inference module round apart.
    EXPECT_NEAR(target["box"][c].get<double>(), found[1]["box"][c].get<double>(), 1e-3);
  }
  EXPECT_NEAR(target["score"].get<double>(), found[1]["score"].get<double>(), 1e-5);
  const std::string overlay = out_ + "/" + images["dir"].get<std::string>() +
                              "/gradcam_backbone.3_d1-c" +
                              std::to_string(found[1]["class"].get<int>()) + "_overlay_full.png";
  const cv::Mat picture = cv::imread(overlay);
  const cv::Mat photo = cv::imread(image_);
  ASSERT_EQ(picture.size(), photo.size()) << overlay;
  // The detection's box is outlined in its class's colour: its left edge,
  // halfway down.
  const cv::Vec3b rgb = class_colour(found[1]["class"].get<int64_t>() + 1);
  const int x = static_cast<int>(std::lround(found[1]["box"][0].get<double>()));
  const int y = static_cast<int>(std::lround(
      (found[1]["box"][1].get<double>() + found[1]["box"][3].get<double>()) / 2));
  const cv::Vec3b bgr = picture.at<cv::Vec3b>(std::min(y, picture.rows - 1),
                                              std::min(x, picture.cols - 1));
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(bgr[2 - c], rgb[c], 48) << "channel " << c;
  // By default every detection, each its own backward.
  r = cnnviz({"guided-backprop", "-q", "-m", model, "--write", "npy", "-o", out_ + "-all", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json all =
      nlohmann::json::parse(test::read_text(out_ + "-all/manifest.json"))["images"][0];
  EXPECT_EQ(all["targets"].size(), found.size());
  // A detection the image does not have: a note, no target.
  r = cnnviz({"gradcam", "-m", model, "--box", "999", "-o", out_ + "-none", image_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("--box '999': it has " + std::to_string(found.size()) + " detections"),
            std::string::npos)
      << r.err;
  // Targets that are not detections are refused.
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--class", "1"}, {"--score", "probability"}, {"--top", "2"}}) {
    std::vector<std::string> argv = {"gradcam", "-q", "-m", model, "-o", out_ + "-bad"};
    argv.insert(argv.end(), bad.begin(), bad.end());
    argv.push_back(image_);
    r = cnnviz(argv);
    EXPECT_EQ(r.exit_code, 2) << bad[0] << ": " << r.err;
  }
  r = cnnviz({"gradcam", "-q", "-m", model_, "--box", "0", "-o", out_ + "-c", image_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--box '0': applies to detectors"), std::string::npos) << r.err;
  r = cnnviz({"gradcam", "-q", "-m", model_, "--iou", "0.3", "-o", out_ + "-c", image_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--iou: applies to detectors"), std::string::npos) << r.err;
}

// The lines of stderr but the random-weights warning.
int error_lines(const std::string& err) {
  int n = 0;
  size_t start = 0;
  for (size_t end = err.find('\n'); end != std::string::npos; end = err.find('\n', start)) {
    const std::string line = err.substr(start, end - start);
    start = end + 1;
    if (line.find("RANDOM weights") == std::string::npos && line.rfind("cnnviz:   ", 0) != 0) ++n;
  }
  return n;
}

// torchvision's detectors as exported (tiny_retinanet, tiny_fasterrcnn, and
// the full SSDlite with random weights): their metadata's NMS IoU and every
// class of an anchor as a candidate, their resize, all-layer maps of a
// detection at the body's and the FPN's stages, and Faster R-CNN through
// gradient, perturbation and path methods.
TEST_F(CliDetectTest, TorchvisionDetectors) {
  const std::string model = test::test_models_dir() + "/tiny_retinanet.pt";
  // The noise photo scores below 0.25 on it.
  test::RunResult r =
      cnnviz({"detect", "-q", "-m", model, "--min-score", "0.1", "--json", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["settings"]["iou"], 0.5);
  EXPECT_EQ(doc["settings"]["multi_label"], true);
  const nlohmann::json found = doc["results"][0]["detections"];
  ASSERT_GE(found.size(), 1u);
  r = cnnviz({"detect", "-q", "-m", model, "--iou", "0.3", "--json", image_});
  EXPECT_EQ(nlohmann::json::parse(r.out)["settings"]["iou"], 0.3);
  r = cnnviz({"gradcam", "-q", "-m", model, "--all-layers", "--box", "0", "--min-score", "0.1",
              "--write", "npy", "-o", out_ + "-tv", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json manifest =
      nlohmann::json::parse(test::read_text(out_ + "-tv/manifest.json"));
  const std::vector<std::string> layers = manifest["layers"].get<std::vector<std::string>>();
  EXPECT_EQ(layers.size(), 12u);
  EXPECT_NE(std::find(layers.begin(), layers.end(), "backbone.fpn.layer_blocks.0"), layers.end());
  // The decoding the maps' detections came from: the model's own.
  EXPECT_EQ(manifest["options"]["nms_iou"], 0.5);
  EXPECT_EQ(manifest["options"]["multi_label"], true);
  const nlohmann::json& target = manifest["images"][0]["targets"][0];
  EXPECT_EQ(target["class"], found[0]["class"]);
  EXPECT_NEAR(target["score"].get<double>(), found[0]["score"].get<double>(), 1e-5);
  EXPECT_EQ(manifest["images"][0]["files"].size(), 12u);

  // Faster R-CNN (tiny_fasterrcnn): its proposals held fixed, the
  // perturbation methods run through it too.
  const std::string rcnn = test::test_models_dir() + "/tiny_fasterrcnn.pt";
  const nlohmann::json rcnn_found = detections_of(rcnn);
  ASSERT_GE(rcnn_found.size(), 1u);
  const std::vector<std::vector<std::string>> runs = {
      {"gradcam"},
      {"occlusion", "--window", "32", "--stride", "32", "--sample-batch", "8"},
      {"occlusion", "--window", "32", "--stride", "32", "--sample-batch", "1"},
      {"d-rise", "--masks", "40"},
      {"integrated-gradients", "--steps", "4"}};
  for (const std::vector<std::string>& run : runs) {
    const std::string method = run[0] + (run.back() == "1" ? "-1" : "");
    std::vector<std::string> argv = run;
    argv.insert(argv.end(), {"-q", "-m", rcnn, "--box", "0", "--write", "npy", "-o",
                             out_ + "-rcnn-" + method, image_});
    r = cnnviz(argv);
    ASSERT_EQ(r.exit_code, 0) << method << ": " << r.err;
    const nlohmann::json entry = nlohmann::json::parse(
        test::read_text(out_ + "-rcnn-" + method + "/manifest.json"))["images"][0];
    EXPECT_NEAR(entry["targets"][0]["score"].get<double>(), rcnn_found[0]["score"].get<double>(),
                1e-5)
        << method;
  }
  // Every masked copy is scored at the photo's own proposals, whichever
  // copies share a pass.
  const std::string occlusion = "/photo/occlusion_d0-c" +
                                std::to_string(rcnn_found[0]["class"].get<int>()) + ".npy";
  test::expect_close(test::load(out_ + "-rcnn-occlusion" + occlusion),
                     test::load(out_ + "-rcnn-occlusion-1" + occlusion), "occlusion by batch");
  r = cnnviz({"layers", "-m", rcnn});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("backbone.fpn.layer_blocks.0"), std::string::npos) << r.out;

  const std::string ssd = test::test_models_dir() + "/ssdlite320_mobilenet_v3_large.pt";
  r = cnnviz({"detect", "-q", "-m", ssd, "--min-score", "0", "--max-detections", "3", "--json",
              image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["settings"]["iou"], 0.55);
  const nlohmann::json boxes = doc["results"][0]["detections"];
  ASSERT_EQ(boxes.size(), 3u);
  const cv::Mat photo = cv::imread(image_);
  for (const nlohmann::json& d : boxes) {
    EXPECT_NE(d["class"], 0) << "SSD's background is never detected";
    EXPECT_GE(d["box"][0].get<double>(), 0.0);
    EXPECT_LE(d["box"][2].get<double>(), photo.cols + 1e-3);
    EXPECT_LE(d["box"][3].get<double>(), photo.rows + 1e-3);
  }
}

// D-RISE maps a detection (or a box query) at the photo's size; on a
// classifier it is refused with one line.
TEST_F(CliDetectTest, DRiseExplainsDetectionsOnly) {
  const std::string model = detector("yolov8");
  test::RunResult r = cnnviz({"d-rise", "-q", "-m", model, "--box", "0", "--masks", "40",
                              "--write", "npy,overlay_full", "-o", out_, image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json entry =
      nlohmann::json::parse(test::read_text(out_ + "/manifest.json"))["images"][0];
  ASSERT_EQ(entry["targets"].size(), 1u);
  EXPECT_EQ(entry["targets"][0]["detection"], 0);
  EXPECT_EQ(entry["files"].size(), 2u);
  for (const nlohmann::json& f : entry["files"]) {
    EXPECT_EQ(f["layer"], nullptr);
    EXPECT_EQ(f["detection"], 0);
  }
  r = cnnviz({"d-rise", "-q", "-m", model_, "--masks", "10", "-o", out_ + "-c", image_});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("d-rise: explains a detector's detections"), std::string::npos) << r.err;
  EXPECT_EQ(error_lines(r.err), 1) << r.err;
}

std::string box_text(const nlohmann::json& box) {
  char text[128];
  std::snprintf(text, sizeof(text), "%.3f,%.3f,%.3f,%.3f", box[0].get<double>(),
                box[1].get<double>(), box[2].get<double>(), box[3].get<double>());
  return text;
}

// --box x1,y1,x2,y2[:label]: the detections overlapping it, summed; from
// the command line and from a targets file; and each bad box's one line.
TEST_F(CliDetectTest, BoxesAsTargets) {
  const std::string model = detector("yolov5");
  const nlohmann::json found = detections_of(model);
  ASSERT_GE(found.size(), 1u);
  test::RunResult r;
  const std::string spec = box_text(found[0]["box"]);
  // The image right after --box: one box per --box.
  r = cnnviz({"gradcam", "-q", "-m", model, "--write", "npy", "-o", out_, "--box", spec, image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(test::read_text(out_ + "/manifest.json"));
  EXPECT_EQ(doc["options"]["iou"], 0.5);
  EXPECT_EQ(doc["options"]["min_score"], 0.25);
  EXPECT_EQ(doc["options"]["nms_iou"], 0.45);  // cnnviz's default: the model's metadata has none
  EXPECT_EQ(doc["options"]["multi_label"], false);
  EXPECT_EQ(doc["options"]["box"], nlohmann::json({spec}));
  nlohmann::json entry = doc["images"][0];
  ASSERT_EQ(entry["targets"].size(), 1u);
  const nlohmann::json target = entry["targets"][0];  // a copy: `entry` is read again below
  EXPECT_EQ(target["source"], "box");
  EXPECT_EQ(target["spec"], spec);
  EXPECT_EQ(target["query"], 0);
  ASSERT_GE(target["detections"].size(), 1u);
  EXPECT_EQ(target["detections"][0], 0);  // the best detection, its own box
  EXPECT_EQ(target["class"], found[0]["class"]);
  double sum = 0;
  for (const nlohmann::json& k : target["detections"]) sum += found[k.get<size_t>()]["score"].get<double>();
  EXPECT_NEAR(target["detection_score"].get<double>(), sum, 1e-5);
  EXPECT_NEAR(target["score"].get<double>(), sum, 1e-5);
  const std::string tag = "_b0-c" + std::to_string(found[0]["class"].get<int>());
  EXPECT_NE(entry["files"][0]["path"].get<std::string>().find(tag), std::string::npos)
      << entry["files"][0]["path"];
  // A label no overlapping detection has: a note, and no target.
  const int other = (found[0]["class"].get<int>() + 1) % 3;
  bool other_matches = false;
  for (const nlohmann::json& k : target["detections"]) {
    other_matches = other_matches || found[k.get<size_t>()]["class"] == other;
  }
  if (!other_matches) {
    r = cnnviz({"gradcam", "-m", model, "--box", spec + ":" + std::to_string(other), "--iou",
                "0.9", "-o", out_ + "-other", image_});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("matches no detection (IoU >= 0.90)"), std::string::npos) << r.err;
  }
  // A targets file: one image's box lies inside it, the other's outside.
  const std::string other_image = test::structured_image(dir_, 150, 90);
  test::write_text(dir_.file("boxes.csv"), "image,boxes\n" + image_ + ",\"" + spec + "\"\n" +
                                               other_image + ",\"10,10,151,20\"\n");
  r = cnnviz({"gradcam", "-m", model, "--targets", dir_.file("boxes.csv"), "--write", "npy",
              "-o", out_ + "-file", image_, other_image});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("'10,10,151,20': lies outside the image (150 x 90 pixels)"),
            std::string::npos)
      << r.err;
  entry = nlohmann::json::parse(test::read_text(out_ + "-file/manifest.json"))["images"][0];
  ASSERT_EQ(entry["targets"].size(), 1u);
  EXPECT_EQ(entry["targets"][0]["source"], "targets");
  EXPECT_EQ(entry["targets"][0]["detections"], target["detections"]);
  // The same target written twice is one target.
  r = cnnviz({"gradcam", "-q", "-m", model, "--write", "npy", "-o", out_ + "-twice", "--box", "0",
              "--box", "00", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(test::read_text(out_ + "-twice/manifest.json"))["images"][0]
                ["targets"]
                    .size(),
            1u);
  // A box left unquoted in a CSV reads as four indices: a note says so.
  test::write_text(dir_.file("unquoted.csv"), image_ + ",0,1,2,3\n");
  r = cnnviz({"gradcam", "-m", model, "--targets", dir_.file("unquoted.csv"), "--write", "npy",
              "-o", out_ + "-unquoted", image_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("line 1: four detection indices; a box is one field"), std::string::npos)
      << r.err;
  // Bad boxes and thresholds: one line each, exit 2.
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--box", "10,10,5,20"},      {"--box", "1,2,3"},       {"--box", "-1,0,5,5"},
           {"--box", "0,0,5,5:giraffe"}, {"--box", "0,0,5,x"},     {"--iou", "0"},
           {"--iou", "1.5"},             {"--box", "0", "--box", "0,0,5,5"},
           {"--box", "0", "--unit", "backbone.2:0"}}) {
    std::vector<std::string> argv = {"gradcam", "-q", "-m", model, "-o", out_ + "-bad"};
    argv.insert(argv.end(), bad.begin(), bad.end());
    argv.push_back(image_);
    r = cnnviz(argv);
    EXPECT_EQ(r.exit_code, 2) << bad[1] << ": " << r.err;
    EXPECT_EQ(error_lines(r.err), 1) << r.err;
  }
}

}  // namespace
}  // namespace cnnviz
