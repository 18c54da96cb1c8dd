// LRP: conservation on a bias-free ReLU network built here, batch norm
// folding, agreement with tests/reference/relevance_ref.py (an explicit,
// module-by-module LRP on the eager vgg16 and resnet50; 1e-4 of the map's
// max |value|, 1e-3 on resnet50), and the checks of the options.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/compute.h"
#include "cnnviz/methods/methods.h"
#include "map_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {

// conv - relu - max-pool - conv - relu - average pool - linear, no biases.
Model bias_free_net(const test::TempDir& dir) {
  torch::jit::Module net("BiasFree");
  at::manual_seed(7);
  net.register_parameter("w1", at::randn({6, 3, 3, 3}) * 0.4, false);
  net.register_parameter("w2", at::randn({8, 6, 3, 3}) * 0.3, false);
  net.register_parameter("w3", at::randn({4, 8}) * 0.5, false);
  net.define(
      "def forward(self, x):\n"
      "  h = torch.relu(torch.conv2d(x, self.w1, None, [1, 1], [1, 1]))\n"
      "  h = torch.max_pool2d(h, [2, 2], [2, 2], [0, 0], [1, 1], False)\n"
      "  h = torch.relu(torch.conv2d(h, self.w2, None, [1, 1], [1, 1]))\n"
      "  h = torch.adaptive_avg_pool2d(h, [1, 1]).flatten(1)\n"
      "  return torch.linear(h, self.w3)\n");
  net.save(dir.file("bias_free.pt"));
  return Model::load(dir.file("bias_free.pt"));
}

double relevance_sum(Engine& engine, const at::Tensor& x, int64_t cls, const LrpRules& rules,
                     double* logit) {
  Pass pass = engine.run(x);
  const at::Tensor c = pass.relevance({cls}, rules);
  *logit = pass.logits()[0][cls].item<double>();
  return (x * c).to(at::kDouble).sum().item<double>();
}

TEST(LrpTest, BiasFreeReluNetworksConserveRelevance) {
  test::TempDir dir;
  Model model = bias_free_net(dir);
  Engine engine(model, {}, std::nullopt, /*lrp=*/true);
  EXPECT_EQ(engine.report().lrp_layers, 3);
  at::manual_seed(1);
  const at::Tensor x = at::rand({1, 3, 12, 12});  // non-negative: every rule conserves
  const std::vector<std::pair<std::string, LrpRule>> all = {{"epsilon", LrpRule::kEpsilon},
                                                            {"zplus", LrpRule::kZPlus},
                                                            {"gamma", LrpRule::kGamma},
                                                            {"alpha-beta", LrpRule::kAlphaBeta}};
  for (const auto& [name, rule] : all) {
    LrpRules rules;
    rules.first = rules.conv = rules.linear = rule;
    rules.epsilon = 1e-12;
    for (int64_t cls : {0, 2}) {
      double logit = 0;
      const double sum = relevance_sum(engine, x, cls, rules, &logit);
      // Relevance on positive logits; flat keeps what reaches the input.
      if (logit <= 0 && rule != LrpRule::kEpsilon && rule != LrpRule::kGamma) continue;
      EXPECT_NEAR(sum, logit, 1e-5 * std::abs(logit)) << name << " class " << cls;
    }
  }
  // The composites: flat or box at the input layer.
  LrpRules plus_flat;  // the engine's defaults: flat, z+, epsilon
  plus_flat.epsilon = 1e-12;
  LrpRules plus_box = plus_flat;  // the method's default
  plus_box.first = LrpRule::kBox;
  plus_box.low = {0, 0, 0};
  plus_box.high = {1, 1, 1};
  LrpRules gamma_box = plus_box;
  gamma_box.conv = LrpRule::kGamma;
  for (const LrpRules& rules : {plus_flat, plus_box, gamma_box}) {
    double logit = 0;
    const double sum = relevance_sum(engine, x, 1, rules, &logit);
    if (logit > 0) {
      EXPECT_NEAR(sum, logit, 1e-5 * std::abs(logit));
    }
  }
}

