// Feature visualization on the real SqueezeNet (shared/): class models the
// model believes, filters that beat natural images, dreams that amplify and
// inversions that match, with the figures docs/guide.md states.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/feature_map.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/core/synthesis.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/preprocess.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

class PretrainedSynthesisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shared_ = test::shared_dir();
    if (shared_.empty()) GTEST_SKIP() << "shared/ not found beside the repository: skipped";
    model_path_ = test::test_models_dir() + "/pretrained/squeezenet1_1.pt";
    ASSERT_TRUE(fs::exists(model_path_))
        << model_path_ << " missing although shared/ exists: run through ctest";
  }

  std::vector<std::string> shared_images() {
    std::vector<std::string> images;
    for (const auto& e : fs::directory_iterator(shared_ + "/images")) images.push_back(e.path());
    std::sort(images.begin(), images.end());
    return images;
  }

  std::string shared_, model_path_;
};

// Goldfish, flamingo and strawberry (64 steps, else the defaults: 128 px,
// FFT parameterization, decorrelated colour, jitter, scale and rotation).
// One thread: two optimizations sharing two cores with two threads each run
// 50x slower (ctest -j2; see docs/guide.md, "Feature visualization").
TEST_F(PretrainedSynthesisTest, ClassModelsAreClassifiedAsTheirClass) {
  test::TempDir dir;
  const test::RunResult r =
      test::run_cnnviz({"class-model", "-m", model_path_, "--class", "1", "--class", "130",
                        "--class", "949", "--steps", "64", "--threads", "1", "-o", dir.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = nlohmann::json::parse(test::read_text(dir.file("manifest.json")));
  for (const auto& e : m["images"]) {
    const double p = e["probability"].get<double>();
    EXPECT_GE(p, 0.9) << "class " << e["class"];
    EXPECT_EQ(e["predictions"][0]["index"], e["class"]);
    std::cout << "class " << e["class"] << " (" << e["label"].get<std::string>() << "): p " << p
              << "\n";
  }
}

// Each optimized image excites its channel more than 99% of the positions of
// that channel's maps over the shared photos.
TEST_F(PretrainedSynthesisTest, FiltersBeatNaturalImages) {
  const std::string layer = "features.12";
  test::TempDir dir;
  const test::RunResult r =
      test::run_cnnviz({"filters", "-m", model_path_, "--layer", layer, "--channels", "0-3",
                        "--steps", "128", "--threads", "1", "-o", dir.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = nlohmann::json::parse(test::read_text(dir.file("manifest.json")));
  Model model = Model::load(model_path_);
  Engine engine(model, {layer});
  engine.keep_outputs(true, false);
  std::vector<at::Tensor> inputs;
  for (const std::string& image : shared_images()) {
    inputs.push_back(preprocess(read_image_rgb(image), model.info().preprocess));
  }
  const at::Tensor maps =
      to_feature_map(engine.run(at::stack(inputs)).output(0), layer, model.info().name);
  for (const auto& e : m["images"]) {
    const int64_t c = e["unit"]["channel"].get<int64_t>();
    const at::Tensor values = maps.select(1, c).flatten();
    const double p99 = at::quantile(values, 0.99).item<double>();
    const double got = e["objective"].get<double>();
    EXPECT_GT(got, p99) << "channel " << c;
    std::cout << layer << ":" << c << ": mean activation " << got << ", natural 99th percentile "
              << p99 << " (max " << values.max().item<double>() << ")\n";
  }
}

TEST_F(PretrainedSynthesisTest, DreamAmplifiesTheLayer) {
  test::TempDir dir;
  const test::RunResult r =
      test::run_cnnviz({"dream", "-m", model_path_, "--layer", "features.9", "--threads", "1", "-o",
                        dir.path(), shared_ + "/images/cat.jpg"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = nlohmann::json::parse(test::read_text(dir.file("manifest.json")));
  const double gain = m["images"][0]["gain"].get<double>();
  EXPECT_GE(gain, 3.0);  // measured 6.1 (docs/guide.md)
  std::cout << "dream features.9 on cat.jpg: activation RMS x" << gain << "\n";
}

TEST_F(PretrainedSynthesisTest, InversionMatchesTheFeatures) {
  test::TempDir dir;
  const test::RunResult r =
      test::run_cnnviz({"invert", "-m", model_path_, "--layer", "features.5", "--threads", "1",
                        "-o", dir.path(), shared_ + "/images/cat.jpg"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = nlohmann::json::parse(test::read_text(dir.file("manifest.json")));
  const double err = m["images"][0]["relative_error"]["features.5"].get<double>();
  EXPECT_LE(err, 0.3);  // measured 0.17 (docs/guide.md)
  std::cout << "invert features.5 of cat.jpg: relative feature error " << err << "\n";
}

}  // namespace
}  // namespace cnnviz
