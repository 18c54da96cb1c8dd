// The methods made for attention (attention, rollout, attention-grad):
// agreement with tests/reference/attention_ref.py (an eager ViT whose
// attention is recomputed explicitly beside nn.MultiheadAttention's own
// need_weights=True weights) on the tiny ViT, their properties on a
// hand-written attention model (no MultiheadAttention, no class token), and
// the refusals (windowed attention, models without attention, bad options).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/compute.h"
#include "cnnviz/methods/layers.h"
#include "cnnviz/methods/methods.h"
#include "map_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {

// Patches of 4x4 pixels -> 16 tokens of 8 channels (no class token); module
// `attn`: a self-attention of 2 heads written out (q k^T, softmax, times v);
// module `mix`: a two-head attention of the tokens with themselves; the mean
// over tokens and a linear head. Logit 3 is read from the patch embedding
// alone, so no gradient of it reaches either attention.
Model handmade_attention(const test::TempDir& dir) {
  at::manual_seed(11);
  torch::jit::Module attn("Attn");
  attn.register_parameter("qkv", at::randn({24, 8}) * 0.4, false);
  attn.define(
      "def forward(self, t):\n"
      "  n = t.size(0)\n"
      "  qkv = torch.linear(t, self.qkv).reshape(n, 16, 3, 2, 4).permute(2, 0, 3, 1, 4)\n"
      "  a = torch.softmax(torch.matmul(qkv[0], qkv[1].transpose(-2, -1)) * 0.5, -1)\n"
      "  return torch.matmul(a, qkv[2]).transpose(1, 2).reshape(n, 16, 8)\n");
  torch::jit::Module mix("Mix");
  mix.define(
      "def forward(self, y):\n"
      "  h = y.reshape(y.size(0), 16, 2, 4).transpose(1, 2)\n"
      "  a = torch.softmax(torch.matmul(h, h.transpose(-2, -1)), -1)\n"
      "  return torch.matmul(a, h).transpose(1, 2).reshape(y.size(0), 16, 8)\n");
  torch::jit::Module net("HandMade");
  net.register_parameter("patch", at::randn({8, 3, 4, 4}) * 0.3, false);
  net.register_parameter("head", at::randn({3, 8}) * 0.5, false);
  net.register_parameter("bypass", at::randn({1, 8}) * 0.5, false);
  net.register_module("attn", attn);
  net.register_module("mix", mix);
  net.define(
      "def forward(self, x):\n"
      "  t = torch.conv2d(x, self.patch, None, [4, 4]).flatten(2).transpose(1, 2)\n"
      "  y = self.attn.forward(t) + t\n"
      "  y = self.mix.forward(y) + y\n"
      "  return torch.cat([torch.linear(y.mean(1), self.head),\n"
      "                    torch.linear(t.mean(1), self.bypass)], 1)\n");
  net.save(dir.file("handmade.pt"));
  return Model::load(dir.file("handmade.pt"));
}

std::vector<MethodMap> maps_of(const Model& model, const std::string& method, const at::Tensor& x,
                               int64_t cls, MethodParams p = {}) {
  const MethodDef& m = find_method(method);
  // As runs build it: without backward passes for the methods that need none.
  Engine engine(model, method_layers(model, m, {}), std::nullopt, false, !m.forward_only());
  p = run_params(m, p, model.info(), method_score(m, std::nullopt, false));
  return compute_maps(engine, m, x, fixed_class(cls), p).maps.at(0);
}

