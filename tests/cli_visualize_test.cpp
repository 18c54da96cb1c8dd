// End-to-end tests of the visualization subcommands (every method's maps and
// options) and `cnnviz layers`.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cnnviz/io/npy.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

class CliVisualizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::squeezenet_path();
    cv::Mat img(200, 300, CV_8UC3);
    cv::randu(img, 0, 255);
    fs::create_directories(dir_.file("a"));
    fs::create_directories(dir_.file("b"));
    image_ = dir_.file("a/photo.png");
    ASSERT_TRUE(cv::imwrite(image_, img));
    twin_ = dir_.file("b/photo.jpg");  // the same stem: needs its own directory
    ASSERT_TRUE(cv::imwrite(twin_, img));
    out_ = dir_.file("out");
  }

  test::RunResult cnnviz(std::vector<std::string> args) { return test::run_cnnviz(args); }

  nlohmann::json manifest() {
    return nlohmann::json::parse(test::read_text(out_ + "/manifest.json"));
  }

  nlohmann::json read_json(const std::string& path) {
    return nlohmann::json::parse(test::read_text(path));
  }

  // Every file the manifest lists exists and decodes.
  void expect_files_decode(const nlohmann::json& doc) {
    for (const auto& img : doc["images"]) {
      if (img.contains("error")) continue;
      ASSERT_FALSE(img["files"].empty());
      for (const auto& f : img["files"]) {
        const std::string path = out_ + "/" + f["path"].get<std::string>();
        if (f["format"] == "png") {
          EXPECT_FALSE(cv::imread(path, cv::IMREAD_UNCHANGED).empty()) << path;
        } else {
          EXPECT_FALSE(read_npy(path).data.empty()) << path;
        }
      }
    }
  }

  test::TempDir dir_;
  std::string model_, image_, twin_, out_;
};

