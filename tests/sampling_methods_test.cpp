// The methods with passes of their own: SmoothGrad, Integrated Gradients and
// Score-CAM (and Guided Grad-CAM on every architecture) against
// tests/reference/methods_ref.py, plus their batch independence.
//
// Tolerances: maps as in methods_test.cpp (1e-4 of the map's max |value|).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "cnnviz/core/runtime.h"
#include "cnnviz/core/tensor_ops.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/methods.h"
#include "map_util.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

using test::expect_close;  // within test::kMapRelTol of the map's scale
using test::load;

// Integrated Gradients from the blurred baseline: the two implementations'
// blurs differ in the last bit (their convolutions sum in other orders), and
// gradients of random networks at the interpolated images are that
// sensitive: a 1-ulp change of the input moves a random mobilenet_v2's
// gradient by 2% (relative L2), as both sides measure with themselves. With
// the black baseline the inputs are bit-identical and so are the results.
// Measured on squeezenet1_1: relative L2 error 1e-3. Checked: relative L2
// error <= 1e-2 and max diff <= 2e-2 of the scale.
void expect_path_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double scale = want.abs().max().item<double>();
  EXPECT_LE((got - want).abs().max().item<double>(), 2e-2 * scale) << what;
  EXPECT_LE((got - want).norm().item<double>(), 1e-2 * want.norm().item<double>()) << what;
}

std::string smooth_image(const test::TempDir& dir) { return test::smooth_image(dir, 11); }

