#include "cnnviz/core/model.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <cstdlib>
#include <filesystem>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/model_store.h"
#include "test_util.h"

namespace cnnviz {
namespace {

namespace fs = std::filesystem;

using test::nested_arrays;

// --- metadata parsing (unit) ---

TEST(MetadataTest, ParsesEveryField) {
  ModelInfo info = parse_model_info(R"({
      "cnnviz_format": 1, "name": "tiny", "arch": "vgg16",
      "weights": {"kind": "random", "source": "seed 0"},
      "num_classes": 2, "labels": ["cat", "dog"],
      "preprocess": {"resize": 256, "crop": 224, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1]},
      "feature_layers": ["features.0", "features.1"], "gradcam_layer": "features.1"})",
                                    "m.pt");
  EXPECT_TRUE(info.has_metadata);
  EXPECT_EQ(info.name, "tiny");
  EXPECT_EQ(info.weights_kind, WeightsKind::kRandom);
  EXPECT_EQ(info.label(1), "dog");
  EXPECT_EQ(info.label(7), "class 7");
  EXPECT_EQ(info.preprocess.resize, 256);
  EXPECT_FLOAT_EQ(info.preprocess.std[1], 0.5f);
  EXPECT_EQ(info.feature_layers.size(), 2u);
  EXPECT_EQ(info.default_layer, "features.1");
}

// The default layer's key is "default_layer"; exports made before the rename
// call it "gradcam_layer", and the new name wins when both are there.
TEST(MetadataTest, ReadsTheDefaultLayerUnderEitherName) {
  const std::string head = R"({"cnnviz_format": 1, "name": "m", "arch": "vgg16", )";
  EXPECT_EQ(parse_model_info(head + R"("default_layer": "features.3"})", "m.pt").default_layer,
            "features.3");
  EXPECT_EQ(parse_model_info(head + R"("gradcam_layer": "features.2"})", "m.pt").default_layer,
            "features.2");
  EXPECT_EQ(parse_model_info(head + R"("default_layer": "a", "gradcam_layer": "b"})", "m.pt")
                .default_layer,
            "a");
}

// A torchvision detector's fields: its resize cap, NMS IoU and multi-label
// decoding, each checked.
TEST(MetadataTest, ReadsADetectorsDecodingDefaults) {
  const std::string head =
      R"({"cnnviz_format": 1, "name": "m", "task": "detect", "layout": "yolov5", )";
  const ModelInfo info = parse_model_info(
      head + R"("nms_iou": 0.6, "multi_label": true,
                "preprocess": {"resize": 800, "max_size": 1333, "crop": 0}})",
      "m.pt");
  EXPECT_DOUBLE_EQ(info.nms_iou, 0.6);
  EXPECT_TRUE(info.multi_label);
  EXPECT_EQ(info.preprocess.max_size, 1333);
  EXPECT_EQ(info.preprocess.crop, 0);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {head + R"("nms_iou": 1.5})", "nms_iou: must be a number in (0, 1]"},
      {head + R"("multi_label": 1})", "multi_label: must be true or false"},
      {R"({"cnnviz_format": 1, "name": "m", "nms_iou": 0.5})", "nms_iou: applies to detectors"},
      {head + R"("preprocess": {"resize": 800, "max_size": 600, "crop": 0}})",
       "preprocess.max_size: 600 is smaller than resize (800)"},
      {head + R"("preprocess": {"resize": 800, "max_size": 1333, "crop": 224}})",
       "preprocess.max_size: applies without crop and letterbox"}};
  for (const auto& [text, message] : bad) {
    test::expect_error([&] { parse_model_info(text, "m.pt"); }, ErrorCode::kModel, message);
  }
}