TEST_F(CliVisualizeTest, GuidedBackpropWritesTheSeedsSixMapsAndRawGradient) {
  test::RunResult r = cnnviz({"gbp", "-m", model_, "-o", out_, image_, twin_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json doc = manifest();
  EXPECT_EQ(doc["method"], "guided-backprop");
  EXPECT_EQ(doc["guided_relus"], 26);
  ASSERT_EQ(doc["images"].size(), 2u);
  EXPECT_EQ(doc["images"][0]["dir"], "photo");
  EXPECT_EQ(doc["images"][1]["dir"], "photo-2");
  const int64_t cls = doc["images"][0]["targets"][0]["class"];
  EXPECT_EQ(cls, doc["images"][0]["predictions"][0]["index"].get<int64_t>());
  const std::string base = out_ + "/photo/guided-backprop_c" + std::to_string(cls);
  for (const char* v : {"all", "pos", "neg"}) {
    EXPECT_EQ(cv::imread(base + "_" + v + ".png", cv::IMREAD_UNCHANGED).channels(), 3) << v;
    EXPECT_EQ(cv::imread(base + "_" + v + "_gray.png", cv::IMREAD_UNCHANGED).channels(), 1) << v;
  }
  NpyArray raw = read_npy(base + ".npy");
  EXPECT_EQ(raw.shape, (std::vector<int64_t>{3, 224, 224}));
  EXPECT_EQ(cv::imread(base + "_signed.png", cv::IMREAD_UNCHANGED).channels(), 3);
  EXPECT_EQ(doc["images"][0]["files"].size(), 8u);
  expect_files_decode(doc);
}

TEST_F(CliVisualizeTest, AllLayersGradcamFromOnePassWithContactSheet) {
  test::RunResult r =
      cnnviz({"gradcam", "--all-layers", "-m", model_, "-o", out_, "--json", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc, manifest());
  EXPECT_EQ(doc["layers"].size(), 13u);
  const int64_t cls = doc["images"][0]["targets"][0]["class"];
  const std::string c = "_c" + std::to_string(cls);
  cv::Mat sheet = cv::imread(out_ + "/photo/gradcam" + c + "_contact.png");
  ASSERT_FALSE(sheet.empty());
  // 13 layers in rows of 5, 5 and 3, under a title band.
  EXPECT_EQ(sheet.cols, 224 * 5);
  EXPECT_EQ(sheet.rows, 30 + 3 * (224 + 22));
  // CAMs are stored at layer resolution, overlays at input and source size.
  EXPECT_EQ(read_npy(out_ + "/photo/gradcam_features.12" + c + ".npy").shape,
            (std::vector<int64_t>{13, 13}));
  EXPECT_EQ(cv::imread(out_ + "/photo/gradcam_features.12" + c + "_overlay.png").cols, 224);
  cv::Mat full = cv::imread(out_ + "/photo/gradcam_features.12" + c + "_overlay_full.png");
  EXPECT_EQ(full.cols, 300);
  EXPECT_EQ(full.rows, 200);
  expect_files_decode(doc);
}

TEST_F(CliVisualizeTest, ClassByLabelTopNAndNoRaw) {
  test::RunResult r =
      cnnviz({"gradcam", "-m", model_, "-o", out_, "--class", "King Snake", "--no-raw", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json doc = manifest();
  EXPECT_EQ(doc["images"][0]["targets"][0]["class"], 56);
  for (const auto& f : doc["images"][0]["files"]) EXPECT_EQ(f["format"], "png");
  test::RunResult top = cnnviz({"saliency", "-m", model_, "-o", out_, "--top", "3", image_});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  nlohmann::json t = manifest();
  ASSERT_EQ(t["images"][0]["targets"].size(), 3u);
  EXPECT_EQ(t["images"][0]["targets"][2]["rank"], 3);
}

TEST_F(CliVisualizeTest, GuidedGradcamAndCam) {
  ASSERT_EQ(cnnviz({"guided-gradcam", "-m", model_, "-o", out_, "--layer", "features.9", "--layer",
                    "features.12", image_})
                .exit_code,
            0);
  nlohmann::json doc = manifest();
  EXPECT_EQ(doc["layers"], nlohmann::json({"features.9", "features.12"}));
  expect_files_decode(doc);
  ASSERT_EQ(cnnviz({"cam", "-m", model_, "-o", out_, image_}).exit_code, 0);
  doc = manifest();
  const int64_t cls = doc["images"][0]["targets"][0]["class"];
  EXPECT_EQ(read_npy(out_ + "/photo/cam_c" + std::to_string(cls) + ".npy").shape,
            (std::vector<int64_t>{13, 13}));
}

TEST_F(CliVisualizeTest, LayersListsEveryModule) {
  test::RunResult r = cnnviz({"layers", "-m", model_, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["guided_relus"], 26);
  bool found_default = false;
  for (const auto& l : doc["layers"]) {
    if (l["path"] == "features.12") {
      found_default = l["default"].get<bool>();
      EXPECT_EQ(l["shape"], nlohmann::json({1, 512, 13, 13}));
      EXPECT_EQ(l["type"], "Fire");
    }
  }
  EXPECT_TRUE(found_default);
  test::RunResult table = cnnviz({"layers", "-m", model_});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("features.3.expand3x3"), std::string::npos);
}

TEST_F(CliVisualizeTest, BadRequestsGetOneLineAndTheirExitCode) {
  auto one_line = [](const test::RunResult& r, int code, const std::string& text) {
    EXPECT_EQ(r.exit_code, code) << r.err;
    std::vector<std::string> lines = test::lines(r.err);
    ASSERT_FALSE(lines.empty());
    EXPECT_NE(lines.back().find(text), std::string::npos) << r.err;
    EXPECT_EQ(lines.back().rfind("cnnviz: ", 0), 0u) << r.err;
  };
  one_line(cnnviz({"gradcam", "-m", model_, "-o", out_, "--layer", "features.99", image_}), 5,
           "layer 'features.99' not found in model 'squeezenet1_1' (nearest: features.9");
  one_line(cnnviz({"gradcam", "-m", test::test_models_dir() + "/alexnet.pt", "-o", out_, "--layer",
                   "classifier.1", image_}),
           5, "outputs [1, 4096]: not a feature map");
  one_line(cnnviz({"gradcam", "-m", model_, "-o", out_, "--class", "1000", image_}), 2,
           "--class 1000: out of range");
  one_line(cnnviz({"gradcam", "-m", model_, "-o", out_, "--class", "king snaek", image_}), 2,
           "nearest labels: king snake");
  test::write_text(dir_.file("file"), "x");
  one_line(cnnviz({"saliency", "-m", model_, "-o", dir_.file("file") + "/sub", image_}), 6,
           "cannot create output directory");
  one_line(cnnviz({"cam", "-m", test::test_models_dir() + "/alexnet.pt", "-o", out_, image_}), 5,
           "no global average pooling");
  EXPECT_EQ(
      cnnviz({"gradcam", "--all-layers", "--layer", "features.1", "-m", model_, image_}).exit_code,
      2);
}

TEST_F(CliVisualizeTest, BadImagesDoNotLoseTheOthers) {
  test::write_text(dir_.file("broken.jpg"), "nope");
  test::RunResult r =
      cnnviz({"gradcam", "-m", model_, "-o", out_, dir_.file("broken.jpg"), image_});
  EXPECT_EQ(r.exit_code, 3);
  nlohmann::json doc = manifest();
  ASSERT_EQ(doc["images"].size(), 2u);
  EXPECT_NE(doc["images"][0]["error"].get<std::string>().find("not an image"), std::string::npos);
  EXPECT_FALSE(doc["images"][1]["files"].empty());
  EXPECT_EQ(doc["summary"]["failed"], 1);
}

TEST_F(CliVisualizeTest, SamplingAndCamMethodsWriteTheirMaps) {
  const std::vector<std::vector<std::string>> runs = {
      {"gradient-input"},
      {"smoothgrad", "--samples", "3", "--noise", "0.2", "--of", "guided-backprop"},
      {"integrated-gradients", "--steps", "3", "--baseline", "blurred", "--blur-sigma", "5"},
      {"gradcam++", "--layer", "features.9"},
      {"xgradcam"},
      {"layercam", "--layer", "features.9", "--layer", "features.12"},
      {"hirescam"},
      {"scorecam", "--layer", "features.3", "--sample-batch", "64"},
      {"eigencam", "--all-layers"}};
  for (std::vector<std::string> args : runs) {
    const std::string method = args[0];
    const std::string out = out_ + "-" + method;
    args.insert(args.end(), {"-q", "-m", model_, "-o", out, image_});
    test::RunResult r = cnnviz(args);
    ASSERT_EQ(r.exit_code, 0) << method << ": " << r.err;
    nlohmann::json doc = read_json(out + "/manifest.json");
    EXPECT_EQ(doc["method"], method);
    ASSERT_EQ(doc["images"].size(), 1u);
    size_t npy = 0;
    for (const auto& f : doc["images"][0]["files"]) {
      EXPECT_TRUE(fs::exists(out + "/" + f["path"].get<std::string>())) << f["path"];
      npy += f["format"] == "npy";
    }
    EXPECT_GT(npy, 0u) << method;
    if (method == "smoothgrad") {
      EXPECT_EQ(doc["options"]["samples"], 3);
      EXPECT_EQ(doc["options"]["of"], "guided-backprop");
    }
    if (method == "integrated-gradients") {
      EXPECT_EQ(doc["options"]["baseline"], "blurred");
    }
    if (method == "layercam") {
      EXPECT_EQ(npy, 3u) << "two layers and the fused map";
      EXPECT_TRUE(fs::exists(out + "/photo/layercam_fused_c" +
                             std::to_string(doc["images"][0]["targets"][0]["class"].get<int>()) +
                             ".npy"));
    }
    if (method == "eigencam") {
      EXPECT_EQ(doc["layers"].size(), 13u);
    }
  }
  // Options belong to the methods that read them.
  test::RunResult r = cnnviz({"gradcam", "--samples", "3", "-m", model_, image_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace
}  // namespace cnnviz
