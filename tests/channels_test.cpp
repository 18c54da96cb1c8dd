// Models whose input is not 3-channel RGB: a 1-channel model built here in
// TorchScript (two convolutions over a grey 28x28 input, ten classes), its
// preprocessing (ITU-R 601 luma as PIL computes it), exact gradients through
// the engine, and every map kind through the binary, with the manifest
// saying how each image met the model's channels.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cnnviz/io/image.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/layers.h"
#include "cnnviz/methods/methods.h"
#include "map_util.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace cnnviz {
namespace {

TEST(ChannelsUnitTest, LumaIsPilsConvertL) {
  cv::Mat rgb(1, 5, CV_8UC3);
  rgb.at<cv::Vec3b>(0, 0) = {255, 0, 0};
  rgb.at<cv::Vec3b>(0, 1) = {0, 255, 0};
  rgb.at<cv::Vec3b>(0, 2) = {0, 0, 255};
  rgb.at<cv::Vec3b>(0, 3) = {255, 255, 255};
  rgb.at<cv::Vec3b>(0, 4) = {17, 17, 17};
  const cv::Mat l = luma_601(rgb);
  // PIL: Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0)).
  EXPECT_EQ(l.at<uint8_t>(0, 0), 76);
  EXPECT_EQ(l.at<uint8_t>(0, 1), 150);
  EXPECT_EQ(l.at<uint8_t>(0, 2), 29);
  EXPECT_EQ(l.at<uint8_t>(0, 3), 255);
  EXPECT_EQ(l.at<uint8_t>(0, 4), 17);  // a grey pixel keeps its value
  EXPECT_FALSE(is_grey(rgb));
  EXPECT_TRUE(is_grey(cv::Mat(3, 4, CV_8UC3, cv::Scalar(9, 9, 9))));

  Preprocessing p;
  p.channels = 1;
  p.resize = p.crop = 8;
  p.mean[0] = 0.5f;
  p.std[0] = 0.25f;
  const at::Tensor x = preprocess(cv::Mat(8, 8, CV_8UC3, cv::Scalar(0, 255, 0)), p);
  ASSERT_EQ(x.sizes(), (at::IntArrayRef{1, 8, 8}));
  EXPECT_FLOAT_EQ(x[0][3][3].item<float>(), (150.0f / 255.0f - 0.5f) / 0.25f);
}

// A grey classifier: conv 1->4 3x3, ReLU, conv 4->6 3x3 stride 2, ReLU,
// global mean, linear 6->10; `features` holds the convolutions and ReLUs.
std::string grey_model(const test::TempDir& dir, const json& preprocess, const std::string& name) {
  at::manual_seed(3);
  auto conv = [](const std::string& cls, int64_t in, int64_t out, int64_t stride) {
    torch::jit::Module m(cls);
    m.register_parameter("w", at::randn({out, in, 3, 3}) * 0.5, false);
    m.register_parameter("b", at::randn({out}) * 0.1, false);
    m.define("def forward(self, x):\n  return torch.conv2d(x, self.w, self.b, [" +
             std::to_string(stride) + ", " + std::to_string(stride) + "], [1, 1])\n");
    return m;
  };
  auto relu = [](const std::string& cls) {
    torch::jit::Module m(cls);
    m.define("def forward(self, x):\n  return torch.relu(x)\n");
    return m;
  };
  torch::jit::Module features("Features");
  features.register_module("conv0", conv("Conv0", 1, 4, 1));
  features.register_module("relu0", relu("Relu0"));
  features.register_module("conv1", conv("Conv1", 4, 6, 2));
  features.register_module("relu1", relu("Relu1"));
  features.define(
      "def forward(self, x):\n"
      "  return "
      "self.relu1.forward(self.conv1.forward(self.relu0.forward(self.conv0.forward(x))))\n");
  torch::jit::Module net("Grey");
  net.register_module("features", features);
  net.register_parameter("fc", at::randn({10, 6}), false);
  net.define(
      "def forward(self, x):\n"
      "  return torch.mm(self.features.forward(x).mean(dim=[2, 3]), self.fc.t())\n");
  const json meta = {
      {"cnnviz_format", 1}, {"name", name},
      {"arch", ""},         {"weights", {{"kind", "file"}, {"source", "channels_test.cpp"}}},
      {"num_classes", 10},  {"preprocess", preprocess}};
  const std::string path = dir.file(name + ".pt");
  net.save(path, {{"cnnviz.json", meta.dump()}});
  return path;
}

const json kGreyPreprocess = {
    {"channels", 1}, {"resize", 32}, {"crop", 28}, {"mean", {0.5}}, {"std", {0.25}}};

TEST(ModelChannelsTest, GradientsOfAGreyModelAreExact) {
  test::TempDir dir;
  Model model = Model::load(grey_model(dir, kGreyPreprocess, "grey"));
  EXPECT_EQ(model.info().preprocess.channels, 1);
  EXPECT_EQ(feature_layers(model), (std::vector<std::string>{"features.conv0", "features.relu0",
                                                             "features.conv1", "features.relu1"}));
  cv::Mat rgb(40, 50, CV_8UC3);
  cv::RNG(4).fill(rgb, cv::RNG::UNIFORM, 0, 256);
  const at::Tensor x = preprocess(rgb, model.info().preprocess).unsqueeze(0);
  ASSERT_EQ(x.sizes(), (at::IntArrayRef{1, 1, 28, 28}));

  // Plain autograd on the model's own module: the saliency to match.
  const at::Tensor xg = x.clone().requires_grad_(true);
  const at::Tensor logits = model.module().forward({xg}).toTensor();
  const int64_t cls = logits[0].argmax().item<int64_t>();
  logits[0][cls].backward();

  Engine engine(model, {"features.conv1"});
  Pass pass = engine.run(x);
  MethodParams params;
  params.mean = model.info().preprocess.mean;
  params.std = model.info().preprocess.std;
  Capture capture(engine, pass, {cls}, params);
  test::expect_close(capture.input_gradient(Backprop::kPlain), xg.grad(), "saliency");
  const at::Tensor guided = capture.input_gradient(Backprop::kGuided);
  EXPECT_EQ(guided.sizes(), x.sizes());
  EXPECT_FALSE(at::allclose(guided, xg.grad()));  // two ReLUs are guided
  // Integrated Gradients' black baseline has the input's one channel.
  const at::Tensor black = method_util::black_baseline(x, params.mean, params.std);
  ASSERT_EQ(black.sizes(), x.sizes());
  EXPECT_FLOAT_EQ(black[0][0][5][5].item<float>(), (0.0f - 0.5f) / 0.25f);
  const std::vector<MethodMap> ig = find_method("integrated-gradients").compute(capture);
  EXPECT_EQ(ig.at(0).value.sizes(), x.sizes());
}

class CliChannelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = grey_model(dir_, kGreyPreprocess, "grey");
    colour_ = dir_.file("colour.png");
    grey_ = dir_.file("grey.png");
    cv::Mat c(40, 50, CV_8UC3);
    cv::RNG(6).fill(c, cv::RNG::UNIFORM, 0, 256);
    cv::imwrite(colour_, c);
    cv::Mat g(40, 50, CV_8UC1);
    cv::RNG(7).fill(g, cv::RNG::UNIFORM, 0, 256);
    cv::imwrite(grey_, g);
  }
  test::TempDir dir_;
  std::string model_, colour_, grey_;
};