TEST(MetadataTest, RejectsBadMetadataWithOneLine) {
  test::expect_error([] { parse_model_info("{not json", "m.pt"); }, ErrorCode::kModel,
                     "model 'm.pt': invalid cnnviz.json");
  test::expect_error([] { parse_model_info(R"({"cnnviz_format": 9})", "m.pt"); }, ErrorCode::kModel,
                     "cnnviz_format 9");
  test::expect_error(
      [] {
        parse_model_info(R"({"cnnviz_format": 1, "num_classes": 3, "labels": ["a"]})", "m.pt");
      },
      ErrorCode::kModel, "number of labels");
  test::expect_error(
      [] {
        parse_model_info(
            R"({"cnnviz_format": 1, "preprocess": {"resize": 100, "crop": 224,
                "mean": [0,0,0], "std": [1,1,1]}})",
            "m.pt");
      },
      ErrorCode::kModel, "crop <= resize");
  test::expect_error(
      [] {
        parse_model_info(R"({"cnnviz_format": 1, "preprocess": {"mean": [0,0], "std": [1,1,1]}})",
                         "m.pt");
      },
      ErrorCode::kModel, "mean");
  test::expect_error([] { parse_model_info(R"({"cnnviz_format": 1, "labels": 5})", "m.pt"); },
                     ErrorCode::kModel, "invalid cnnviz.json");
}

TEST(MetadataTest, MetadataIsValidatedFieldByField) {
  const std::string good =
      R"({"cnnviz_format": 1, "labels": ["a", "b"], "num_classes": 2,
          "preprocess": {"resize": 256, "crop": 224, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}})";
  EXPECT_NO_THROW(parse_model_info(good, "m.pt"));
  const ModelInfo whole = parse_model_info(
      R"({"cnnviz_format": 1, "preprocess": {"resize": 520, "crop": 0}})", "m.pt");
  EXPECT_EQ(whole.preprocess.crop, 0);  // no crop
  EXPECT_EQ(whole.preprocess.resize, 520);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"cnnviz_format": 1, "preprocess": {"crop": 20000, "resize": 20000}})",
       "preprocess.crop: 20000 is out of range (0 to 4096)"},
      {R"({"cnnviz_format": 1, "preprocess": {"resize": 100000}})", "preprocess.resize"},
      {R"({"cnnviz_format": 1, "labels": ["a", 3]})", "labels[1]: must be a string"},
      {R"({"cnnviz_format": 1, "labels": "abc"})", "labels: must be a list of strings"},
      {R"({"cnnviz_format": 1, "num_classes": -4})", "num_classes: -4 is out of range"},
      {R"({"cnnviz_format": 1, "num_classes": 1e400})", "not valid JSON"},
      {R"({"cnnviz_format": 1, "preprocess": {"std": [1, 0, 1]}})", "preprocess.std"},
      {R"({"cnnviz_format": 1, "preprocess": {"mean": [1, 2]}})", "preprocess.mean"},
      {R"({"cnnviz_format": 1, "name": ")" + std::string(5000, 'x') + R"("})",
       "name: longer than 4096 bytes"},
      {R"({"cnnviz_format": 1, "weights": [1]})", "weights: must be an object"},
      {R"({"cnnviz_format": 1, "gradcam_layer": 7})", "gradcam_layer: must be a string"},
      {R"({"cnnviz_format": 1, "x": )" + nested_arrays(100) + "}",
       "not valid JSON (nested deeper than 64 levels)"},
      {"[1, 2]", "not a JSON object"},
  };
  for (const auto& [text, problem] : bad) {
    SCOPED_TRACE(text.substr(0, 80));
    test::expect_error([&] { parse_model_info(text, "m.pt"); }, ErrorCode::kModel,
                       "model 'm.pt': invalid cnnviz.json: " + problem);
  }
  test::expect_error([] { parse_model_info(std::string(17 << 20, ' '), "m.pt"); },
                     ErrorCode::kModel, "larger than 16 MiB");
}

TEST(MetadataTest, LabelCountsAreCheckedAgainstTheOutputs) {
  ModelInfo info;
  info.path = "m.pt";
  info.labels = {"a", "b", "c"};
  EXPECT_NO_THROW(check_output_classes(info, 3));
  test::expect_error([&] { check_output_classes(info, 1000); }, ErrorCode::kModel,
                     "model 'm.pt': outputs 1000 classes but has 3 labels");
  info.labels.clear();
  info.num_classes = 5;
  test::expect_error([&] { check_output_classes(info, 1000); }, ErrorCode::kModel, "num_classes 5");
}

// --- model resolution (unit) ---

