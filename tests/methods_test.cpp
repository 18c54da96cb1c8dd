// Every method against tests/reference/methods_ref.py, an independent
// implementation with plain PyTorch autograd on the eager torchvision model
// (guided ReLUs by monkeypatching, Grad-CAM by module hooks), run on the same
// TorchScript file, image and thread count.
//
// Tolerance: max |cnnviz - reference| <= test::kMapRelTol (1e-4) * max |reference| for each
// map (1e-4 relative to the map's scale: both sides run the same float32
// kernels, but in different graphs whose reduction orders may differ).
#include "cnnviz/methods/methods.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cnnviz/core/runtime.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/layers.h"
#include "map_util.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

using test::expect_close;  // within test::kMapRelTol of the map's scale
using test::load;

struct Case {
  std::string arch;
  std::vector<std::string> single_layers;  // checked one at a time against --all-layers
  std::string nested;                      // a layer inside a block, or ""
  bool cam;
  bool relus = true;    // has ReLUs to guide
  bool relu6s = false;  // has ReLU6s to guide
  bool silu = false;    // has SiLUs (reported, never guided)
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.arch; }

std::string smooth_image(const test::TempDir& dir) { return test::smooth_image(dir, 7); }

class MethodsTest : public ::testing::TestWithParam<Case> {};