TEST(ModelSamplingMethodsTest, SmoothGradAndIntegratedGradientsMatchTheReference) {
  const std::string model_path = test::squeezenet_path();
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = smooth_image(dir);
  Model model = Model::load(model_path);
  at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(5);
  // smooth_gradient scales unit noise by the image's value range; the
  // reference adds what it is given.
  const at::Tensor noise = at::randn({6, 3, 224, 224}, generator) * 0.15;
  test::save_npy_tensor(dir.file("noise.npy"), noise * (x.max() - x.min()));
  test::RunResult r = test::run_reference(
      "methods_ref.py",
      {model_path, image, dir.path(), "--noise", dir.file("noise.npy"), "--ig", "--ig-steps", "12",
       "--blur-sigma", "6", "--threads", std::to_string(threads)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  const int64_t cls = meta["class"].get<int64_t>();

  Engine engine(model, {});
  Pass pass = engine.run(x);
  MethodParams params;
  params.sample_batch = 4;  // 6 samples, 12 steps: partial last chunks
  Capture capture(engine, pass, {cls}, params);
  expect_close(method_util::smooth_gradient(capture, noise, Backprop::kPlain)[0],
               load(dir.file("smoothgrad.npy")), "smoothgrad");
  expect_close(method_util::smooth_gradient(capture, noise, Backprop::kGuided)[0],
               load(dir.file("smoothgrad_guided.npy")), "smoothgrad guided");

  const at::Tensor black = method_util::black_baseline(x, params.mean, params.std);
  at::Tensor ig_black = method_util::integrated_gradients(capture, black, 12);
  expect_close(ig_black[0], load(dir.file("ig_black.npy")), "integrated gradients, black");
  const at::Tensor blurred = gaussian_blur(x, 6);
  expect_close(blurred[0], load(dir.file("ig_baseline_blurred.npy")), "blurred baseline");
  expect_path_close(method_util::integrated_gradients(capture, blurred, 12)[0],
                    load(dir.file("ig_blurred.npy")), "integrated gradients, blurred");
  // The main pass is still usable after the nested ones.
  expect_close(capture.input_gradient(Backprop::kPlain)[0], load(dir.file("saliency.npy")),
               "saliency after nested passes");
  // Completeness, as the reference measured it: sum IG vs y(x) - y(x').
  const double sum = ig_black.sum().item<double>();
  EXPECT_NEAR(sum, meta["ig"]["black"]["sum"].get<double>(),
              1e-3 * std::abs(meta["ig"]["black"]["delta"].get<double>()) + 1e-6);
}

TEST(ModelSamplingMethodsTest, RegisteredSamplingMethodsAreReproducibleAndBatchIndependent) {
  Model model = Model::load(test::squeezenet_path());
  set_threads(0);
  at::Tensor x = at::randn({2, 3, 224, 224}, at::make_generator<at::CPUGeneratorImpl>(3));
  Engine engine(model, {});
  MethodParams a, b;
  a.samples = b.samples = 5;
  a.steps = b.steps = 5;
  a.sample_batch = 2;
  b.sample_batch = 16;
  std::map<std::string, at::Tensor> batched;
  {
    Pass pass = engine.run(x);
    Capture ca(engine, pass, {1, 2}, a), cb(engine, pass, {1, 2}, b);
    for (const char* name : {"smoothgrad", "integrated-gradients"}) {
      at::Tensor ma = find_method(name).compute(ca)[0].value;
      at::Tensor mb = find_method(name).compute(cb)[0].value;
      expect_close(ma, mb, std::string(name) + ": sample batch 2 vs 16");
      EXPECT_GT(ma.abs().max().item<double>(), 0) << name;
      batched[name] = ma;
    }
  }
  // The second image alone gets the map it got in the batch (same noise).
  Pass pass = engine.run(x.slice(0, 1, 2));
  Capture alone(engine, pass, {2}, a);
  for (const char* name : {"smoothgrad", "integrated-gradients"}) {
    expect_close(find_method(name).compute(alone)[0].value[0], batched[name][1],
                 std::string(name) + ": alone vs in a batch");
  }
}

// Guided Grad-CAM, SmoothGrad, Integrated Gradients and Score-CAM on every
// exported architecture (methods_test.cpp covers the single-pass methods
// there), at a cheap setting: 2 noise samples, 2 steps, Score-CAM at the
// first feature stage.
struct ArchCase {
  std::string arch;
  std::string layer;  // the first feature stage
  // Score-CAM there too: a masked forward per channel. Its logic does not
  // depend on the architecture; the networks slowest to run 32 or 64 times
  // on each side (vgg16, densenet121, resnet50, googlenet, efficientnet_b0:
  // together four minutes of CI's thirty) leave it to the others.
  bool score_cam = true;
};

void PrintTo(const ArchCase& c, std::ostream* os) { *os << c.arch; }

class ModelEveryArchTest : public ::testing::TestWithParam<ArchCase> {};

TEST_P(ModelEveryArchTest, PassMethodsMatchTheReference) {
  const ArchCase& c = GetParam();
  const std::string model_path = test::test_models_dir() + "/" + c.arch + ".pt";
  ASSERT_TRUE(fs::exists(model_path)) << model_path << ": run through ctest";
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = smooth_image(dir);
  Model model = Model::load(model_path);
  at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
  const int64_t size = x.size(2);
  const at::Tensor noise =
      at::randn({2, 3, size, size}, at::make_generator<at::CPUGeneratorImpl>(9)) * 0.1;
  test::save_npy_tensor(dir.file("noise.npy"), noise * (x.max() - x.min()));
  std::vector<std::string> args = {model_path,
                                   image,
                                   dir.path(),
                                   "--layers",
                                   c.layer,
                                   "--noise",
                                   dir.file("noise.npy"),
                                   "--ig",
                                   "--ig-steps",
                                   "2",
                                   "--threads",
                                   std::to_string(threads)};
  if (c.score_cam) args.push_back("--score-cam");
  test::RunResult r = test::run_reference("methods_ref.py", args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  const int64_t cls = meta["class"].get<int64_t>();

  Engine engine(model, {c.layer});
  Pass pass = engine.run(x);
  MethodParams params;
  params.sample_batch = 32;
  Capture capture(engine, pass, {cls}, params);
  // Guided Grad-CAM from the reference's own guided gradient and Grad-CAM.
  const at::Tensor ref_cam = load(dir.file("gradcam_" + c.layer + ".npy"));
  const at::Tensor lo = ref_cam.min(), hi = ref_cam.max();
  const at::Tensor unit =
      hi.item<double>() > lo.item<double>() ? (ref_cam - lo) / (hi - lo) : at::zeros_like(ref_cam);
  const at::Tensor up = at::upsample_bilinear2d(unit.view({1, 1, unit.size(0), unit.size(1)}),
                                                {size, size}, false)[0];
  expect_close(find_method("guided-gradcam").compute(capture)[0].value[0],
               load(dir.file("guided.npy")) * up, "guided gradcam");
  expect_close(method_util::smooth_gradient(capture, noise, Backprop::kPlain)[0],
               load(dir.file("smoothgrad.npy")), "smoothgrad");
  expect_close(method_util::smooth_gradient(capture, noise, Backprop::kGuided)[0],
               load(dir.file("smoothgrad_guided.npy")), "smoothgrad guided");
  expect_close(method_util::integrated_gradients(
                   capture, method_util::black_baseline(x, params.mean, params.std), 2)[0],
               load(dir.file("ig_black.npy")), "integrated gradients, black");
  if (!c.score_cam) return;
  std::vector<MethodMap> score = find_method("scorecam").compute(capture);
  expect_close(score.at(0).value[0], load(dir.file("scorecam_" + c.layer + ".npy")), "score-cam");
}

INSTANTIATE_TEST_SUITE_P(
    Model, ModelEveryArchTest,
    ::testing::Values(ArchCase{"squeezenet1_1", "features.0"}, ArchCase{"alexnet", "features.0"},
                      ArchCase{"densenet121", "features.conv0", false},
                      ArchCase{"vgg16", "features.0", false}, ArchCase{"resnet50", "conv1", false},
                      ArchCase{"googlenet", "conv1", false}, ArchCase{"mobilenet_v2", "features.0"},
                      ArchCase{"efficientnet_b0", "features.0", false},
                      // A token layer and a channels-last stage.
                      ArchCase{"tiny_vit", "encoder.layers.encoder_layer_0"},
                      ArchCase{"tiny_swin", "features.0"}),
    [](const ::testing::TestParamInfo<ArchCase>& info) { return info.param.arch; });
// The full-size backbones (`scripts/test.sh --backbones`). Not vit_b_16:
// Score-CAM at its first block is 768 masked forwards of ViT-B on each side
// (hours on 2 cores); tiny_vit covers the token path in every run and
// MethodsTest the full-size ViT.
INSTANTIATE_TEST_SUITE_P(
    Backbone, ModelEveryArchTest,
    ::testing::Values(ArchCase{"swin_t", "features.0"}, ArchCase{"convnext_tiny", "features.0"},
                      ArchCase{"regnet_y_400mf", "trunk_output.block1"},
                      ArchCase{"inception_v3", "Conv2d_1a_3x3"}, ArchCase{"maxvit_t", "stem"}),
    [](const ::testing::TestParamInfo<ArchCase>& info) { return info.param.arch; });

TEST(ModelSamplingMethodsTest, ScoreCamMatchesTheReference) {
  const std::string model_path = test::squeezenet_path();
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = smooth_image(dir);
  test::RunResult r = test::run_reference(
      "methods_ref.py", {model_path, image, dir.path(), "--layers", "features.4", "--score-cam",
                         "--threads", std::to_string(threads)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  Model model = Model::load(model_path);
  at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
  // features.4: 128 channels, a forward pass each (features.9's 384 took a
  // minute of CI's 30 on 2 cores for the same proof).
  Engine engine(model, {"features.4"});
  Pass pass = engine.run(x);
  MethodParams params;
  params.sample_batch = 48;
  Capture capture(engine, pass, {meta["class"].get<int64_t>()}, params);
  std::vector<MethodMap> maps = find_method("scorecam").compute(capture);
  ASSERT_EQ(maps.size(), 1u);
  expect_close(maps[0].value[0], load(dir.file("scorecam_features.4.npy")), "score-cam");
}

}  // namespace
}  // namespace cnnviz