TEST_F(CliChannelsTest, EveryMapKindOfAGreyModel) {
  test::RunResult r = test::run_cnnviz({"classify", "--json", "-m", model_, colour_, grey_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json c = json::parse(r.out);
  EXPECT_EQ(c["model"]["channels"], 1);
  EXPECT_EQ(c["results"][0]["input"]["conversion"], "rgb to grey (ITU-R 601 luma)");
  EXPECT_EQ(c["results"][1]["input"]["grey"], true);
  EXPECT_TRUE(c["results"][1]["input"]["conversion"].is_null());

  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"guided-backprop"},
                                             {"gradcam", "--all-layers"},
                                             {"guided-gradcam"},
                                             {"smoothgrad", "--samples", "4"},
                                             {"integrated-gradients", "--steps", "8"}}) {
    SCOPED_TRACE(args[0]);
    const std::string out = dir_.file("out-" + args[0]);
    std::vector<std::string> argv = args;
    argv.insert(argv.end(), {"-m", model_, "-o", out, colour_});
    r = test::run_cnnviz(argv);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json doc = json::parse(test::read_text(out + "/manifest.json"));
    EXPECT_EQ(doc["images"][0]["input"]["conversion"], "rgb to grey (ITU-R 601 luma)");
    for (const json& f : doc["images"][0]["files"]) {
      const std::string path = out + "/" + f["path"].get<std::string>();
      if (f["format"] == "png") {
        EXPECT_FALSE(cv::imread(path, cv::IMREAD_UNCHANGED).empty()) << path;
      } else {
        const NpyArray a = read_npy(path);
        if (a.shape.size() == 3) {
          EXPECT_EQ(a.shape[0], 1) << path;  // input space: one channel
        }
      }
    }
  }
}

TEST_F(CliChannelsTest, ChannelsFromTheCommandLine) {
  // A 3-channel model given a grey image: copied to RGB, and said so.
  const std::string out = dir_.file("rgb");
  test::RunResult r = test::run_cnnviz(
      {"gradcam", "-m", test::squeezenet_path(), "-o", out, "--write", "npy", grey_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json doc = json::parse(test::read_text(out + "/manifest.json"));
  EXPECT_EQ(doc["images"][0]["input"]["conversion"], "grey to rgb (copied)");

  // The grey model without metadata: --channels, --size, one --mean and --std.
  torch::jit::Module bare = torch::jit::load(model_);
  const std::string bare_path = dir_.file("bare.pt");
  bare.save(bare_path);
  r = test::run_cnnviz({"classify", "--json", "-m", bare_path, "--channels", "1", "--size", "28",
                        "--mean", "0.5", "--std", "0.25", colour_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["model"]["channels"], 1);
  // Without --channels 1 the network gets three channels and says why it fails.
  r = test::run_cnnviz({"classify", "-m", bare_path, "--size", "28", colour_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("forward pass failed"), std::string::npos) << r.err;

  r = test::run_cnnviz({"classify", "-m", model_, "--mean", "0.5,0.5,0.5", colour_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--mean: 3 values for a model with 1 input channel (--channels)"),
            std::string::npos)
      << r.err;
  r = test::run_cnnviz({"classify", "-m", model_, "--channels", "2", colour_});
  EXPECT_EQ(r.exit_code, 2) << r.err;

  // Metadata that asks for 2 channels, or 3 means for 1 channel, is refused.
  for (const json& bad :
       {json{{"channels", 2}}, json{{"channels", 1}, {"mean", {0.1, 0.2, 0.3}}}}) {
    const std::string path = grey_model(dir_, bad, "bad");
    r = test::run_cnnviz({"classify", "-m", path, colour_});
    EXPECT_EQ(r.exit_code, 4) << bad.dump() << ": " << r.err;
    EXPECT_NE(r.err.find("preprocess."), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace cnnviz