TEST(LrpTest, EpsilonRuleOnReluNetworksIsGradientTimesInput) {
  // With epsilon -> 0 every ReLU network's LRP-epsilon equals gradient x
  // input (with biases too; Montavon et al. 2019, section 10.2), and batch
  // norm folding must not change that.
  test::TempDir dir;
  torch::jit::Module net("Folded");
  at::manual_seed(3);
  net.register_parameter("w1", at::randn({5, 3, 3, 3}) * 0.5, false);
  net.register_parameter("b1", at::randn({5}) * 0.1, false);
  net.register_buffer("mean", at::randn({5}) * 0.2);
  net.register_buffer("var", at::rand({5}) + 0.5);
  net.register_parameter("gamma", at::rand({5}) + 0.5, false);
  net.register_parameter("beta", at::randn({5}) * 0.1, false);
  net.register_parameter("w2", at::randn({3, 5}), false);
  net.register_parameter("b2", at::randn({3}) * 0.1, false);
  net.define(
      "def forward(self, x):\n"
      "  h = torch.conv2d(x, self.w1, self.b1, [2, 2], [1, 1])\n"
      "  h = torch.batch_norm(h, self.gamma, self.beta, self.mean, self.var, False, 0.1, 1e-5, "
      "True)\n"
      "  h = torch.relu(h).mean([2, 3])\n"
      "  return torch.linear(h, self.w2, self.b2)\n");
  net.save(dir.file("folded.pt"));
  Model model = Model::load(dir.file("folded.pt"));
  Engine lrp(model, {}, std::nullopt, true);
  EXPECT_EQ(lrp.report().folded_batch_norms, 1);
  Engine plain(model, {});
  const at::Tensor x = at::randn({1, 3, 10, 10});
  LrpRules rules;
  rules.first = rules.conv = rules.linear = LrpRule::kEpsilon;
  rules.epsilon = 0;
  at::Tensor logits, g;
  {
    Pass p = plain.run(x);
    logits = p.logits();
    g = x * p.backward({1}, Backprop::kPlain);
  }
  Pass a = lrp.run(x);
  EXPECT_TRUE(at::allclose(a.logits(), logits, 1e-6, 1e-6));
  const at::Tensor r = x * a.relevance({1}, rules);
  test::expect_maps_close(r, g, 1e-5, "LRP-0 with a folded batch norm vs gradient x input");
}

struct LrpCase {
  std::string arch, composite;
  double tolerance;
  std::string layer;  // also the relevance there, summed over channels
};

void PrintTo(const LrpCase& c, std::ostream* os) { *os << c.arch << " " << c.composite; }

class ModelLrpTest : public ::testing::TestWithParam<LrpCase> {};