TEST(AttentionTest, HandWrittenAttentionIsFoundAndRolloutRowsSumToOne) {
  test::TempDir dir;
  Model model = handmade_attention(dir);
  at::manual_seed(2);
  const at::Tensor x = at::randn({2, 3, 16, 16});
  for (const std::string fusion : {"mean", "max", "min"}) {
    for (double ratio : {0.0, 0.5, 0.9}) {
      MethodParams p;
      p.head_fusion = fusion;
      p.discard_ratio = ratio;
      const std::vector<MethodMap> maps = maps_of(model, "rollout", x, 0, p);
      ASSERT_EQ(maps.size(), 2u) << "two softmaxes weigh values";
      EXPECT_EQ(maps[0].layer, "attn");
      EXPECT_EQ(maps[1].layer, "mix");
      for (const MethodMap& m : maps) {
        ASSERT_EQ(m.value.sizes(), (at::IntArrayRef{2, 4, 4}));
        // No class token: the map is the mean of the rollout's rows, each a
        // distribution over the 16 tokens.
        const at::Tensor sums = m.value.sum({1, 2});
        EXPECT_TRUE(at::allclose(sums, at::ones_like(sums), 1e-5, 1e-5))
            << fusion << " " << ratio << " " << m.layer << ": " << sums;
        EXPECT_GE(m.value.min().item<float>(), 0.0f);
      }
    }
  }
}

TEST(AttentionTest, AttentionGradWithoutGradientIsTheIdentity) {
  test::TempDir dir;
  Model model = handmade_attention(dir);
  at::manual_seed(3);
  const at::Tensor x = at::randn({1, 3, 16, 16});
  // Logit 3 bypasses both attentions: R stays I, whose row mean is 1/16.
  for (const MethodMap& m : maps_of(model, "attention-grad", x, 3)) {
    test::expect_maps_close(m.value, at::full({1, 4, 4}, 1.0f / 16), 1e-6, m.layer);
  }
  // Logit 0 does not.
  const std::vector<MethodMap> maps = maps_of(model, "attention-grad", x, 0);
  EXPECT_GT((maps.back().value - 1.0f / 16).abs().max().item<float>(), 1e-4);
}

TEST(AttentionTest, RawAttentionIsTheSoftmaxTheModelComputes) {
  test::TempDir dir;
  Model model = handmade_attention(dir);
  at::manual_seed(4);
  const at::Tensor x = at::randn({1, 3, 16, 16});
  // The first attention recomputed here from the weights.
  const torch::jit::Module& mod = model.module();
  const at::Tensor t =
      at::conv2d(x, mod.attr("patch").toTensor(), {}, 4).flatten(2).transpose(1, 2);
  const at::Tensor w = mod.attr("attn").toModule().attr("qkv").toTensor();
  const at::Tensor qkv = at::linear(t, w).reshape({1, 16, 3, 2, 4}).permute({2, 0, 3, 1, 4});
  const at::Tensor a = at::softmax(at::matmul(qkv[0], qkv[1].transpose(-2, -1)) * 0.5, -1);
  for (int head : {-1, 0, 1}) {
    MethodParams p;
    p.head = head;
    const std::vector<MethodMap> maps = maps_of(model, "attention", x, 0, p);
    const at::Tensor want = (head < 0 ? a.mean(1) : a.select(1, head)).mean(1).reshape({1, 4, 4});
    test::expect_maps_close(maps[0].value, want, 1e-5, "head " + std::to_string(head));
  }
  MethodParams p;
  p.head = 2;
  test::expect_error([&] { maps_of(model, "attention", x, 0, p); }, ErrorCode::kUsage,
                     "--head 2: layer 'attn' has 2 heads (0 to 1, or -1 for their mean)");
}

TEST(ModelAttentionTest, TheExplicitPathComputesTheModulesOutput) {
  Model model = Model::load(test::test_models_dir() + "/tiny_vit.pt");
  at::manual_seed(5);
  const at::Tensor x = at::randn({3, 3, 32, 32});
  // Model::logits runs in inference mode, where nn.MultiheadAttention takes
  // its fused path; the engine's graph takes the explicit one.
  const at::Tensor fused = model.logits(x);
  Engine engine(model, {kAttentionLayers});
  std::vector<AttentionRecord> att;
  {
    Pass pass = engine.run(x);
    test::expect_maps_close(pass.logits(), fused, 1e-5, "logits");
    att = pass.attention();
  }
  ASSERT_EQ(att.size(), 2u);
  EXPECT_EQ(att[0].path, "encoder.layers.encoder_layer_0.self_attention");
  EXPECT_EQ(att[1].path, "encoder.layers.encoder_layer_1.self_attention");
  EXPECT_EQ(att[0].input_shape, (std::vector<int64_t>{3, 17, 16}));
  EXPECT_EQ(att[0].weights.sizes(), (at::IntArrayRef{6, 17, 17}));
  const at::Tensor sums = att[1].weights.sum(-1);
  EXPECT_TRUE(at::allclose(sums, at::ones_like(sums), 1e-5, 1e-5));
  // An engine without the pseudo-layer gives the same logits.
  Engine plain(model, {});
  test::expect_maps_close(plain.run(x).logits(), fused, 1e-5, "logits without attention taps");
}