TEST_P(MethodsTest, MatchesTheAutogradReference) {
  const Case& c = GetParam();
  const std::string model_path = test::test_models_dir() + "/" + c.arch + ".pt";
  ASSERT_TRUE(fs::exists(model_path)) << model_path << ": run through ctest";
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = smooth_image(dir);
  std::vector<std::string> argv = {test::python(),
                                   test::source_dir() + "/tests/reference/methods_ref.py",
                                   model_path,
                                   image,
                                   dir.path(),
                                   "--all-layers",
                                   "--extra",
                                   "--threads",
                                   std::to_string(threads)};
  if (!c.nested.empty()) argv.insert(argv.end(), {"--layers", c.nested});
  if (c.cam) argv.push_back("--cam");
  test::RunResult r = test::run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  const int64_t cls = meta["class"].get<int64_t>();

  Model model = Model::load(model_path);
  at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess);
  expect_close(x, load(dir.file("input.npy")), "input");

  // Feature stages: discovered on both sides, independently; the metadata's
  // list (what --all-layers takes without a discovery pass) is the same.
  std::vector<std::string> layers = meta["discovered_layers"].get<std::vector<std::string>>();
  EXPECT_EQ(feature_stages(Engine::describe(model).layers), layers);
  EXPECT_EQ(feature_layers(model), layers);
  if (!c.nested.empty()) layers.push_back(c.nested);
  const std::vector<std::string> ref_layers = layers;  // what the reference's --extra saw
  if (c.cam) layers.push_back(kGlobalPoolInput);
  std::map<std::string, at::Tensor> all;
  {  // only one capture pass may be alive at a time
    Engine engine(model, layers);
    Pass pass = engine.run(x.unsqueeze(0));
    expect_close(pass.logits()[0], load(dir.file("logits.npy")), "logits");
    Capture capture(engine, pass, {cls});

    at::Tensor saliency = capture.input_gradient(Backprop::kPlain)[0];
    at::Tensor guided = capture.input_gradient(Backprop::kGuided)[0];
    at::Tensor deconv = capture.input_gradient(Backprop::kDeconv)[0];
    expect_close(saliency, load(dir.file("saliency.npy")), "saliency");
    expect_close(guided, load(dir.file("guided.npy")), "guided backprop");
    expect_close(deconv, load(dir.file("deconv.npy")), "deconvnet");
    const GraphReport& report = engine.report();
    EXPECT_EQ(report.guided_relus > 0, c.relus) << c.arch;
    EXPECT_EQ(report.guided_relu6s > 0, c.relu6s) << c.arch;
    EXPECT_EQ(report.unguided.count("aten::silu_") + report.unguided.count("aten::silu") > 0,
              c.silu)
        << c.arch;
    if (c.relus || c.relu6s) {
      EXPECT_FALSE(at::allclose(guided, saliency)) << "guided backprop equals the plain gradient";
    } else {  // nothing to guide: every mode is the true gradient
      EXPECT_TRUE(at::equal(guided, saliency));
    }
    expect_close(find_method("gradient-input").compute(capture)[0].value[0],
                 load(dir.file("gradxinput.npy")), "gradient x input");

    for (const MethodMap& m : find_method("gradcam").compute(capture)) {
      if (m.layer == kGlobalPoolInput) continue;
      all[m.layer] = m.value[0];
      expect_close(m.value[0], load(dir.file("gradcam_" + m.layer + ".npy")), "gradcam " + m.layer);
      // As a [C,h,w] map: the reference reshapes token and channels-last outputs by hand.
      expect_close(method_util::feature_map(capture, *capture.layer_index(m.layer))[0],
                   load(dir.file("activation_" + m.layer + ".npy")), "activation " + m.layer);
    }
    if (c.cam) {
      std::vector<MethodMap> cam = find_method("cam").compute(capture);
      ASSERT_EQ(cam.size(), 1u);
      expect_close(cam[0].value[0], load(dir.file("cam.npy")), "cam");
    }
  }

  {  // The other layer methods, over the layers the reference's --extra saw.
    Engine engine(model, ref_layers);
    Pass pass = engine.run(x.unsqueeze(0));
    Capture capture(engine, pass, {cls});
    const std::vector<std::pair<std::string, std::string>> extra = {{"gradcam++", "gradcampp_"},
                                                                    {"xgradcam", "xgradcam_"},
                                                                    {"layercam", "layercam_"},
                                                                    {"hirescam", "hirescam_"},
                                                                    {"eigencam", "eigencam_"}};
    for (const auto& [method, prefix] : extra) {
      std::vector<MethodMap> maps = find_method(method).compute(capture);
      ASSERT_GE(maps.size(), ref_layers.size()) << method;
      for (const MethodMap& m : maps) {
        const at::Tensor want = load(dir.file(prefix + m.layer + ".npy"));
        if (method == "hirescam") {
          // sum_k g_k A_k cancels where gradients change sign (GELU networks with random
          // weights: maps 1e-3 of their terms), so float32 rounding is relative to the
          // terms, sum_k |g_k A_k|, not to the map.
          const at::Tensor terms = (load(dir.file("grad_" + m.layer + ".npy")) *
                                    load(dir.file("activation_" + m.layer + ".npy")))
                                       .abs()
                                       .sum(0);
          const double scale = terms.max().item<double>();
          const double diff = (m.value[0] - want).abs().max().item<double>();
          EXPECT_LE(diff, test::kMapRelTol * scale + 1e-12)
              << "hirescam " << m.layer << ": max diff " << diff << ", terms' scale " << scale;
          continue;
        }
        if (method == "xgradcam") {
          // w_k = sum g_k A_k / sum A_k: where a channel's activations (signed, as after a
          // LayerNorm) nearly cancel, float32 rounding of sum A_k is amplified by
          // cond_k = sum |A_k| / |sum A_k|. Bound: sum_k (|w_k| cond_k + sum |g_k A_k| /
          // |sum A_k|) |A_k|, the map's scale when every channel is well conditioned.
          const at::Tensor a = load(dir.file("activation_" + m.layer + ".npy")).to(at::kDouble);
          const at::Tensor g = load(dir.file("grad_" + m.layer + ".npy")).to(at::kDouble);
          const at::Tensor s = a.sum({1, 2}).abs().clamp_min(1e-30);
          const at::Tensor w = (g * a).sum({1, 2}).abs() / s;
          const at::Tensor cond = a.abs().sum({1, 2}) / s;
          const at::Tensor k = w * cond + (g * a).abs().sum({1, 2}) / s;
          const double scale = std::max(want.abs().max().item<double>(),
                                        (k.view({-1, 1, 1}) * a.abs()).sum(0).max().item<double>());
          const double diff = (m.value[0] - want).abs().max().item<double>();
          EXPECT_LE(diff, test::kMapRelTol * scale + 1e-12)
              << "xgradcam " << m.layer << ": max diff " << diff << ", conditioned scale " << scale;
          continue;
        }
        expect_close(m.value[0], want, method + " " + m.layer);
      }
    }
  }

  // A single-layer engine gives what the all-layers pass gave at that layer.
  for (const std::string& layer : c.single_layers) {
    Engine one(model, {layer});
    Pass p = one.run(x.unsqueeze(0));
    Capture single(one, p, {cls});
    expect_close(find_method("gradcam").compute(single)[0].value[0], all.at(layer),
                 "single-layer gradcam " + layer);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Model, MethodsTest,
    ::testing::Values(
        Case{"squeezenet1_1",
             {"features.0", "features.6", "features.12"},
             "features.3.expand3x3",
             true},
        Case{"alexnet", {"features.0", "features.5", "features.11"}, "", false},
        Case{"densenet121",
             {"features.conv0", "features.denseblock2", "features.norm5"},
             "features.denseblock2.denselayer3",
             true},
        Case{"vgg16", {"features.0", "features.15", "features.29"}, "", false},
        Case{"resnet50", {"conv1", "layer2", "layer4"}, "layer3.2.conv2", true},
        Case{"googlenet", {"conv1", "inception4a", "inception5b"}, "inception4c.branch2.1", true},
        Case{"mobilenet_v2",
             {"features.0", "features.9", "features.18"},
             "features.5.conv.1",
             true,
             false,
             true},
        Case{"efficientnet_b0",
             {"features.0", "features.4", "features.8"},
             "features.3.0.block.1",
             true,
             false,
             false,
             true},
        // Token sequences [N,1+16,16] (tests/reference/tiny_models.py) and channels-last
        // [N,h,w,C] maps: the reshape rule against the reference's hand-written reshapes, on
        // torchvision's own VisionTransformer and SwinTransformer code. GELUs only: nothing
        // to guide.
        Case{"tiny_vit",
             {"encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"},
             "conv_proj",
             false,
             false},
        Case{"tiny_swin", {"features.1", "features.3"}, "features.1.0", false, false}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.arch; });

