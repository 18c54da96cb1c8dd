// The faithfulness metrics (faithfulness.h): deletion and insertion curves,
// Average Drop/Increase and Spearman's rank correlation against
// tests/reference/evaluate_ref.py, the randomized copy of the model-
// randomization check, and constructed cases where the right answer is known.
//
// Tolerances: probabilities of the curves 1e-5 absolute (both sides batch
// their forward passes differently, which moves float32 softmax outputs by
// ~1e-7).
#include "cnnviz/core/faithfulness.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cnnviz/core/runtime.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/methods.h"
#include "map_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {

std::string smooth_image(const test::TempDir& dir) { return test::smooth_image(dir, 11); }

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
  test::RunResult r = test::run_reference(
      "evaluate_ref.py",
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

  r = test::run_reference("evaluate_ref.py",
                          {"--spearman", dir.file("map.npy"), dir.file("saliency.npy")});
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