TEST_P(ModelLrpTest, MatchesTheReference) {
  const LrpCase& c = GetParam();
  const std::string model_path = test::test_models_dir() + "/" + c.arch + ".pt";
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = test::smooth_image(dir, 8);
  test::RunResult r =
      test::run({test::python(), test::source_dir() + "/tests/reference/relevance_ref.py",
                 model_path, image, dir.path(), "--lrp", "--composite", c.composite, "--layers",
                 c.layer, "--threads", std::to_string(threads)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  const int64_t cls = meta["class"].get<int64_t>();
  Model model = Model::load(model_path);
  const at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
  const MethodDef& m = find_method("lrp");
  Engine engine(model, {c.layer}, std::nullopt, true);
  MethodParams p;
  p.composite = c.composite;
  p.mean = model.info().preprocess.mean;
  p.std = model.info().preprocess.std;
  p.score = method_score(m, std::nullopt, false);
  const std::vector<MethodMap> maps = compute_maps(engine, m, x, fixed_class(cls), p).maps.at(0);
  ASSERT_EQ(maps.size(), 2u);
  const at::Tensor map = maps[0].value[0];
  test::expect_maps_close(map, test::load(dir.file("lrp.npy")), c.tolerance, "lrp");
  EXPECT_EQ(maps[1].layer, c.layer);
  test::expect_maps_close(maps[1].value[0], test::load(dir.file("lrp_" + c.layer + ".npy")),
                          c.tolerance, "lrp at " + c.layer);
  std::cout << c.arch << " " << c.composite << ": relevance " << map.sum().item<double>()
            << " of the logit " << meta["logit"] << " (reference " << meta["lrp_sum"] << ")\n";
}

INSTANTIATE_TEST_SUITE_P(
    Model, ModelLrpTest,
    ::testing::Values(LrpCase{"vgg16", "epsilon-plus-flat", 1e-4, "features.29"},
                      LrpCase{"squeezenet1_1", "epsilon-gamma-box", 1e-4, "features.12"},
                      // 16 residual splits in float32: measured
                      // 2.7e-4 of the max at the largest pixel
                      // (the sums agree to 1e-6).
                      LrpCase{"resnet50", "epsilon-plus-box", 1e-3, "layer3"}),
    [](const ::testing::TestParamInfo<LrpCase>& info) {
      std::string name = info.param.arch + "_" + info.param.composite;
      for (char& ch : name) {
        if (ch == '-') ch = '_';
      }
      return name;
    });

TEST(LrpTest, OptionsThatMakeNoSenseAreUsageErrors) {
  const MethodDef& m = find_method("lrp");
  ASSERT_NE(m.check, nullptr);
  MethodParams p;
  p.alpha = 1;
  p.beta = 1;
  test::expect_error([&] { m.check(p, 224, 224); }, ErrorCode::kUsage, "alpha - beta must be 1");
  p.alpha = 3;
  p.beta = 2;
  m.check(p, 224, 224);
  const ParamDef& eps = find_param("epsilon");
  EXPECT_EQ(eps.min, 0.0);  // --epsilon -1 is out of range for the CLI
}

TEST(CliLrpTest, InputAndLayerRelevanceFiles) {
  const std::string model = test::squeezenet_path();
  test::TempDir dir;
  const std::string image = test::smooth_image(dir, 9);
  const std::string out = dir.file("out");
  test::RunResult r = test::run_cnnviz({"lrp", "-q", "--composite", "epsilon-gamma-box", "--layer",
                                        "features.12", "-m", model, "-o", out, image});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(test::read_text(out + "/manifest.json"));
  EXPECT_EQ(doc["layers"], nlohmann::json::array({"features.12"}));
  EXPECT_EQ(doc["options"]["composite"], "epsilon-gamma-box");
  const std::string tag = "_c" + std::to_string(doc["images"][0]["targets"][0]["class"].get<int>());
  const std::string base = out + "/" + std::filesystem::path(image).stem().string() + "/lrp";
  for (const std::string& f :
       {tag + ".npy", tag + "_pos.png", tag + "_signed.png", "_features.12" + tag + ".npy",
        "_features.12" + tag + "_overlay.png"}) {
    EXPECT_TRUE(std::filesystem::exists(base + f)) << base + f;
  }
  // Without --layer: the input's relevance only.
  r = test::run_cnnviz({"lrp", "-q", "-m", model, "-o", dir.file("plain"), image});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(test::read_text(dir.file("plain") + "/manifest.json"))["layers"],
            nlohmann::json::array());
}

TEST(CliLrpTest, WritesOnlyThePicturesItsMapsHave) {
  // The default composite on SqueezeNet (box, z+; logits are ReLU outputs)
  // passes only positive relevance down: no neg pictures, and no warning
  // about them. Every picture written shows something.
  const std::string model = test::squeezenet_path();
  test::TempDir dir;
  const std::string out = dir.file("out");
  const std::vector<std::string> images = {test::smooth_image(dir, 3), test::smooth_image(dir, 4)};
  std::vector<std::string> args = {"lrp", "-m", model, "-o", out};
  args.insert(args.end(), images.begin(), images.end());
  const test::RunResult r = test::run_cnnviz(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(test::read_text(out + "/manifest.json"));
  std::set<std::string> variants;
  for (const nlohmann::json& image : doc["images"]) {
    for (const nlohmann::json& f : image["files"]) {
      variants.insert(f["variant"].get<std::string>());
      if (f["format"] != "png") continue;
      const cv::Mat png = cv::imread(out + "/" + f["path"].get<std::string>(), cv::IMREAD_UNCHANGED);
      double lo = 0, hi = 0;
      cv::minMaxLoc(png.reshape(1), &lo, &hi);
      EXPECT_LT(lo, hi) << f["path"] << " is blank";
    }
  }
  EXPECT_EQ(variants, (std::set<std::string>{"raw", "all", "all_gray", "pos", "pos_gray", "signed"}));
  // A sign the map has is still written: the counterfactual's relevance is
  // negative (the negated logit).
  const test::RunResult neg = test::run_cnnviz(
      {"lrp", "-q", "--counterfactual", "--write", "neg,pos", "-m", model, "-o", dir.file("cf"),
       images[0]});
  ASSERT_EQ(neg.exit_code, 0) << neg.err;
  const nlohmann::json cf = nlohmann::json::parse(test::read_text(dir.file("cf") + "/manifest.json"));
  ASSERT_EQ(cf["images"][0]["files"].size(), 1u) << cf.dump(1);
  EXPECT_EQ(cf["images"][0]["files"][0]["variant"], "neg");
}

}  // namespace
}  // namespace cnnviz