// The full-size backbones (`scripts/test.sh --backbones`; vit_b_16 alone is 330 MiB, so
// not in CI): token sequences, channels-last stages, a ModuleList of stages (maxvit_t), a
// 299x299 input (inception_v3). GELU (and MaxViT's SiLU) stay unguided.
INSTANTIATE_TEST_SUITE_P(
    Backbone, MethodsTest,
    ::testing::Values(Case{"vit_b_16",
                           {"encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_11"},
                           "",
                           false,
                           false},
                      Case{"swin_t", {"features.1", "features.7"}, "features.5.3", false, false},
                      Case{"convnext_tiny", {"features.1", "features.7"}, "", false, false},
                      Case{"regnet_y_400mf",
                           {"trunk_output.block1", "trunk_output.block4"},
                           "trunk_output.block3.block3-2",
                           false},
                      Case{"inception_v3", {"Conv2d_1a_3x3", "Mixed_7c"}, "Mixed_6b", false},
                      Case{"maxvit_t", {"stem", "blocks.3"}, "", false, false, false, true}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.arch; });

TEST(ModelMethodsErrorTest, RefusesWhatCannotBeComputed) {
  Model model = Model::load(test::test_models_dir() + "/alexnet.pt");
  test::expect_error([&] { Engine(model, {kGlobalPoolInput}); }, ErrorCode::kUnsupported,
                     "no global average pooling");
  Engine engine(model, {"classifier.1"});
  Pass pass = engine.run(at::zeros({1, 3, 224, 224}));
  Capture capture(engine, pass, {3});
  test::expect_error([&] { find_method("gradcam").compute(capture); }, ErrorCode::kUnsupported,
                     "outputs [1, 4096]: not a feature map");
  test::expect_error([&] { Capture(engine, pass, {1000}).input_gradient(Backprop::kPlain); },
                     ErrorCode::kUsage, "class 1000: out of range");
  test::expect_error([] { find_method("lime"); }, ErrorCode::kUsage, "unknown method 'lime'");
}

}  // namespace
}  // namespace cnnviz
