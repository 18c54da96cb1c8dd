// End-to-end tests of the methods beyond the seed, `cnnviz evaluate`, and
// models without cnnviz metadata (plain scripted, traced and frozen).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cnnviz/runtime.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

class CliMoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::squeezenet_path();
    cv::Mat img(180, 240, CV_8UC3);
    cv::randu(img, 0, 255);
    image_ = dir_.file("photo.png");
    ASSERT_TRUE(cv::imwrite(image_, img));
    out_ = dir_.file("out");
  }

  test::RunResult cnnviz(std::vector<std::string> args) { return test::run_cnnviz(args); }

  nlohmann::json read_json(const std::string& path) {
    return nlohmann::json::parse(test::read_text(path));
  }

  test::TempDir dir_;
  std::string model_, image_, out_;
};

TEST_F(CliMoreTest, EveryNewMethodWritesItsMaps) {
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

TEST_F(CliMoreTest, EvaluateWritesCurvesAndKeepsGoingPastBadImages) {
  const std::string bad = dir_.file("bad.png");
  test::write_text(bad, "not an image");
  test::RunResult r = cnnviz({"evaluate", "-q", "-m", model_, "--method", "gradcam,saliency",
                              "--steps", "8", "-o", out_, "--json", image_, bad});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc, read_json(out_ + "/evaluate.json"));
  ASSERT_EQ(doc["images"].size(), 2u);
  EXPECT_TRUE(doc["images"][1].contains("error"));
  EXPECT_NE(doc["images"][1]["error"].get<std::string>().find("bad.png"), std::string::npos);
  const auto& m = doc["images"][0]["methods"];
  for (const char* method : {"gradcam", "saliency"}) {
    ASSERT_TRUE(m.contains(method)) << method;
    EXPECT_EQ(m[method]["deletion"].size(), 9u);
    EXPECT_EQ(m[method]["insertion"].size(), 9u);
    EXPECT_GE(m[method]["deletion_auc"].get<double>(), 0.0);
    EXPECT_LE(m[method]["insertion_auc"].get<double>(), 1.0);
    EXPECT_FALSE(cv::imread(out_ + "/" + m[method]["plot"].get<std::string>()).empty());
    // Cascading randomization of squeezenet's 26 weight layers: 1, 2, ..., 16, 26.
    EXPECT_EQ(m[method]["randomization"].size(), 6u);
  }
  EXPECT_EQ(doc["randomization_levels"].back()["top"], 26);
  EXPECT_EQ(doc["summary"]["gradcam"]["images"], 1);
  // The table form.
  r = cnnviz({"evaluate", "-q", "-m", model_, "--method", "cam", "--steps", "4",
              "--no-randomization", "--no-plots", "-o", out_ + "2", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("del AUC"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cam"), std::string::npos) << r.out;
  r = cnnviz({"evaluate", "-m", model_, image_});
  EXPECT_EQ(r.exit_code, 2) << "--method is required";
}

// Models a user scripted or traced without scripts/export_models.py.
TEST_F(CliMoreTest, ModelsWithoutMetadata) {
  const std::string plain = dir_.file("plain.pt"), traced = dir_.file("traced.pt"),
                    frozen = dir_.file("frozen.pt");
  test::RunResult r = test::run({test::python(), "-c",
                                 "import sys, torch, torchvision\n"
                                 "torch.manual_seed(0)\n"
                                 "m = torchvision.models.squeezenet1_1(weights=None).eval()\n"
                                 "torch.jit.save(torch.jit.script(m), sys.argv[1])\n"
                                 "x = torch.randn(1, 3, 160, 160)\n"
                                 "t = torch.jit.trace(m, x)\n"
                                 "torch.jit.save(t, sys.argv[2])\n"
                                 "torch.jit.save(torch.jit.freeze(t), sys.argv[3])\n",
                                 plain, traced, frozen});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string labels;
  for (int i = 0; i < 1000; ++i) labels += "thing " + std::to_string(i) + "\n";
  test::write_text(dir_.file("labels.txt"), labels);

  for (const std::string& model : {plain, traced}) {
    r = cnnviz({"gradcam", "-q", "--all-layers", "-m", model, "--labels", dir_.file("labels.txt"),
                "--size", "160", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "-o", out_,
                image_});
    ASSERT_EQ(r.exit_code, 0) << model << ": " << r.err;
    nlohmann::json doc = read_json(out_ + "/manifest.json");
    EXPECT_EQ(doc["layers"].size(), 13u) << "features.0..12, discovered";
    EXPECT_EQ(doc["layers"].back(), "features.12");
    const auto& target = doc["images"][0]["targets"][0];
    EXPECT_EQ(target["label"], "thing " + std::to_string(target["class"].get<int>()));
    EXPECT_EQ(r.err.find("no cnnviz.json"), std::string::npos) << "options given: no warning";
  }
  r = cnnviz({"layers", "-m", plain});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("no cnnviz.json metadata"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("features.12"), std::string::npos);

  // Labels that do not fit the model.
  test::write_text(dir_.file("ten.txt"), "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n");
  r = cnnviz({"classify", "-m", plain, "--labels", dir_.file("ten.txt"), image_});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("outputs 1000 classes but has 10 labels"), std::string::npos) << r.err;
  r = cnnviz({"classify", "-m", plain, "--labels", dir_.file("missing.txt"), image_});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("missing.txt"), std::string::npos) << r.err;

  // A frozen model has no submodules: layer methods say so, the others work.
  r = cnnviz({"gradcam", "-q", "-m", frozen, "--size", "160", "-o", out_, image_});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("no submodules"), std::string::npos) << r.err;
  EXPECT_EQ(test::lines(r.err).size(), 1u) << "one error line";
  r = cnnviz({"layers", "-m", frozen, "--size", "160"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("no submodules"), std::string::npos) << r.out;
  for (const char* method : {"guided-backprop", "saliency", "cam"}) {
    r = cnnviz({method, "-q", "-m", frozen, "--size", "160", "-o", out_, image_});
    EXPECT_EQ(r.exit_code, 0) << method << ": " << r.err;
  }
}

TEST_F(CliMoreTest, DeviceOption) {
  const bool cuda = resolve_device("auto").is_cuda();
  test::RunResult r =
      cnnviz({"gradcam", "-q", "--device", "cpu", "-m", model_, "-o", out_, image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_json(out_ + "/manifest.json")["device"], "cpu");
  r = cnnviz({"classify", "--device", "auto", "-m", model_, image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = cnnviz({"classify", "--device", "tpu", "-m", model_, image_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--device 'tpu': expected cpu, cuda, cuda:N or auto"), std::string::npos);
  r = cnnviz({"classify", "--device", "cuda", "-m", model_, image_});
  if (cuda) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
  } else {
    EXPECT_EQ(r.exit_code, 5) << r.err;
    EXPECT_NE(r.err.find("--device cuda: CUDA is not available"), std::string::npos) << r.err;
    EXPECT_EQ(test::lines(r.err).size(), 1u) << r.err;
  }
}

// Out of device memory (simulated: CNNVIZ_TEST_OOM_ABOVE=N fails every pass
// over more than N images): smaller batches, nothing lost.
TEST_F(CliMoreTest, OutOfMemoryRetriesWithSmallerBatches) {
  cv::Mat img(100, 120, CV_8UC3, cv::Scalar(20, 200, 90));
  for (const char* name : {"b.png", "c.png"}) ASSERT_TRUE(cv::imwrite(dir_.file(name), img));
  std::vector<std::string> args = {
      test::cnnviz_bin(), "gradcam",         "--batch-size", "3", "-m", model_, "-o", out_, image_,
      dir_.file("b.png"), dir_.file("c.png")};
  test::RunResult r = test::run(args, {{"CNNVIZ_TEST_OOM_ABOVE", "1"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("out of memory on a batch of 3 images: retrying in batches of 2"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("retrying in batches of 1"), std::string::npos) << r.err;
  nlohmann::json doc = read_json(out_ + "/manifest.json");
  EXPECT_EQ(doc["summary"]["written"], 3);
  EXPECT_EQ(doc["summary"]["failed"], 0);
  // Nothing fits: every image fails with the reason, the run finishes.
  r = test::run({test::cnnviz_bin(), "classify", "-m", model_, image_, dir_.file("b.png")},
                {{"CNNVIZ_TEST_OOM_ABOVE", "0"}});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("image '" + image_ + "': out of memory"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cnnviz
