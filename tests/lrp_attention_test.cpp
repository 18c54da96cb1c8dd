// LRP through attention (AttnLRP's rules, and CP-LRP with --attention-rule
// cp): conservation on a ViT without biases, class token or position
// embedding (the tiny ViT with those set to zero), agreement with
// tests/reference/relevance_ref.py's explicit ViT traversal, the operators'
// true gradients outside LRP passes, and the option.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <nlohmann/json.hpp>

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

MethodParams lrp_params(const Model& model, const std::string& attention_rule) {
  const MethodDef& m = find_method("lrp");
  MethodParams p;
  p.attention_rule = attention_rule;
  return run_params(m, p, model.info(), method_score(m, std::nullopt, false));
}

// The input relevance of class `cls` and that logit.
std::pair<double, double> relevance_and_logit(const Model& model, const at::Tensor& x, int64_t cls,
                                              const std::string& rule) {
  const MethodDef& m = find_method("lrp");
  Engine engine(model, {}, std::nullopt, true);
  BatchMaps out = compute_maps(engine, m, x, fixed_class(cls), lrp_params(model, rule));
  return {out.maps.at(0).at(0).value.to(at::kDouble).sum().item<double>(),
          out.logits[0][cls].item<double>()};
}

// The tiny ViT with every bias, the class token and the position embedding
// set to zero: nothing on the way absorbs relevance.
Model bias_free_vit() {
  Model model = Model::load(test::test_models_dir() + "/tiny_vit.pt");
  at::NoGradGuard no_grad;
  int zeroed = 0;
  for (const auto& p : model.module().named_parameters()) {
    const std::string& name = p.name;
    const bool bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    if (bias || name == "class_token" || name == "encoder.pos_embedding") {
      p.value.zero_();
      ++zeroed;
    }
  }
  EXPECT_EQ(zeroed, 2 * 6 + 1 + 1 + 1 + 1 + 1) << "biases of 2 blocks, the last norm, the patch "
                                                  "embedding, the head, class token, position";
  return model;
}

TEST(ModelLrpAttentionTest, ConservesRelevanceWithoutBiases) {
  Model model = bias_free_vit();
  Engine engine(model, {}, std::nullopt, true);
  // 2 blocks: 3 layer norms per block and the last, 2 GELUs, 2 products each.
  EXPECT_EQ(engine.report().lrp_transformer_ops, 2 * (2 + 1 + 2) + 1);
  at::manual_seed(21);
  const at::Tensor x = at::randn({1, 3, 32, 32});
  for (int64_t cls : {0, 4, 9}) {
    const auto [sum, logit] = relevance_and_logit(model, x, cls, "cp");
    EXPECT_NEAR(sum, logit, 1e-3 * std::abs(logit)) << "class " << cls;
    // AttnLRP's softmax rule is not conservative (the paper's bias term):
    // the sum moves, but stays of the logit's order.
    const auto [attn, logit2] = relevance_and_logit(model, x, cls, "attnlrp");
    EXPECT_EQ(logit2, logit);
    std::cout << "class " << cls << ": logit " << logit << ", cp " << sum << ", attnlrp " << attn
              << "\n";
  }
}

TEST(ModelLrpAttentionTest, OperatorsKeepTheTrueGradientOutsideLrp) {
  // An LRP engine's plain backward is the model's gradient: the rewritten
  // layer norms, GELUs and products change LRP passes only.
  Model model = Model::load(test::test_models_dir() + "/tiny_vit.pt");
  at::manual_seed(22);
  const at::Tensor x = at::randn({2, 3, 32, 32});
  Engine plain(model, {});
  at::Tensor want;
  {
    Pass p = plain.run(x);
    want = p.backward({1, 2}, Backprop::kPlain);
  }
  Engine lrp(model, {}, std::nullopt, true);
  Pass p = lrp.run(x);
  test::expect_maps_close(p.backward({1, 2}, Backprop::kPlain), want, 1e-5,
                          "plain gradient through the LRP engine");
}

struct VitLrpCase {
  std::string model, attention_rule;
};

class ModelLrpAttentionReferenceTest : public ::testing::TestWithParam<VitLrpCase> {};

TEST_P(ModelLrpAttentionReferenceTest, MatchesTheReference) {
  const VitLrpCase& c = GetParam();
  const std::string model_path = test::test_models_dir() + "/" + c.model + ".pt";
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = test::smooth_image(dir, 23);
  test::RunResult r =
      test::run({test::python(), test::source_dir() + "/tests/reference/relevance_ref.py",
                 model_path, image, dir.path(), "--lrp", "--attention-rule", c.attention_rule,
                 "--threads", std::to_string(threads)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  const int64_t cls = meta["class"].get<int64_t>();
  Model model = Model::load(model_path);
  const at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
  Engine engine(model, {}, std::nullopt, true);
  const MethodParams p = lrp_params(model, c.attention_rule);
  const std::vector<MethodMap> maps =
      compute_maps(engine, find_method("lrp"), x, fixed_class(cls), p).maps.at(0);
  ASSERT_EQ(maps.size(), 1u);
  test::expect_maps_close(maps[0].value[0], test::load(dir.file("lrp.npy")), 1e-4,
                          "lrp " + c.attention_rule);
  std::cout << c.model << " " << c.attention_rule << ": relevance "
            << maps[0].value.sum().item<double>() << " of the logit " << meta["logit"]
            << " (reference " << meta["lrp_sum"] << ")\n";
}

std::string case_name(const ::testing::TestParamInfo<VitLrpCase>& info) {
  return info.param.model + "_" + info.param.attention_rule;
}

INSTANTIATE_TEST_SUITE_P(Model, ModelLrpAttentionReferenceTest,
                         ::testing::Values(VitLrpCase{"tiny_vit", "attnlrp"},
                                           VitLrpCase{"tiny_vit", "cp"},
                                           VitLrpCase{"tiny_vit_nobias", "attnlrp"}),
                         case_name);

// Full size (`scripts/test.sh --backbones`).
INSTANTIATE_TEST_SUITE_P(Backbone, ModelLrpAttentionReferenceTest,
                         ::testing::Values(VitLrpCase{"vit_b_16", "attnlrp"},
                                           VitLrpCase{"vit_b_16", "cp"}),
                         case_name);

TEST(CliLrpAttentionTest, RunsOnViTAndChecksTheRule) {
  const std::string vit = test::test_models_dir() + "/tiny_vit.pt";
  test::TempDir dir;
  const std::string image = test::smooth_image(dir, 24);
  test::RunResult r = test::run_cnnviz(
      {"lrp", "-q", "-m", vit, "-o", dir.file("out"), "--attention-rule", "cp", image});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cnnviz(
      {"lrp", "-m", vit, "-o", dir.file("out"), "--attention-rule", "zplus", image});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--attention-rule"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cnnviz