TEST(StoreTest, ResolvesNamesInTheModelsDirectory) {
  test::TempDir dir;
  test::write_text(dir.file("alexnet.pt"), "x");
  test::write_text(dir.file("vgg16.pt"), "x");
  test::write_text(dir.file("notes.txt"), "x");
  EXPECT_EQ(list_models(dir.path()), (std::vector<std::string>{"alexnet", "vgg16"}));
  EXPECT_EQ(resolve_model("vgg16", dir.path()), dir.file("vgg16.pt"));
  EXPECT_EQ(resolve_model(dir.file("alexnet.pt"), "/elsewhere"), dir.file("alexnet.pt"));
  EXPECT_TRUE(list_models(dir.file("absent")).empty());
}

TEST(StoreTest, SearchPathOrderAndShadowing) {
  test::TempDir dir;
  fs::create_directories(dir.file("chosen"));
  fs::create_directories(dir.file("data/cnnviz/models"));
  test::write_text(dir.file("chosen/vgg16.pt"), "x");
  test::write_text(dir.file("data/cnnviz/models/vgg16.pt"), "x");
  test::write_text(dir.file("data/cnnviz/models/alexnet.pt"), "x");
  const char* old = std::getenv("XDG_DATA_HOME");
  const std::string saved = old ? old : "";
  setenv("XDG_DATA_HOME", dir.file("data").c_str(), 1);
  const std::vector<ModelDir> path = model_search_path({dir.file("chosen"), "--models-dir"});
  // The test binary is not the build tree's cnnviz: the prefix beside it
  // comes third, the source tree's models/ not at all.
  ASSERT_EQ(path.size(), 3u);
  EXPECT_EQ(path[0].path, dir.file("chosen"));
  EXPECT_EQ(path[1].path, dir.file("data/cnnviz/models"));
  EXPECT_EQ(path[1].source, "user data directory");
  EXPECT_EQ(path[2].source, "installation prefix");
  EXPECT_NE(path[2].path.find("share/cnnviz/models"), std::string::npos);
  EXPECT_EQ(resolve_model("vgg16", path), dir.file("chosen/vgg16.pt"));
  EXPECT_EQ(resolve_model("alexnet", path), dir.file("data/cnnviz/models/alexnet.pt"));
  const std::vector<ModelEntry> found = find_models(path);
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found[0].name, "vgg16");
  EXPECT_FALSE(found[0].shadowed);
  EXPECT_TRUE(found[2].shadowed);  // data/.../vgg16.pt, after alexnet
  EXPECT_NE(found[0].problem.find("not a TorchScript archive"), std::string::npos);
  // A relative XDG_DATA_HOME is invalid (XDG Base Directory): $HOME's default.
  setenv("XDG_DATA_HOME", "relative", 1);
  EXPECT_EQ(user_models_dir(), std::string(std::getenv("HOME")) + "/.local/share/cnnviz/models");
  if (old) {
    setenv("XDG_DATA_HOME", saved.c_str(), 1);
  } else {
    unsetenv("XDG_DATA_HOME");
  }
}

TEST(StoreTest, MissingModelListsWhatExistsAndHowToExport) {
  test::TempDir dir;
  test::write_text(dir.file("alexnet.pt"), "x");
  test::expect_error([&] { resolve_model("densenet121", dir.path()); }, ErrorCode::kModel,
                     "available: alexnet; export it with: cnnviz-export densenet121, or "
                     "scripts/export_models.py densenet121 in the source tree)");
  test::expect_error([&] { resolve_model("nowhere/x.pt", dir.path()); }, ErrorCode::kModel,
                     "model file 'nowhere/x.pt': not found");
}

// --- loading real TorchScript files (model: needs the exported squeezenet1_1) ---

TEST(ModelTest, LoadsExportedModelWithMetadata) {
  Model model = Model::load(test::squeezenet_path());
  const ModelInfo& info = model.info();
  EXPECT_TRUE(info.has_metadata);
  EXPECT_EQ(info.arch, "squeezenet1_1");
  EXPECT_EQ(info.weights_kind, WeightsKind::kRandom);
  ASSERT_EQ(info.labels.size(), 1000u);
  EXPECT_EQ(info.labels[56], "king snake");
  EXPECT_EQ(info.preprocess.resize, 224);
  EXPECT_EQ(info.default_layer, "features.12");
  // Exports list the feature stages (so that --all-layers needs no discovery
  // pass), and the list is what discovery finds on the model itself.
  EXPECT_EQ(info.feature_layers, feature_stages(Engine::describe(model).layers));
  EXPECT_EQ(info.feature_layers.size(), 13u);
}