TEST(ModelAttentionTest, WithoutBackwardTheFusedPathFormsTheSameWeightsPerHead) {
  Model model = Model::load(test::test_models_dir() + "/tiny_vit.pt");
  at::manual_seed(6);
  const at::Tensor x = at::randn({3, 3, 32, 32});
  Engine explicit_path(model, {kAttentionLayers});
  Engine fused_path(model, {kAttentionLayers}, std::nullopt, false, /*backward=*/false);
  std::vector<AttentionRecord> want, got;
  {
    Pass pass = explicit_path.run(x);
    want = pass.attention();
  }
  {
    Pass pass = fused_path.run(x);
    test::expect_maps_close(pass.logits(), model.logits(x), 1e-5, "logits");
    got = pass.attention();
    test::expect_error([&] { pass.backward({0, 0, 0}, Backprop::kPlain); }, ErrorCode::kRuntime,
                       "engine: backward() on an engine built without backward passes");
  }
  ASSERT_EQ(got.size(), 2u);
  for (size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].path, want[k].path);
    EXPECT_EQ(got[k].calls, 1);
    EXPECT_EQ(got[k].input_shape, want[k].input_shape);
    // The fused operator's own [N,H,T,T], not the explicit path's [N*H,T,T].
    ASSERT_EQ(got[k].weights.sizes(), (at::IntArrayRef{3, 2, 17, 17})) << got[k].path;
    test::expect_maps_close(got[k].weights, want[k].weights.reshape({3, 2, 17, 17}), 1e-6,
                            got[k].path);
  }
}

struct RefRun {
  std::string model;
  std::vector<std::string> args;
  MethodParams params;
};

class ModelAttentionReferenceTest : public ::testing::TestWithParam<RefRun> {};

TEST_P(ModelAttentionReferenceTest, MatchesTheReference) {
  const RefRun& c = GetParam();
  const std::string model_path = test::test_models_dir() + "/" + c.model + ".pt";
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = test::smooth_image(dir, 12);
  std::vector<std::string> argv = {test::python(),
                                   test::source_dir() + "/tests/reference/attention_ref.py",
                                   model_path,
                                   image,
                                   dir.path(),
                                   "--threads",
                                   std::to_string(threads)};
  argv.insert(argv.end(), c.args.begin(), c.args.end());
  test::RunResult r = test::run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  const int64_t cls = meta["class"].get<int64_t>();
  Model model = Model::load(model_path);
  const at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
  for (const std::string method : {"attention", "rollout", "attention-grad"}) {
    MethodParams p = c.params;
    const std::vector<MethodMap> maps = maps_of(model, method, x, cls, p);
    ASSERT_EQ(maps.size(), meta["blocks"].size()) << method;
    for (size_t k = 0; k < maps.size(); ++k) {
      const std::string& path = maps[k].layer;
      ASSERT_EQ(path, meta["blocks"][k].get<std::string>()) << method;
      at::Tensor want;
      if (method == "attention") {
        want = test::load(dir.file("attention_" + path + ".npy")).mean(0);
      } else if (method == "rollout") {
        want = test::load(dir.file("rollout_" + path + ".npy"));
      } else {
        want = test::load(dir.file("attention_grad_" + path + ".npy"));
      }
      test::expect_close(maps[k].value[0], want, method + " " + path);
    }
  }
  // One head of the raw attention.
  MethodParams p = c.params;
  p.head = 1;
  const std::vector<MethodMap> maps = maps_of(model, "attention", x, cls, p);
  for (const MethodMap& m : maps) {
    test::expect_close(m.value[0], test::load(dir.file("attention_" + m.layer + ".npy"))[1],
                       "attention head 1 " + m.layer);
  }
}

