// The methods with passes of their own (SmoothGrad, Integrated Gradients,
// Score-CAM) and the faithfulness metrics, against tests/reference/
// (methods_ref.py, evaluate_ref.py), plus constructed cases where the right
// answer is known.
//
// Tolerances: maps as in methods_test.cpp (1e-4 of the map's max |value|);
// probabilities of the curves 1e-5 absolute (both sides batch their forward
// passes differently, which moves float32 softmax outputs by ~1e-7).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cnnviz/faithfulness.h"
#include "cnnviz/image.h"
#include "cnnviz/methods.h"
#include "cnnviz/npy.h"
#include "cnnviz/preprocess.h"
#include "cnnviz/runtime.h"
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

test::RunResult reference(const std::string& script, std::vector<std::string> args) {
  std::vector<std::string> argv = {test::python(),
                                   test::source_dir() + "/tests/reference/" + script};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run(argv);
}

TEST(ModelMoreMethodsTest, SmoothGradAndIntegratedGradientsMatchTheReference) {
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
  test::RunResult r =
      reference("methods_ref.py",
                {model_path, image, dir.path(), "--noise", dir.file("noise.npy"), "--ig",
                 "--ig-steps", "12", "--blur-sigma", "6", "--threads", std::to_string(threads)});
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
  const at::Tensor blurred = method_util::gaussian_blur(x, 6);
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

TEST(ModelMoreMethodsTest, RegisteredSamplingMethodsAreReproducibleAndBatchIndependent) {
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
  test::RunResult r = reference("methods_ref.py", args);
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

TEST(ModelMoreMethodsTest, ScoreCamMatchesTheReference) {
  const std::string model_path = test::squeezenet_path();
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = smooth_image(dir);
  test::RunResult r =
      reference("methods_ref.py", {model_path, image, dir.path(), "--layers", "features.4",
                                   "--score-cam", "--threads", std::to_string(threads)});
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

TEST(ModelEvaluateTest, CurvesAndConfidenceMatchTheReference) {
  const std::string model_path = test::squeezenet_path();
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = smooth_image(dir);
  Model model = Model::load(model_path);
  at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
  const int64_t cls = model.logits(x).argmax(1).item<int64_t>();
  at::Tensor map, saliency;
  {
    Engine engine(model, {"features.12"});
    Pass pass = engine.run(x);
    Capture capture(engine, pass, {cls});
    map = importance_map(find_method("gradcam").compute(capture)[0].value[0], 224, 224);
    saliency = importance_map(capture.input_gradient(Backprop::kPlain)[0], 224, 224);
  }
  test::save_npy_tensor(dir.file("map.npy"), map);
  test::save_npy_tensor(dir.file("saliency.npy"), saliency);
  test::RunResult r =
      reference("evaluate_ref.py",
                {model_path, image, dir.file("map.npy"), dir.path(), "--class", std::to_string(cls),
                 "--steps", "16", "--blur-sigma", "6", "--threads", std::to_string(threads)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json want = nlohmann::json::parse(test::read_text(dir.file("evaluate.json")));

  FaithfulnessOptions options;
  options.steps = 16;
  options.blur_sigma = 6;
  options.batch = 5;
  Faithfulness f = measure_faithfulness([&](const at::Tensor& b) { return model.logits(b); }, x,
                                        map, cls, options);
  ASSERT_EQ(f.deletion.size(), 17u);
  ASSERT_EQ(f.insertion.size(), 17u);
  for (size_t k = 0; k < 17; ++k) {
    EXPECT_NEAR(f.deletion[k], want["deletion"][k].get<double>(), 1e-5) << "deletion " << k;
    EXPECT_NEAR(f.insertion[k], want["insertion"][k].get<double>(), 1e-5) << "insertion " << k;
  }
  EXPECT_NEAR(f.deletion_auc, want["deletion_auc"].get<double>(), 1e-5);
  EXPECT_NEAR(f.insertion_auc, want["insertion_auc"].get<double>(), 1e-5);
  EXPECT_NEAR(f.confidence, want["confidence"].get<double>(), 1e-5);
  EXPECT_NEAR(f.masked_confidence, want["masked_confidence"].get<double>(), 1e-5);
  EXPECT_NEAR(f.drop, want["drop"].get<double>(), 1e-4);
  EXPECT_EQ(f.increase, want["increase"].get<bool>());

  r = reference("evaluate_ref.py", {"--spearman", dir.file("map.npy"), dir.file("saliency.npy")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NEAR(spearman(map, saliency), nlohmann::json::parse(r.out)["spearman"].get<double>(),
              1e-9);
}

TEST(ModelEvaluateTest, RandomizedCopyChangesOnlyTheTopLayers) {
  Model model = Model::load(test::squeezenet_path());
  const std::vector<std::string> layers = parametrized_layers(model);
  ASSERT_EQ(layers.size(), 26u);  // 25 convolutions in features, 1 in the classifier
  EXPECT_EQ(layers.back(), "classifier.1");
  std::vector<std::string> randomized;
  Model copy = randomized_copy(model, 2, 0, &randomized);
  EXPECT_EQ(randomized, (std::vector<std::string>{layers[24], layers[25]}));
  at::Tensor x = at::randn({1, 3, 224, 224}, at::make_generator<at::CPUGeneratorImpl>(1));
  EXPECT_FALSE(at::allclose(model.logits(x), copy.logits(x)));
  // The original is untouched: a fresh load gives the same logits.
  EXPECT_TRUE(at::equal(model.logits(x), Model::load(test::squeezenet_path()).logits(x)));
}

// A toy classifier: class 0's logit is 40 * (the mean of channel 0 over a
// square R) - 30, class 1's is 0 (a blurred R is not enough evidence). Deleting R destroys the
// evidence; a map that marks R must beat its inverse on both curves.
TEST(FaithfulnessTest, TheTrueRegionScoresBetterThanItsInverse) {
  const int64_t h = 32, w = 32;
  at::Tensor region = at::zeros({h, w});
  region.slice(0, 8, 16).slice(1, 8, 16).fill_(1);
  at::Tensor x = at::zeros({1, 3, h, w});
  x.select(1, 0).copy_(region.unsqueeze(0));
  const LogitsFn logits = [&](const at::Tensor& b) {
    at::Tensor evidence = (b.select(1, 0) * region).sum({1, 2}) / region.sum();
    return at::stack({40 * evidence - 30, at::zeros_like(evidence)}, 1);
  };
  FaithfulnessOptions options;
  options.steps = 16;
  options.blur_sigma = 2;
  Faithfulness good = measure_faithfulness(logits, x, region, 0, options);
  Faithfulness bad = measure_faithfulness(logits, x, 1 - region, 0, options);

  EXPECT_LT(good.deletion_auc + 0.3, bad.deletion_auc);
  EXPECT_GT(good.insertion_auc, bad.insertion_auc + 0.3);
  EXPECT_NEAR(good.deletion.front(), good.confidence, 1e-6);
  EXPECT_NEAR(good.insertion.back(), good.confidence, 1e-6);
  EXPECT_LT(good.deletion.back(), 1e-3);
  // Masking with the true region keeps the evidence; with its inverse, none.
  EXPECT_NEAR(good.drop, 0, 1e-6);
  EXPECT_GT(bad.drop, 0.99);
}

TEST(FaithfulnessTest, SpearmanRanksWithTies) {
  at::Tensor a = at::tensor({1.f, 2.f, 2.f, 3.f});
  at::Tensor b = at::tensor({1.f, 2.f, 3.f, 4.f});
  EXPECT_NEAR(spearman(a, b), 4.5 / std::sqrt(4.5 * 5.0), 1e-12);
  EXPECT_NEAR(spearman(b, b), 1.0, 1e-12);
  EXPECT_NEAR(spearman(b, -b), -1.0, 1e-12);
  EXPECT_EQ(spearman(at::ones({4}), b), 0.0);  // constant: defined as 0
}

TEST(FaithfulnessTest, ImportanceMapOfInputAndLayerMaps) {
  at::Tensor g = at::zeros({3, 4, 4});
  g[1][2][3] = -5;
  g[0][2][3] = 2;
  at::Tensor m = importance_map(g, 4, 4);
  EXPECT_EQ(m.sizes(), (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(m[2][3].item<float>(), 5.f);
  at::Tensor cam = importance_map(at::ones({2, 2}), 8, 8);
  EXPECT_EQ(cam.sizes(), (std::vector<int64_t>{8, 8}));
  EXPECT_TRUE(at::allclose(cam, at::ones({8, 8})));
}

}  // namespace
}  // namespace cnnviz