TEST(ModelTest, LogitsHaveOneRowPerImageAndMatchSingleImageRuns) {
  Model model = Model::load(test::squeezenet_path());
  at::manual_seed(0);
  at::Tensor batch = at::randn({3, 3, 224, 224});
  at::Tensor logits = model.logits(batch);
  ASSERT_EQ(logits.sizes(), at::IntArrayRef({3, 1000}));
  EXPECT_FALSE(logits.requires_grad());
  at::Tensor second = model.logits(batch.slice(0, 1, 2));
  EXPECT_TRUE(at::allclose(second[0], logits[1], 1e-4, 1e-5));
}

TEST(ModelTest, WrongInputIsARuntimeError) {
  Model model = Model::load(test::squeezenet_path());
  test::expect_error(
      [&] {
        model.logits(at::zeros({1, 5, 224, 224}));
      },
      ErrorCode::kRuntime, "forward pass failed");
}

TEST(ModelTest, CorruptOrForeignFilesAreModelErrors) {
  test::TempDir dir;
  test::write_text(dir.file("garbage.pt"), std::string(1000, 'x'));
  test::expect_error([&] { Model::load(dir.file("garbage.pt")); }, ErrorCode::kModel,
                     "cannot load model '" + dir.file("garbage.pt") + "': not a TorchScript");
  std::string bytes = test::read_text(test::squeezenet_path());
  test::write_text(dir.file("cut.pt"), bytes.substr(0, bytes.size() / 2));
  test::expect_error([&] { Model::load(dir.file("cut.pt")); }, ErrorCode::kModel,
                     "cannot load model");
  test::expect_error([&] { Model::load(dir.file("none.pt")); }, ErrorCode::kModel, "not found");
  test::expect_error([&] { Model::load(dir.path()); }, ErrorCode::kModel, "is a directory");
}

// Inference runs on a copy rewritten for oneDNN, whose own in-place clamp,
// ReLU6, hardswish and hardsigmoid got maps of 8, 20 or 200 channels (not
// a multiple of 16) mostly wrong in PyTorch 1.13: repaired, logits() equals
// the plain module's forward for each, and for 16 and 240 channels, which
// keep the rewrite's own kernels.
TEST(InferenceTest, ClampingActivationsMatchThePlainModule) {
  test::TempDir dir;
  at::manual_seed(5);
  // ReLU6 is hardtanh(0, 6) in TorchScript.
  for (const char* act :
       {"torch.clamp(y, 0.0, 6.0)", "torch.hardtanh(y, 0.0, 6.0)", "torch.hardtanh(y, -1.0, 1.0)",
        "torch.hardswish(y)", "torch.hardsigmoid(y)"}) {
    for (int64_t channels : {8, 16, 20, 200, 240}) {
      torch::jit::Module net("Net");
      net.register_parameter("w", at::randn({channels, 3, 3, 3}), false);
      net.register_parameter("b", at::randn({channels}), false);
      net.register_parameter("w2", at::randn({10, channels, 1, 1}) * 0.1, false);
      net.define(std::string("def forward(self, x):\n"
                             "  y = torch.conv2d(x, self.w, self.b, [1, 1], [1, 1])\n"
                             "  z = ") +
                 act +
                 "\n"
                 "  return torch.conv2d(z, self.w2).mean(dim=[2, 3])\n");
      const std::string path = dir.file("net.pt");
      net.save(path);
      const Model model = Model::load(path);
      const at::Tensor x = at::randn({2, 3, 12, 12}) * 3;
      const at::Tensor want = model.module().forward({x}).toTensor();
      const at::Tensor got = model.logits(x);
      EXPECT_LT((got - want).abs().max().item<float>(),
                1e-4 * want.abs().max().item<float>() + 1e-5)
          << act << " after " << channels << " channels";
    }
  }
}

}  // namespace
}  // namespace cnnviz
