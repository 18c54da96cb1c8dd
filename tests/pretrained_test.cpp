// Tests with the real ImageNet weights of squeezenet1_1 from shared/models
// (exported by the ctest fixture fixture.export_pretrained). They skip, saying
// why, when shared/ is absent.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cnnviz/core/faithfulness.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/predict.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/methods.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

class PretrainedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shared_ = test::shared_dir();
    if (shared_.empty()) GTEST_SKIP() << "shared/ not found beside the repository: skipped";
    model_path_ = test::test_models_dir() + "/pretrained/squeezenet1_1.pt";
    ASSERT_TRUE(fs::exists(model_path_))
        << model_path_ << " missing although shared/ exists: run through ctest";
  }

  std::vector<Prediction> classify(const Model& model, const std::string& image, int k) {
    at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
    return top_k(model.logits(x), k)[0];
  }

  std::string shared_, model_path_;
};

TEST_F(PretrainedTest, SnakeIsAKingSnake) {
  Model model = Model::load(model_path_);
  EXPECT_EQ(model.info().weights_kind, WeightsKind::kFile);
  std::vector<Prediction> top = classify(model, shared_ + "/images/snake.png", 1);
  EXPECT_EQ(top[0].index, 56);
  EXPECT_EQ(model.info().label(top[0].index), "king snake");
  EXPECT_GT(top[0].probability, 0.5);
}

// Top-5 classes identical and probabilities within 0.01 of torchvision's on
// every shared image.
TEST_F(PretrainedTest, TopFiveMatchesTorchvision) {
  std::vector<std::string> images;
  for (const auto& e : fs::directory_iterator(shared_ + "/images")) images.push_back(e.path());
  std::sort(images.begin(), images.end());
  std::vector<std::string> argv = {test::python(),
                                   test::source_dir() + "/tests/reference/classify_ref.py",
                                   model_path_, "-k", "5"};
  argv.insert(argv.end(), images.begin(), images.end());
  test::RunResult r = test::run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json ref = nlohmann::json::parse(r.out);
  ASSERT_EQ(ref["results"].size(), images.size());

  Model model = Model::load(model_path_);
  for (size_t i = 0; i < images.size(); ++i) {
    SCOPED_TRACE(images[i]);
    std::vector<Prediction> got = classify(model, images[i], 5);
    const nlohmann::json& want = ref["results"][i]["predictions"];
    ASSERT_EQ(want.size(), 5u);
    for (size_t k = 0; k < 5; ++k) {
      EXPECT_EQ(got[k].index, want[k]["index"].get<int64_t>()) << "rank " << k + 1;
      EXPECT_NEAR(got[k].probability, want[k]["probability"].get<double>(), 0.01);
    }
  }
}

// Grad-CAM at the default layer on the classic cat-and-dog photo (the dog
// sits in the upper half, the cat lies in the lower half): the map for a cat
// class puts most of its mass in the lower half, the map for bull mastiff
// (243) in the upper half. (The literal peaks do not separate here: with
// this SqueezeNet the tiger-cat map's single hottest cell is on the dog's
// face, a second hot region is on the cat; see docs/testing.md, "Exactness".)
TEST_F(PretrainedTest, GradcamSeparatesTheCatFromTheDog) {
  Model model = Model::load(model_path_);
  at::Tensor x =
      preprocess(read_image_rgb(shared_ + "/images/cat_dog.png"), model.info().preprocess);
  Engine engine(model, {"features.12"});
  Pass pass = engine.run(x.unsqueeze(0));
  auto lower_share = [&](int64_t cls) {
    Capture capture(engine, pass, {cls});
    at::Tensor cam = normalize_per_image(method_util::gradcam(capture, 0));
    at::Tensor up = upsample(cam, 224, 224)[0];
    return (up.slice(0, 112).sum() / up.sum()).item<double>();
  };
  for (int64_t cat : {281, 282, 285}) EXPECT_GT(lower_share(cat), 0.5) << "class " << cat;
  EXPECT_LT(lower_share(243), 0.4);
}

// The real weights against the autograd reference, as tests/methods_test.cpp
// does with random ones.
TEST_F(PretrainedTest, MethodsMatchTheReference) {
  test::TempDir dir;
  const std::string image = shared_ + "/images/cat_dog.png";
  const int threads = set_threads(0);
  test::RunResult r =
      test::run({test::python(), test::source_dir() + "/tests/reference/methods_ref.py",
                 model_path_, image, dir.path(), "--class", "243", "--layers",
                 "features.0,features.12", "--cam", "--threads", std::to_string(threads)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto load = [&](const std::string& name) {
    NpyArray a = read_npy(dir.file(name));
    return at::from_blob(a.data.data(), a.shape, at::kFloat).clone();
  };
  auto expect_close = [](const at::Tensor& got, const at::Tensor& want, const char* what) {
    const double scale = want.abs().max().item<double>();
    EXPECT_LE((got - want).abs().max().item<double>(), 1e-4 * scale) << what;
  };
  Model model = Model::load(model_path_);
  at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess);
  Engine engine(model, {"features.0", "features.12", kGlobalPoolInput});
  Pass pass = engine.run(x.unsqueeze(0));
  Capture capture(engine, pass, {243});
  expect_close(capture.input_gradient(Backprop::kPlain)[0], load("saliency.npy"), "saliency");
  expect_close(capture.input_gradient(Backprop::kGuided)[0], load("guided.npy"), "guided");
  expect_close(capture.input_gradient(Backprop::kDeconv)[0], load("deconv.npy"), "deconvnet");
  // features.0 is a convolution followed by an in-place ReLU: its true output
  // has negative values, which eager hooks would not see.
  expect_close(capture.activation(0)[0], load("activation_features.0.npy"), "features.0 output");
  EXPECT_LT(capture.activation(0).min().item<float>(), 0.0f);
  expect_close(method_util::gradcam(capture, 0)[0], load("gradcam_features.0.npy"), "gradcam 0");
  expect_close(method_util::gradcam(capture, 1)[0], load("gradcam_features.12.npy"), "gradcam 12");
  expect_close(find_method("cam").compute(capture)[0].value[0], load("cam.npy"), "cam");
}

// Adebayo et al.'s sanity check on the real network: randomizing the top
// layer's weights barely changes guided backprop's map (it mostly recovers
// the image), while Grad-CAM's map becomes unrelated to the original.
TEST_F(PretrainedTest, GuidedBackpropFailsTheRandomizationCheck) {
  Model model = Model::load(model_path_);
  set_threads(0);
  Model random_top = randomized_copy(model, 1, 0);
  const at::Tensor x =
      preprocess(read_image_rgb(shared_ + "/images/snake.png"), model.info().preprocess)
          .unsqueeze(0);
  auto map = [&](const Model& m, const char* method) {
    const std::vector<std::string> layers = find_method(method).layers == LayerUse::kChosen
                                                ? std::vector<std::string>{"features.12"}
                                                : std::vector<std::string>{};
    Engine engine(m, layers);
    Pass pass = engine.run(x);
    Capture capture(engine, pass, {56});  // king snake
    return importance_map(find_method(method).compute(capture)[0].value[0], 224, 224);
  };
  const double gbp = spearman(map(model, "guided-backprop"), map(random_top, "guided-backprop"));
  const double gradcam = spearman(map(model, "gradcam"), map(random_top, "gradcam"));
  EXPECT_GT(gbp, 0.5) << "guided backprop should (wrongly) survive randomization";
  EXPECT_LT(gradcam, gbp - 0.3) << "Grad-CAM should change with the weights";
}

}  // namespace
}  // namespace cnnviz
