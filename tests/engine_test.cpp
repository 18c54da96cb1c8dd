#include "cnnviz/core/engine.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include "test_util.h"

namespace cnnviz {
namespace {

// A per-channel scale by (2, -1, 0.5): a convolution small enough to follow.
torch::jit::Module scale_module() {
  torch::jit::Module scale("Scale");
  scale.register_parameter("w", at::tensor({2.0f, -1.0f, 0.5f}).view({1, 3, 1, 1}), false);
  scale.define("def forward(self, x):\n  return x * self.w\n");
  return scale;
}

// Saves `net` in `dir` as NAME.pt and loads it as cnnviz does.
Model save_and_load(const torch::jit::Module& net, const test::TempDir& dir,
                    const std::string& name) {
  net.save(dir.file(name + ".pt"));
  return Model::load(dir.file(name + ".pt"));
}

// A TorchScript model built here: conv-like scale, in-place ReLU, a module
// used twice, and a relu called directly in forward. Small enough to reason about.
std::string tiny_model(const test::TempDir& dir) {
  torch::jit::Module scale = scale_module();
  torch::jit::Module relu("InplaceRelu");
  relu.define("def forward(self, x):\n  return torch.relu_(x)\n");
  torch::jit::Module net("Tiny");
  net.register_module("scale", scale);
  net.register_module("act", relu);
  net.define(
      "def forward(self, x):\n"
      "  y = self.act.forward(self.scale.forward(x))\n"
      "  z = self.act.forward(y - 0.25)\n"
      "  h = torch.relu(z.mean(dim=[2, 3]))\n"
      "  return torch.cat([h, -h], 1)\n");
  std::string path = dir.file("tiny.pt");
  net.save(path);
  return path;
}

TEST(EngineUnitTest, NearMatchesRankByEditDistance) {
  std::vector<std::string> paths = {"features.0", "features.9", "features.12", "classifier.1"};
  auto m = near_matches("features.99", paths, 2);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], "features.9");
}

TEST(EngineUnitTest, RecordsTheTrueOutputBeforeAnInPlaceRelu) {
  test::TempDir dir;
  Model model = Model::load(tiny_model(dir));
  Engine engine(model, {"scale"});
  EXPECT_EQ(engine.report().guided_relus, 3);  // two calls of `act`, one F.relu
  at::Tensor x = at::randn({2, 3, 4, 4});
  Pass pass = engine.run(x);
  at::Tensor a = pass.activation(0);
  // The scale module's output has negative values: the in-place ReLU that
  // follows must not have rectified the recorded tensor.
  EXPECT_TRUE(at::allclose(a, x * at::tensor({2.0f, -1.0f, 0.5f}).view({1, 3, 1, 1})));
  EXPECT_LT(a.min().item<float>(), 0.0f);
  EXPECT_TRUE(at::allclose(pass.logits(), model.logits(x), 1e-5, 1e-6));
}

// Taps copy a layer's output only where the graph writes to it in place
// (an in-place ReLU becomes cnnviz::relu, out of place, so none is needed in
// tiny_model); where something does write (here through a view), the
// recorded output and the gradients must still be exact.
TEST(EngineUnitTest, TapsCopyOnlyWhereTheGraphWritesInPlace) {
  test::TempDir dir;
  Model tiny = Model::load(tiny_model(dir));
  EXPECT_EQ(Engine(tiny, {"scale", "act"}).report().copied_taps, 0);

  torch::jit::Module net("Writer");
  net.register_module("scale", scale_module());
  net.register_module("other", scale_module());
  net.define(
      "def forward(self, x):\n"
      "  y = self.scale.forward(x)\n"
      "  y.view(-1).mul_(3.0)\n"
      "  y.add_(1.0)\n"
      "  z = self.other.forward(y)\n"
      "  return (z * z).mean(dim=[2, 3])\n");
  Model model = save_and_load(net, dir, "writer");
  Engine engine(model, {"scale", "other"});
  EXPECT_EQ(engine.report().copied_taps, 1);  // "scale"'s; "other" is read only
  at::manual_seed(5);
  at::Tensor x = at::randn({2, 3, 4, 4});
  Pass pass = engine.run(x);
  const at::Tensor w = at::tensor({2.0f, -1.0f, 0.5f}).view({1, 3, 1, 1});
  EXPECT_TRUE(at::allclose(pass.activation(0), x * w));
  EXPECT_TRUE(at::allclose(pass.activation(1), (x * w * 3 + 1) * w));
  at::Tensor grad = pass.backward({1, 2}, Backprop::kPlain);
  at::Tensor xr = x.clone().requires_grad_(true);
  at::Tensor z = (xr * w * 3 + 1) * w;
  at::Tensor out = (z * z).mean({2, 3});
  (out.select(1, 1)[0] + out.select(1, 2)[1]).backward();
  EXPECT_TRUE(at::allclose(grad, xr.grad(), 1e-5, 1e-7));
}

