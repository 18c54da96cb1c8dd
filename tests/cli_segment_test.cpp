// `cnnviz segment` on the tiny FCN (torchvision's FCN on a small backbone,
// random weights): each class's area and the mask agree with
// tests/reference/segment_ref.py; pictures, bad images and the refusals
// between classifiers and segmenters.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cnnviz/io/label_map.h"
#include "cnnviz/io/npy.h"
#include "map_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {

using CliSegmentTest = test::PhotoCliTest;


TEST_F(CliSegmentTest, AreasAndMasksMatchTheReference) {
  const std::string fcn = test::test_models_dir() + "/tiny_fcn.pt";
  const std::string wide = test::structured_image(dir_, 150, 90);
  const std::string tall = test::structured_image(dir_, 70, 120);
  const std::string bad = dir_.file("bad.png");
  test::write_text(bad, "not an image");
  test::RunResult r = cnnviz({"segment", "-q", "-m", fcn, "--json", "-o", out_, wide, bad, tall});
  ASSERT_EQ(r.exit_code, 3) << r.err;  // the bad image; the others still run
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  ASSERT_EQ(doc["results"].size(), 3u);
  EXPECT_TRUE(doc["results"][1].contains("error"));
  for (const size_t i : {size_t{0}, size_t{2}}) {
    const nlohmann::json& got = doc["results"][i];
    const std::string image = got["image"];
    SCOPED_TRACE(image);
    const std::string ref = dir_.file("ref" + std::to_string(i) + ".json");
    test::RunResult py = test::run({test::python(),
                                    test::source_dir() + "/tests/reference/segment_ref.py", fcn,
                                    image, ref});
    ASSERT_EQ(py.exit_code, 0) << py.err;
    const nlohmann::json want = nlohmann::json::parse(test::read_text(ref));
    EXPECT_EQ(got["size"]["width"], want["size"][0]);
    EXPECT_EQ(got["input_size"]["width"], want["input_size"][0]);
    EXPECT_EQ(got["input_size"]["height"], want["input_size"][1]);
    const int64_t total = want["size"][0].get<int64_t>() * want["size"][1].get<int64_t>();
    // Preprocessing agrees with torchvision to float precision, not bit for
    // bit: a pixel whose two best classes tie that closely may differ.
    int64_t listed = 0;
    for (const auto& c : got["classes"]) {
      const std::string k = std::to_string(c["index"].get<int64_t>());
      const int64_t ref_pixels = want["pixels"].value(k, int64_t{0});
      EXPECT_LE(std::abs(c["pixels"].get<int64_t>() - ref_pixels), total / 200) << "class " << k;
      EXPECT_NEAR(c["share"].get<double>(), static_cast<double>(c["pixels"]) / total, 1e-12);
      listed += c["pixels"].get<int64_t>();
    }
    EXPECT_EQ(listed, total);
    EXPECT_GE(want["pixels"].size(), 2u) << "the test image should show several classes";
    // The mask: each pixel in its reference class's colour.
    const NpyArray labels = read_npy(ref.substr(0, ref.size() - 5) + ".npy");
    const cv::Mat mask = cv::imread(out_ + "/" + got["mask"].get<std::string>());
    ASSERT_EQ(mask.cols, want["size"][0].get<int>());
    int64_t same = 0;
    for (int y = 0; y < mask.rows; ++y) {
      for (int x = 0; x < mask.cols; ++x) {
        const auto k = static_cast<int64_t>(labels.data[static_cast<size_t>(y) * mask.cols + x]);
        const cv::Vec3b bgr = mask.at<cv::Vec3b>(y, x), c = class_colour(k);
        same += bgr[2] == c[0] && bgr[1] == c[1] && bgr[0] == c[2];
      }
    }
    EXPECT_GE(same, total - total / 200);
    EXPECT_FALSE(cv::imread(out_ + "/" + got["overlay"].get<std::string>()).empty());
  }
  // A run without failures and without pictures.
  r = cnnviz({"segment", "-q", "-m", fcn, "--json", wide});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json plain = nlohmann::json::parse(r.out);
  EXPECT_TRUE(plain["outdir"].is_null());
  EXPECT_TRUE(plain["results"][0]["mask"].is_null());
  EXPECT_EQ(plain["results"][0]["classes"], doc["results"][0]["classes"]);
}

