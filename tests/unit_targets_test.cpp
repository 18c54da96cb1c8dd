// --unit LAYER:K[:y:x]: a channel's mean activation or one neuron as the
// target, against tests/reference/methods_ref.py --unit (which reads the
// layer's output with a forward hook and differentiates it by hand), its
// exact property at the unit's own layer, and the CLI around it.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cnnviz/core/feature_map.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/layers.h"
#include "cnnviz/methods/methods.h"
#include "map_util.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

TEST(UnitTargetsTest, ParsesUnits) {
  Unit u = parse_unit("features.12:5");
  EXPECT_EQ(u.layer, "features.12");
  EXPECT_EQ(u.channel, 5);
  EXPECT_FALSE(u.neuron());
  EXPECT_EQ(u.spec(), "features.12:5");
  EXPECT_EQ(u.tag(), "u-features.12-5");
  u = parse_unit("encoder.layers.encoder_layer_3:700:2:13");
  EXPECT_TRUE(u.neuron());
  EXPECT_EQ(u.y, 2);
  EXPECT_EQ(u.x, 13);
  EXPECT_EQ(u.spec(), "encoder.layers.encoder_layer_3:700:2:13");
  for (const char* bad : {"features.12", "features.12:", ":5", "features.12:-1", "features.12:5:3",
                          "features.12:x", "a:1:2:3:4", "a:99999999999"}) {
    test::expect_error([&] { parse_unit(bad); }, ErrorCode::kUsage,
                       "--unit '" + std::string(bad) + "': ");
  }
}

struct UnitCase {
  std::string model;
  std::string unit;
  std::vector<std::string> layers;  // compared with the reference; the last is the unit's
  bool counterfactual;
};

void PrintTo(const UnitCase& c, std::ostream* os) { *os << c.model << " " << c.unit; }

class ModelUnitTargetsTest : public ::testing::TestWithParam<UnitCase> {};

TEST_P(ModelUnitTargetsTest, MatchesTheAutogradReference) {
  const UnitCase& c = GetParam();
  const std::string model_path = test::test_models_dir() + "/" + c.model + ".pt";
  ASSERT_TRUE(fs::exists(model_path)) << model_path << ": run through ctest";
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = test::smooth_image(dir, 11);
  std::string layers;
  for (const std::string& l : c.layers) layers += (layers.empty() ? "" : ",") + l;
  std::vector<std::string> argv = {test::python(),
                                   test::source_dir() + "/tests/reference/methods_ref.py",
                                   model_path,
                                   image,
                                   dir.path(),
                                   "--unit",
                                   c.unit,
                                   "--layers",
                                   layers,
                                   "--threads",
                                   std::to_string(threads)};
  if (c.counterfactual) argv.push_back("--counterfactual");
  test::RunResult r = test::run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  Model model = Model::load(model_path);
  const Unit unit = parse_unit(c.unit);
  const at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
  const MethodDef& gradcam = find_method("gradcam");
  EXPECT_EQ(unit_method_layers(model, gradcam, LayerRequest{c.layers, false}, unit), c.layers);
  Engine engine(model, c.layers, unit);
  Pass pass = engine.run(x);
  ASSERT_EQ(pass.explained().sizes(), (at::IntArrayRef{1, 1}));
  MethodParams params;
  params.score = method_score(gradcam, std::nullopt, c.counterfactual);
  Capture capture(engine, pass, {0}, params);
  test::expect_close(capture.input_gradient(Backprop::kPlain)[0],
                     test::load(dir.file("saliency.npy")), "saliency");
  test::expect_close(capture.input_gradient(Backprop::kGuided)[0],
                     test::load(dir.file("guided.npy")), "guided backprop");
  for (const MethodMap& m : gradcam.compute(capture)) {
    test::expect_close(m.value[0], test::load(dir.file("gradcam_" + m.layer + ".npy")),
                       "gradcam " + m.layer);
  }
  if (!unit.neuron()) {
    // At the unit's own layer the gradient of the channel's mean is 1/(h w)
    // on channel K and 0 elsewhere: Grad-CAM is relu(+-A_K) / (h w).
    const size_t i = c.layers.size() - 1;
    const at::Tensor a = method_util::feature_map(capture, i)[0][unit.channel];
    const double hw = static_cast<double>(a.numel());
    const at::Tensor want = at::relu(c.counterfactual ? -a : a) / hw;
    test::expect_close(gradcam.compute(capture)[i].value[0], want, "relu(A_K) / hw");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Model, ModelUnitTargetsTest,
    ::testing::Values(
        // A neuron of a convolutional model, counterfactual: guided ReLUs, earlier stages.
        UnitCase{"squeezenet1_1", "features.7:12:3:4", {"features.3", "features.7"}, true},
        // A channel of a token layer (read as a 4x4 grid): the reshape rule on both ends.
        UnitCase{"tiny_vit",
                 "encoder.layers.encoder_layer_1:3",
                 {"encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"},
                 false}),
    [](const ::testing::TestParamInfo<UnitCase>& info) { return info.param.model; });

class CliUnitTargetsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::squeezenet_path();
    out_ = dir_.file("out");
    image_ = test::smooth_image(dir_, 3);
  }
  test::TempDir dir_;
  std::string model_, out_, image_;
};

