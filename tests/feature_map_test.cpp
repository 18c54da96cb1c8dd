// The reshape rule that reads layer outputs as [N,C,h,w] maps, and stage
// discovery over module trees with token and channels-last layers.
#include "cnnviz/core/feature_map.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "cnnviz/core/engine.h"
#include "test_util.h"

namespace cnnviz {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (int64_t d : shape) s += (s.empty() ? "" : "x") + std::to_string(d);
  return s;
}

TEST(FeatureMapUnitTest, InfersTheLayoutFromTheShapeAlone) {
  struct Expect {
    std::vector<int64_t> shape;
    Layout layout;
    int64_t c, h, w;
  };
  const std::vector<Expect> maps = {
      {{1, 96, 56, 56}, Layout::kChannelsFirst, 96, 56, 56},   // convolution
      {{2, 56, 56, 96}, Layout::kChannelsLast, 96, 56, 56},    // Swin stage
      {{1, 7, 7, 768}, Layout::kChannelsLast, 768, 7, 7},      // Swin's last stage
      {{1, 8, 8, 8}, Layout::kChannelsFirst, 8, 8, 8},         // ambiguous: as is
      {{1, 197, 768}, Layout::kClassAndTokens, 768, 14, 14},   // ViT-B/16 block
      {{1, 196, 768}, Layout::kTokens, 768, 14, 14},           // no class token
      {{1, 50, 768}, Layout::kClassAndTokens, 768, 7, 7},      // ViT-B/32
      {{3, 5, 16}, Layout::kClassAndTokens, 16, 2, 2},         // smallest grid with a class token
      {{1, 64, 20, 30}, Layout::kChannelsFirst, 64, 20, 30}};  // not square: as is
  for (const Expect& e : maps) {
    std::optional<FeatureLayout> l = infer_layout(e.shape);
    ASSERT_TRUE(l.has_value()) << shape_text(e.shape);
    EXPECT_EQ(l->layout, e.layout) << shape_text(e.shape);
    EXPECT_EQ(l->channels, e.c);
    EXPECT_EQ(l->height, e.h);
    EXPECT_EQ(l->width, e.w);
  }
  for (const std::vector<int64_t>& none : std::vector<std::vector<int64_t>>{{1, 4096},
                                                                            {1, 512, 1, 1},
                                                                            {1, 51, 768},
                                                                            {1, 1, 768},
                                                                            {1, 2, 768},
                                                                            {4},
                                                                            {1, 2, 3, 4, 5}}) {
    EXPECT_FALSE(infer_layout(none).has_value()) << shape_text(none);
  }
  EXPECT_EQ(infer_layout({1, 197, 768})->describe(), "class token dropped, tokens as a 14x14 grid");
}

TEST(FeatureMapUnitTest, ReshapesEveryLayoutToChannelsFirst) {
  // The value of channel c at (i, j) is 100c + 10i + j, in every layout.
  const int64_t n = 2, c = 3, h = 4, w = 4;
  at::Tensor nchw = at::zeros({n, c, h, w});
  for (int64_t k = 0; k < c; ++k) {
    for (int64_t i = 0; i < h; ++i) {
      for (int64_t j = 0; j < w; ++j) nchw.select(1, k)[0][i][j] = 100 * k + 10 * i + j;
    }
  }
  nchw[1] = nchw[0] + 1000;
  at::Tensor nhwc = nchw.permute({0, 2, 3, 1}).contiguous();
  at::Tensor tokens = nhwc.reshape({n, h * w, c});
  at::Tensor with_class = at::cat({at::full({n, 1, c}, -7.0f), tokens}, 1);
  EXPECT_TRUE(at::equal(to_feature_map(nchw, "a", "m"), nchw));
  EXPECT_TRUE(at::equal(to_feature_map(nhwc, "a", "m"), nchw));
  EXPECT_TRUE(at::equal(to_feature_map(tokens, "a", "m"), nchw));
  EXPECT_TRUE(at::equal(to_feature_map(with_class, "a", "m"), nchw));
}