TEST(EngineUnitTest, ModesChangeOnlyTheReluBackward) {
  test::TempDir dir;
  Model model = Model::load(tiny_model(dir));
  Engine engine(model, {"scale"});
  at::manual_seed(3);
  at::Tensor x = at::randn({1, 3, 4, 4});
  Pass pass = engine.run(x);
  // Output 4 is -h[1] (h has 3 channels): its gradient is -1 at the last ReLU.
  at::Tensor plain = pass.backward({4}, Backprop::kPlain);
  at::Tensor grad_scale = pass.gradient(0);
  at::Tensor guided = pass.backward({4}, Backprop::kGuided);
  at::Tensor deconv = pass.backward({4}, Backprop::kDeconv);
  at::Tensor guided_positive = pass.backward({1}, Backprop::kGuided);
  // Compare the plain gradient with autograd on the same function.
  at::Tensor xr = x.clone().requires_grad_(true);
  at::Tensor y = at::relu(xr * at::tensor({2.0f, -1.0f, 0.5f}).view({1, 3, 1, 1}));
  at::Tensor z = at::relu(y - 0.25);
  at::Tensor h = at::relu(z.mean({2, 3}));
  at::Tensor out = at::cat({h, -h}, 1);
  out.select(1, 4).sum().backward();
  EXPECT_TRUE(at::allclose(plain, xr.grad(), 1e-5, 1e-7));
  // Guided and deconvnet clamp that negative gradient at the last ReLU: zeros.
  EXPECT_GT(plain.abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(guided.abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(deconv.abs().sum().item<float>(), 0.0f);
  // Output 1 is +h[1], which depends on input channel 1 only.
  EXPECT_GT(guided_positive.abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(guided_positive.select(1, 0).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(grad_scale.sizes(), x.sizes());
}

TEST(EngineUnitTest, LayersThatRunTwiceAreRefused) {
  test::TempDir dir;
  Model model = Model::load(tiny_model(dir));
  Engine engine(model, {"act"});
  {
    Pass pass = engine.run(at::randn({1, 3, 4, 4}));
    test::expect_error([&] { pass.activation(0); }, ErrorCode::kUnsupported, "runs 2 times");
    test::expect_error([&] { Engine::describe(model); }, ErrorCode::kRuntime, "still alive");
  }
  auto layers = Engine::describe(model).layers;
  ASSERT_EQ(layers.size(), 3u);
  EXPECT_EQ(layers[0].path, "scale");
  EXPECT_EQ(layers[0].type, "Scale");
  EXPECT_EQ(layers[0].shape, (std::vector<int64_t>{1, 3, 224, 224}));
  EXPECT_EQ(layers[1].calls, 2);
  // The mean over H and W in forward is found as the global pooling.
  EXPECT_EQ(layers[2].path, kGlobalPoolInput);
}

TEST(EngineUnitTest, ActivationsThatCannotBeGuidedAreReported) {
  test::TempDir dir;
  torch::jit::Module net("Six");
  net.define(
      "def forward(self, x):\n"
      "  y = torch.hardtanh(x, 0.0, 6.0)\n"
      "  w = torch.hardtanh(y, -1.0, 1.0)\n"
      "  z = w * torch.sigmoid(w)\n"
      "  return torch.relu(z).mean(dim=[2, 3])\n");
  Model model = save_and_load(net, dir, "six");
  Engine engine(model, {});
  EXPECT_EQ(engine.report().guided_relus, 1);
  EXPECT_EQ(engine.report().guided_relu6s, 1);  // hardtanh(0, 6) is nn.ReLU6
  EXPECT_EQ(engine.report().unguided.at("aten::hardtanh"), 1);
}

// ReLU6's three backward rules: the gate is open where 0 < y < 6.
TEST(EngineUnitTest, ReLU6IsGuidedLikeReLU) {
  test::TempDir dir;
  torch::jit::Module net("Clip");
  net.define(
      "def forward(self, x):\n"
      "  y = torch.hardtanh(x, 0.0, 6.0)\n"
      "  s = y.sum(dim=[1, 2, 3])\n"
      "  return torch.stack([s, -s], 1)\n");
  Model model = save_and_load(net, dir, "clip");
  Engine engine(model, {});
  Pass pass = engine.run(at::tensor({-1.f, 3.f, 7.f, 5.f}).view({1, 1, 2, 2}));
  auto grad = [&](int64_t cls, Backprop mode) { return pass.backward({cls}, mode).flatten(); };
  EXPECT_TRUE(at::equal(grad(0, Backprop::kPlain), at::tensor({0.f, 1.f, 0.f, 1.f})));
  EXPECT_TRUE(at::equal(grad(0, Backprop::kGuided), at::tensor({0.f, 1.f, 0.f, 1.f})));
  EXPECT_TRUE(at::equal(grad(0, Backprop::kDeconv), at::tensor({1.f, 1.f, 1.f, 1.f})));
  EXPECT_TRUE(at::equal(grad(1, Backprop::kPlain), at::tensor({0.f, -1.f, 0.f, -1.f})));
  EXPECT_TRUE(at::equal(grad(1, Backprop::kGuided), at::zeros({4})));
  EXPECT_TRUE(at::equal(grad(1, Backprop::kDeconv), at::zeros({4})));
}

TEST(EngineUnitTest, UnknownLayerIsUnsupportedWithHint) {
  test::TempDir dir;
  Model model = Model::load(tiny_model(dir));
  test::expect_error([&] { Engine(model, {"scal"}); }, ErrorCode::kUnsupported,
                     "layer 'scal' not found in model 'tiny' (nearest: scale");
}

}  // namespace
}  // namespace cnnviz