MethodParams rollout_params(const std::string& fusion, double ratio) {
  MethodParams p;
  p.head_fusion = fusion;
  p.discard_ratio = ratio;
  return p;
}

std::string settings_name(const ::testing::TestParamInfo<RefRun>& info) {
  return info.param.model + "_settings" + std::to_string(info.index);
}

INSTANTIATE_TEST_SUITE_P(Model, ModelAttentionReferenceTest,
                         ::testing::Values(RefRun{"tiny_vit", {}, {}},
                                           RefRun{"tiny_vit",
                                                  {"--head-fusion", "max", "--discard-ratio", "0"},
                                                  rollout_params("max", 0.0)},
                                           RefRun{"tiny_vit",
                                                  {"--head-fusion", "min", "--discard-ratio", "0.5",
                                                   "--class", "3"},
                                                  rollout_params("min", 0.5)}),
                         settings_name);

// Full size (`scripts/test.sh --backbones`): 12 blocks of 12 heads over 197 tokens.
INSTANTIATE_TEST_SUITE_P(Backbone, ModelAttentionReferenceTest,
                         ::testing::Values(RefRun{"vit_b_16", {}, {}},
                                           RefRun{
                                               "vit_b_16",
                                               {"--head-fusion", "max", "--discard-ratio", "0.5"},
                                               rollout_params("max", 0.5)}),
                         settings_name);

TEST(CliAttentionTest, RunsOnViTAndRefusesWhatItCannotDo) {
  const std::string vit = test::test_models_dir() + "/tiny_vit.pt";
  test::TempDir dir;
  const std::string image = test::smooth_image(dir, 13);
  const std::string out = dir.file("out");
  test::RunResult r =
      test::run_cnnviz({"rollout", "-q", "-m", vit, "-o", out, "--write", "npy,overlay", image});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<std::string> npys;
  for (const auto& e : std::filesystem::recursive_directory_iterator(out)) {
    if (e.path().extension() == ".npy") npys.insert(e.path().filename().string());
  }
  ASSERT_EQ(npys.size(), 2u) << "one map per attention block";
  for (const std::string block : {"encoder_layer_0", "encoder_layer_1"}) {
    const std::string prefix = "rollout_encoder.layers." + block + ".self_attention_";
    EXPECT_TRUE(std::any_of(npys.begin(), npys.end(), [&](const std::string& f) {
      return f.rfind(prefix, 0) == 0;
    })) << prefix;
  }
  r = test::run_cnnviz({"attention-grad", "-q", "-m", vit, "-o", out, "--counterfactual", "--class",
                        "2", "--score", "probability", image});
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // Usage errors: exit 2.
  r = test::run_cnnviz({"attention", "-m", vit, "-o", out, "--head", "2", image});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--head 2"), std::string::npos) << r.err;
  for (const std::string ratio : {"1", "-0.1", "1.5"}) {
    r = test::run_cnnviz({"rollout", "-m", vit, "-o", out, "--discard-ratio", ratio, image});
    EXPECT_EQ(r.exit_code, 2) << ratio << ": " << r.err;
    EXPECT_NE(r.err.find("--discard-ratio"), std::string::npos) << r.err;
  }
  // Models without attention over all tokens: exit 5, one line naming the method.
  const std::string swin = test::test_models_dir() + "/tiny_swin.pt";
  for (const std::string method : {"attention", "rollout", "attention-grad"}) {
    r = test::run_cnnviz({method, "-m", swin, "-o", out, image});
    EXPECT_EQ(r.exit_code, 5) << r.err;
    EXPECT_NE(r.err.find(method + ": layer 'features.1.0.attn' attends"), std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("attends within windows"), std::string::npos) << r.err;
    r = test::run_cnnviz({method, "-m", test::squeezenet_path(), "-o", out, image});
    EXPECT_EQ(r.exit_code, 5) << r.err;
    EXPECT_NE(r.err.find("has no attention"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace cnnviz