TEST(FeatureMapUnitTest, SaysWhyAnOutputIsNotAMap) {
  test::expect_error(
      [] {
        to_feature_map(at::zeros({1, 51, 8}), "encoder.ln", "vitx");
      },
      ErrorCode::kUnsupported,
      "layer 'encoder.ln' outputs [1, 51, 8]: 51 tokens do not form a square grid, "
      "with or without a class token; pick another layer with --layer (`cnnviz "
      "layers -m vitx` shows how each layer is read)");
  test::expect_error(
      [] {
        to_feature_map(at::zeros({1, 10}), "head", "m");
      },
      ErrorCode::kUnsupported, "outputs [1, 10]: not a feature map");
  test::expect_error(
      [] {
        to_feature_map(at::zeros({1, 8, 1, 1}), "pool", "m");
      },
      ErrorCode::kUnsupported, "a single position");
}

LayerInfo layer(const std::string& path, std::vector<int64_t> shape, int calls = 1) {
  return LayerInfo{path, "M", std::move(shape), calls};
}

TEST(FeatureMapUnitTest, StagesOfTokenAndChannelsLastModels) {
  // ViT: the blocks are token sequences, reached through `encoder` and `encoder.layers`.
  std::vector<LayerInfo> vit = {
      layer("conv_proj", {1, 768, 14, 14}), layer("encoder", {1, 197, 768}),
      layer("encoder.dropout", {1, 197, 768}), layer("encoder.layers", {1, 197, 768})};
  for (int k = 0; k < 3; ++k) {
    const std::string b = "encoder.layers.encoder_layer_" + std::to_string(k);
    vit.push_back(layer(b, {1, 197, 768}));
    vit.push_back(layer(b + ".ln_1", {1, 197, 768}));
    vit.push_back(layer(b + ".mlp", {1, 197, 768}));
  }
  vit.push_back(layer("encoder.ln", {1, 197, 768}));
  vit.push_back(layer("heads", {1, 1000}));
  EXPECT_EQ(feature_stages(vit), (std::vector<std::string>{"encoder.layers.encoder_layer_0",
                                                           "encoder.layers.encoder_layer_1",
                                                           "encoder.layers.encoder_layer_2"}));
  // MaxViT: `blocks` is a ModuleList, never called itself: see-through.
  std::vector<LayerInfo> maxvit = {
      layer("stem", {1, 64, 112, 112}),    layer("stem.0", {1, 64, 112, 112}),
      layer("blocks.0", {1, 64, 56, 56}),  layer("blocks.0.layers.0", {1, 64, 56, 56}),
      layer("blocks.1", {1, 128, 28, 28}), layer("blocks.1.layers.0", {1, 128, 28, 28}),
      layer("classifier", {1, 1000})};
  EXPECT_EQ(feature_stages(maxvit), (std::vector<std::string>{"stem", "blocks.0", "blocks.1"}));
  // Swin: channels-last stages under `features`.
  std::vector<LayerInfo> swin = {
      layer("features", {1, 7, 7, 768}),      layer("features.0", {1, 56, 56, 96}),
      layer("features.0.0", {1, 96, 56, 56}), layer("features.1", {1, 56, 56, 96}),
      layer("features.1.0", {1, 56, 56, 96}), layer("norm", {1, 7, 7, 768}),
      layer("permute", {1, 768, 7, 7}),       layer("avgpool", {1, 768, 1, 1})};
  EXPECT_EQ(feature_stages(swin), (std::vector<std::string>{"features.0", "features.1"}));
  // RegNet: a shallow stem beside the trunk; the trunk's blocks are the stages.
  std::vector<LayerInfo> regnet = {layer("stem", {1, 32, 112, 112}),
                                   layer("stem.0", {1, 32, 112, 112}),
                                   layer("stem.1", {1, 32, 112, 112}),
                                   layer("trunk_output", {1, 440, 7, 7}),
                                   layer("trunk_output.block1", {1, 48, 56, 56}),
                                   layer("trunk_output.block1.block1-0", {1, 48, 56, 56}),
                                   layer("trunk_output.block1.block1-0.f", {1, 48, 56, 56}),
                                   layer("trunk_output.block2", {1, 104, 28, 28}),
                                   layer("trunk_output.block2.block2-0", {1, 104, 28, 28}),
                                   layer("trunk_output.block2.block2-0.f", {1, 104, 28, 28}),
                                   layer("avgpool", {1, 440, 1, 1})};
  EXPECT_EQ(feature_stages(regnet),
            (std::vector<std::string>{"trunk_output.block1", "trunk_output.block2"}));
}

}  // namespace
}  // namespace cnnviz