TEST_F(CliUnitTargetsTest, MapsOfAChannelUpToItsLayer) {
  test::RunResult r =
      test::run_cnnviz({"gradcam", "-m", model_, "-o", out_, "--write", "npy,heatmap",
                        "--all-layers", "--unit", "features.7:12", "--counterfactual", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(test::read_text(out_ + "/manifest.json"));
  // Only the stages up to the unit's layer: later ones get no gradient from it.
  EXPECT_EQ(doc["layers"].back(), "features.7");
  EXPECT_EQ(doc["layers"].size(), 8u);
  EXPECT_EQ(doc["options"]["unit"], "features.7:12");
  EXPECT_EQ(doc["options"]["counterfactual"], true);
  const nlohmann::json& t = doc["images"][0]["targets"][0];
  EXPECT_EQ(t["source"], "unit");
  EXPECT_TRUE(t["class"].is_null());
  EXPECT_EQ(t["unit"]["layer"], "features.7");
  EXPECT_EQ(t["unit"]["channel"], 12);
  EXPECT_TRUE(t["unit"]["y"].is_null());
  EXPECT_DOUBLE_EQ(t["score"].get<double>(), -t["value"].get<double>());
  const std::string stem = doc["images"][0]["dir"];
  EXPECT_TRUE(fs::exists(out_ + "/" + stem + "/gradcam_features.7_u-features.7-12_heatmap.png"));
  EXPECT_TRUE(fs::exists(out_ + "/" + stem + "/gradcam_features.0_u-features.7-12.npy"));
  for (const auto& f : doc["images"][0]["files"]) {
    EXPECT_EQ(f["unit"], "features.7:12");
    EXPECT_TRUE(f["class"].is_null());
  }

  // Without --layer or --all-layers: the unit's own layer. An input-space method too.
  r = test::run_cnnviz({"gradcam", "-m", model_, "-o", dir_.file("own"), "--write", "npy", "--unit",
                        "features.9:3:2:2", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json own = nlohmann::json::parse(test::read_text(dir_.file("own/manifest.json")));
  EXPECT_EQ(own["layers"], nlohmann::json::array({"features.9"}));
  r = test::run_cnnviz({"guided-backprop", "-m", model_, "-o", dir_.file("gbp"), "--write", "npy",
                        "--unit", "features.9:3", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(CliUnitTargetsTest, BadUnitsAreOneLineErrors) {
  struct Bad {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  const std::vector<Bad> cases = {
      {{"gradcam", "--unit", "features.7:9999"},
       2,
       "--unit 'features.7:9999': channel 9999 out of range (layer 'features.7' is read as 256 "
       "channels of 27x27)"},
      {{"gradcam", "--unit", "features.7:1:27:0"}, 2, "position (27, 0) out of range"},
      {{"gradcam", "--unit", "features.77:1"},
       5,
       "--unit 'features.77:1': layer 'features.77' "
       "not found in model 'squeezenet1_1'"},
      {{"gradcam", "--unit", "classifier.3:0"}, 5, "outputs [1, 1000, 1, 1]: a single position"},
      {{"gradcam", "--unit", "features.7"}, 2, "--unit 'features.7': wrong number of fields"},
      {{"gradcam", "--unit", "features.3:1", "--layer", "features.9"},
       2,
       "--layer features.9: its output comes after --unit 'features.3:1''s layer"},
      {{"gradcam", "--unit", "features.3:1", "--score", "probability"},
       2,
       "--score probability: applies to classes"},
      {{"gradcam", "--unit", "features.3:1", "--class", "3"}, 2, "excludes"},
      {{"scorecam", "--unit", "features.3:1"}, 2, "--unit"},
  };
  for (const Bad& b : cases) {
    std::vector<std::string> argv = b.args;
    argv.insert(argv.end(), {"-m", model_, "-o", out_, image_});
    test::RunResult r = test::run_cnnviz(argv);
    EXPECT_EQ(r.exit_code, b.code) << b.args[2] << ": " << r.err;
    EXPECT_NE(r.err.find(b.message), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out_ + "/manifest.json")) << b.args[2];
  }
}

}  // namespace
}  // namespace cnnviz