TEST_F(CliSegmentTest, TorchvisionsSegmenterRunsOnWholeImages) {
  const std::string lraspp = test::test_models_dir() + "/lraspp_mobilenet_v3_large.pt";
  test::RunResult r = cnnviz({"segment", "-q", "-m", lraspp, "--json", "-o", out_, image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  const nlohmann::json& got = doc["results"][0];
  // 240 x 180, the shorter side resized to 520 as its weights' transforms do, nothing cut.
  EXPECT_EQ(got["input_size"], nlohmann::json({{"width", 693}, {"height", 520}}));
  int64_t pixels = 0;
  for (const auto& c : got["classes"]) pixels += c["pixels"].get<int64_t>();
  EXPECT_EQ(pixels, 240 * 180);
  const cv::Mat mask = cv::imread(out_ + "/" + got["mask"].get<std::string>());
  EXPECT_EQ(mask.cols, 240);
  EXPECT_EQ(mask.rows, 180);
  // `models` says what it is; its layers are listed; the explanation methods
  // take classifiers.
  r = cnnviz({"models", "--json", "--models-dir", test::test_models_dir()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& m : nlohmann::json::parse(r.out)["models"]) {
    if (m["name"] == "lraspp_mobilenet_v3_large") {
      EXPECT_EQ(m["task"], "segment");
    }
    if (m["name"] == "squeezenet1_1") {
      EXPECT_EQ(m["task"], "classify");
    }
    if (m["name"] == "tiny_yolov8") {
      EXPECT_EQ(m["task"], "detect");
    }
  }
  r = cnnviz({"layers", "-m", lraspp});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("classifier.low_classifier"), std::string::npos) << r.out;
  // Its stages: the backbone's blocks through its dict output, then the head;
  // the default layer is the backbone's last.
  const std::string maps = out_ + "-maps";
  r = cnnviz({"gradcam", "-q", "-m", lraspp, "--all-layers", "--write", "overlay_full", "-o",
              maps, image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json manifest = nlohmann::json::parse(test::read_text(maps + "/manifest.json"));
  std::vector<std::string> stages;
  for (int i = 0; i <= 16; ++i) stages.push_back("backbone." + std::to_string(i));
  stages.push_back("classifier");
  EXPECT_EQ(manifest["layers"], nlohmann::json(stages));
  const nlohmann::json& target = manifest["images"][0]["targets"][0];
  EXPECT_NE(target["label"], "__background__");
  EXPECT_GT(target["area"].get<double>(), 0.0);
  const std::string overlay = maps + "/" + manifest["images"][0]["dir"].get<std::string>() +
                              "/gradcam_backbone.16_c" + std::to_string(target["class"].get<int>()) +
                              "_overlay_full.png";
  const cv::Mat picture = cv::imread(overlay);
  EXPECT_EQ(picture.cols, 240) << overlay;
  EXPECT_EQ(picture.rows, 180) << overlay;
  r = cnnviz({"layers", "--json", "-m", lraspp});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["default_layer"], "backbone.16");
}

TEST_F(CliSegmentTest, RegionsAndScoresAreChecked) {
  const std::string fcn = test::test_models_dir() + "/tiny_fcn.pt";
  const std::string wide = test::structured_image(dir_, 150, 90);
  const std::string tall = test::structured_image(dir_, 70, 120);
  cv::Mat inside = cv::Mat::zeros(90, 150, CV_8UC3);
  inside(cv::Rect(40, 10, 90, 60)).setTo(cv::Scalar(255, 255, 255));
  const std::string region = dir_.file("region.png");
  cv::imwrite(region, inside);
  // The region fits the wide image; the tall one fails with both sizes named,
  // and the wide one's maps are still written.
  test::RunResult r = cnnviz({"gradcam", "-q", "-m", fcn, "--region", region, "-o", out_, wide,
                              tall});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("image '" + tall + "': --region '" + region +
                       "' is 150x90; the image is 70x120"),
            std::string::npos)
      << r.err;
  const nlohmann::json manifest = nlohmann::json::parse(test::read_text(out_ + "/manifest.json"));
  EXPECT_EQ(manifest["layers"], nlohmann::json({"backbone.1"}));
  EXPECT_EQ(manifest["images"][0]["targets"].size(), 1u);
  EXPECT_TRUE(manifest["images"][1].contains("error"));
  {
    // The target's pixels are outlined in its class's colour, within the
    // region only.
    const int cls = manifest["images"][0]["targets"][0]["class"].get<int>();
    r = cnnviz({"gradcam", "-q", "-m", fcn, "--region", region, "--write", "overlay_full", "-o",
                out_ + "-outline", wide});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string dir = out_ + "-outline/" +
                            nlohmann::json::parse(test::read_text(out_ + "-outline/manifest.json"))
                                ["images"][0]["dir"]
                                    .get<std::string>();
    const cv::Mat picture =
        cv::imread(dir + "/gradcam_backbone.1_c" + std::to_string(cls) + "_overlay_full.png");
    ASSERT_FALSE(picture.empty());
    const cv::Vec3b rgb = class_colour(cls);
    const cv::Vec3b bgr(rgb[2], rgb[1], rgb[0]);
    const cv::Rect near(38, 8, 94, 64);  // the region and the line's width
    int inside_count = 0, outside_count = 0;
    for (int y = 0; y < picture.rows; ++y) {
      for (int x = 0; x < picture.cols; ++x) {
        if (picture.at<cv::Vec3b>(y, x) != bgr) continue;
        ++(near.contains(cv::Point(x, y)) ? inside_count : outside_count);
      }
    }
    EXPECT_GT(inside_count, 20);
    EXPECT_EQ(outside_count, 0);
  }

  cv::Mat grey = inside.clone();
  grey.at<cv::Vec3b>(50, 60) = cv::Vec3b(128, 128, 128);
  const std::string two = dir_.file("two_colours.png");
  cv::imwrite(two, grey);
  const std::string black = dir_.file("black.png");
  cv::imwrite(black, cv::Mat::zeros(90, 150, CV_8UC3));
  const struct {
    std::vector<std::string> args;
    int code;
    std::string message;
  } refusals[] = {
      {{"--region", two}, 3, "--region '" + two + "': not binary: pixel (60, 50)"},
      {{"--region", black}, 3, "--region '" + black + "': empty: every pixel is black"},
      {{"--region", dir_.file("missing.png")}, 3, "--region '" + dir_.file("missing.png") + "': "},
      {{"--score", "probability"}, 2, "--score probability: a segmenter's target is the sum"},
  };
  for (const auto& refusal : refusals) {
    std::vector<std::string> argv = {"gradcam", "-q", "-m", fcn, "-o", out_ + "-r"};
    argv.insert(argv.end(), refusal.args.begin(), refusal.args.end());
    argv.push_back(wide);
    r = cnnviz(argv);
    EXPECT_EQ(r.exit_code, refusal.code) << r.err;
    EXPECT_NE(r.err.find(refusal.message), std::string::npos) << r.err;
    // One line after the random-weights warning's two.
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 3) << r.err;
  }
  // A unit of a segmenter is its target as a classifier's is.
  r = cnnviz({"guided-backprop", "-q", "-m", fcn, "--unit", "backbone.1:3", "-o", out_ + "-u",
              wide});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(test::read_text(out_ + "-u/manifest.json"))["images"][0]
                ["targets"][0]["source"],
            "unit");
  r = cnnviz({"gradcam", "-q", "-m", model_, "--region", region, "-o", out_ + "-c", image_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--region '" + region + "': applies to segmenters"), std::string::npos)
      << r.err;
}

TEST_F(CliSegmentTest, ClassifiersAndSegmentersAreToldApart) {
  const std::string fcn = test::test_models_dir() + "/tiny_fcn.pt";
  test::RunResult r = cnnviz({"classify", "-q", "-m", fcn, image_});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("is a segmenter (its forward gives [1, 5, 40, 53] class scores per pixel): "
                       "`cnnviz segment` labels its pixels"),
            std::string::npos)
      << r.err;
  r = cnnviz({"segment", "-q", "-m", model_, image_});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("forward does not return [N,classes,H,W] class scores per pixel"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace cnnviz
