// ONNX exports against the TorchScript exports of the same weights (both
// made by the ctest fixtures with scripts/export_models.py): the same
// classification, and the same maps from every kind of method, through the
// command line as a user runs it.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/model.h"
#include "map_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

std::string onnx_path(const std::string& name) {
  return test::test_models_dir() + "/onnx/" + name + ".onnx";
}

std::string pt_path(const std::string& name) {
  return test::test_models_dir() + "/" + name + ".pt";
}

nlohmann::json classify(const std::string& model, const std::string& image) {
  const test::RunResult r =
      test::run_cnnviz({"classify", "-m", model, "--top-k", "5", "--json", image});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out)["results"][0]["predictions"];
}

// Every .npy written for `pt_dir` has its twin in `onnx_dir`, within 1e-4 of
// its max.
void expect_same_maps(const std::string& pt_dir, const std::string& onnx_dir) {
  int compared = 0;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(pt_dir)) {
    if (e.path().extension() != ".npy") continue;
    const fs::path twin = fs::path(onnx_dir) / fs::relative(e.path(), pt_dir);
    ASSERT_TRUE(fs::exists(twin)) << twin << " is missing";
    test::expect_close(test::load(twin.string()), test::load(e.path().string()),
                       e.path().filename().string());
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

// The methods compared: Grad-CAM at every stage, guided backprop, DeepLIFT
// and LRP, plus attention rollout on a ViT.
std::vector<std::vector<std::string>> methods_for(const std::string& name) {
  std::vector<std::vector<std::string>> runs = {
      {"gradcam", "--all-layers"}, {"guided-backprop"}, {"deeplift"}};
  // TorchScript's DenseNet hides each convolution from the batch norm after
  // it behind a branch, so LRP folds 1 batch norm there and 59 in the ONNX
  // graph: the rules differ, as they should.
  if (name != "densenet121") runs.push_back({"lrp"});
  if (name.find("vit") != std::string::npos) runs.push_back({"rollout"});
  return runs;
}

// The ONNX file gives the TorchScript file's top 5 (probabilities within
// 1e-5) and maps (within 1e-4 of each map's max) on `image`.
void expect_round_trip(const std::string& pt, const std::string& onnx, const std::string& image,
                       const std::string& name) {
  const nlohmann::json want = classify(pt, image), got = classify(onnx, image);
  ASSERT_EQ(got.size(), 5u);
  for (size_t k = 0; k < 5; ++k) {
    EXPECT_EQ(got[k]["index"], want[k]["index"]) << "rank " << k + 1;
    EXPECT_NEAR(got[k]["probability"].get<double>(), want[k]["probability"].get<double>(), 1e-5);
  }
  TempDir out;
  for (const std::vector<std::string>& run : methods_for(name)) {
    for (const std::string& model : {pt, onnx}) {
      std::vector<std::string> args = run;
      args.insert(args.end(), {"-m", model, "--write", "npy", "-o",
                               out.file(model == pt ? "pt" : "onnx"), image});
      const test::RunResult r = test::run_cnnviz(args);
      ASSERT_EQ(r.exit_code, 0) << run[0] << " on " << model << ": " << r.err;
    }
  }
  expect_same_maps(out.file("pt"), out.file("onnx"));
}

class ModelOnnxTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelOnnxTest, ClassifiesAndExplainsAsTheTorchScriptExport) {
  TempDir dir;
  expect_round_trip(pt_path(GetParam()), onnx_path(GetParam()),
                    test::structured_image(dir, 200, 160), GetParam());
}

// The engine guides every ReLU of the imported graph (ReLU6 from Clip(0, 6)),
// and finds the same stages and layer shapes as in the TorchScript one.
// (TorchScript's counts differ: its graphs keep both branches of
// `if inplace` in each ReLU6 and of DenseNet's memory-efficient path.)
TEST_P(ModelOnnxTest, EngineFindsTheSameStructure) {
  const Engine::Description a = Engine::describe(Model::load(pt_path(GetParam())));
  const Engine::Description b = Engine::describe(Model::load(onnx_path(GetParam())));
  EXPECT_EQ(b.report.guided_relus > 0, a.report.guided_relus > 0);
  EXPECT_EQ(b.report.guided_relu6s > 0, a.report.guided_relu6s > 0);
  // (In-place or not: ONNX has no in-place operators.)
  auto activations = [](const GraphReport& r) {
    std::map<std::string, int> out;
    for (const auto& [kind, n] : r.unguided)
      out[kind.back() == '_' ? kind.substr(0, kind.size() - 1) : kind] += n;
    return out;
  };
  EXPECT_EQ(activations(b.report), activations(a.report));
  EXPECT_EQ(feature_stages(b.layers), feature_stages(a.layers));
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const LayerInfo& l : a.layers) {
    if (l.calls == 1) shapes[l.path] = l.shape;  // a module run twice is two scopes in ONNX
  }
  int compared = 0;
  for (const LayerInfo& l : b.layers) {
    if (!shapes.count(l.path)) continue;
    EXPECT_EQ(l.shape, shapes[l.path]) << l.path;
    ++compared;
  }
  EXPECT_GT(compared, 10);
}

INSTANTIATE_TEST_SUITE_P(Classifiers, ModelOnnxTest,
                         ::testing::Values("squeezenet1_1", "mobilenet_v2", "densenet121",
                                           "efficientnet_b0", "resnet50", "tiny_vit",
                                           "tiny_vit_nobias", "tiny_swin"));

// `onnx` with every node's name emptied, as written by an exporter that
// keeps no module scopes, saved as `to`.
void write_without_scopes(const std::string& onnx, const std::string& to) {
  onnx::ModelProto m;
  std::ifstream in(onnx, std::ios::binary);
  ASSERT_TRUE(m.ParseFromIstream(&in)) << onnx;
  for (onnx::NodeProto& n : *m.mutable_graph()->mutable_node()) n.clear_name();
  std::ofstream out(to, std::ios::binary);
  ASSERT_TRUE(m.SerializeToOstream(&out)) << to;
}

// A ResNet-50 whose node names carry no scopes: its stages come from the
// structure (the stem before the first pooling, each residual merge with
// its ReLU, the last node at each size before a strided convolution), and
// those ending each of layer1-4 give the named graph's maps there.
TEST(ModelOnnxStructureTest, StagesOfAGraphWithoutScopes) {
  TempDir dir;
  const std::string plain = dir.file("resnet50_plain.onnx");
  write_without_scopes(onnx_path("resnet50"), plain);
  const test::RunResult r = test::run_cnnviz({"layers", "--json", "-m", plain});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  std::vector<std::string> stages;
  int merges = 0;
  for (const nlohmann::json& l : doc["layers"]) {
    if (l["found_by"].is_null()) continue;
    const std::string how = l["found_by"];
    if (how.rfind("residual merge (Add)", 0) == 0) ++merges;
    stages.push_back(l["path"]);
    EXPECT_TRUE(l["feature_layer"].get<bool>()) << l["path"];
  }
  ASSERT_EQ(stages.size(), 20u);  // the stem, 16 blocks, 3 sizes before a stride
  EXPECT_EQ(merges, 16);
  EXPECT_EQ(doc["layers"][0]["found_by"], "last at 112 x 112 (then 56 x 56)");
  EXPECT_EQ(doc["default_layer"], "stage20");
  const std::string image = test::structured_image(dir, 200, 160);
  const std::vector<std::pair<std::string, std::string>> same = {{"stage1", "relu"},
                                                                 {"stage4", "layer1"},
                                                                 {"stage10", "layer2"},
                                                                 {"stage16", "layer3"},
                                                                 {"stage20", "layer4"}};
  for (const auto& [stage, layer] : same) {
    for (const auto& [model, name] : {std::pair(plain, stage), {onnx_path("resnet50"), layer}}) {
      const test::RunResult g =
          test::run_cnnviz({"gradcam", "--layer", name, "--class", "3", "-m", model, "--write",
                            "npy", "-o", dir.file("out"), image});
      ASSERT_EQ(g.exit_code, 0) << g.err;
    }
    const std::string stem = dir.file("out/") + fs::path(image).stem().string() + "/gradcam_";
    test::expect_close(test::load(stem + stage + "_c3.npy"), test::load(stem + layer + "_c3.npy"),
                       stage + " against " + layer);
  }
}

// --layer takes any value of an ONNX graph: a module's output gives that
// module's map; a value inside a module (layer3.5's residual sum, before
// the ReLU that ends the block) gets a module of its own.
TEST(ModelOnnxStructureTest, LayerByValueName) {
  TempDir dir;
  const std::string image = test::structured_image(dir, 200, 160);
  const std::string model = onnx_path("resnet50");
  auto gradcam = [&](const std::vector<std::string>& layers, const std::string& out) {
    std::vector<std::string> args = {"gradcam", "-m", model,         "--write",
                                     "npy",     "-o", dir.file(out), image};
    for (const std::string& l : layers) args.insert(args.begin() + 1, {"--layer", l});
    const test::RunResult r = test::run_cnnviz(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
  };
  // The map of `layer` (its top class's) under out/.
  auto map = [&](const std::string& out, const std::string& layer) {
    const std::string prefix = "gradcam_" + layer + "_c";
    for (const fs::directory_entry& e : fs::recursive_directory_iterator(dir.file(out))) {
      if (e.path().filename().string().rfind(prefix, 0) == 0) return test::load(e.path().string());
    }
    ADD_FAILURE() << prefix << "*.npy not in " << out;
    return at::Tensor();
  };
  gradcam({"/layer4/layer4.2/relu_2/Relu_output_0", "/layer3/layer3.5/Add_output_0"}, "v");
  gradcam({"layer4.2.relu_2", "layer3.5"}, "m");
  test::expect_close(map("v", "layer4.2.relu_2.value__layer4_layer4_2_relu_2_Relu_output_0"),
                     map("m", "layer4.2.relu_2"), "relu_2 by value");
  const at::Tensor sum = map("v", "layer3.5.value__layer3_layer3_5_Add_output_0");
  const at::Tensor block = map("m", "layer3.5");
  ASSERT_TRUE(sum.defined() && block.defined());
  EXPECT_EQ(sum.sizes(), block.sizes());
  EXPECT_GT(block.abs().max().item<float>(), 0);
  EXPECT_GT((sum - block).abs().max().item<float>(), 1e-3 * block.abs().max().item<float>())
      << "the sum before the ReLU has a map of its own";
  const test::RunResult bad = test::run_cnnviz(
      {"gradcam", "--layer", "/no/such/value", "-m", model, "-o", dir.file("bad"), image});
  EXPECT_EQ(bad.exit_code, 5) << bad.err;
  EXPECT_NE(bad.err.find("'/no/such/value' not found"), std::string::npos) << bad.err;
}

// The synthesis commands take value names too: top-activations at a value
// finds the same images, positions and activations as at the module that
// computes it, and filters optimizes an image for it.
TEST(ModelOnnxStructureTest, SynthesisByValueName) {
  TempDir dir;
  const std::string model = onnx_path("squeezenet1_1");
  const std::string value = "/features/features.3/Concat_output_0";
  const std::vector<std::string> images = {test::structured_image(dir, 120, 96),
                                           test::structured_image(dir, 90, 140)};
  auto top = [&](const std::string& layer, const std::string& out) {
    std::vector<std::string> args = {"top-activations", "-q",  "-m",  model,
                                     "--layer",         layer, "--k", "2",
                                     "--channels",      "0-7", "-o",  dir.file(out)};
    args.insert(args.end(), images.begin(), images.end());
    const test::RunResult r = test::run_cnnviz(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    for (const fs::directory_entry& e : fs::directory_iterator(dir.file(out))) {
      if (e.path().string().find(".state.json") != std::string::npos) {
        return nlohmann::json::parse(test::read_text(e.path().string()));
      }
    }
    ADD_FAILURE() << "no state file in " << out;
    return nlohmann::json();
  };
  const nlohmann::json by_value = top(value, "v"), by_module = top("features.3", "m");
  ASSERT_EQ(by_value["top"].size(), 8u);
  ASSERT_EQ(by_value["top"].size(), by_module["top"].size());
  for (size_t c = 0; c < by_module["top"].size(); ++c) {
    ASSERT_EQ(by_value["top"][c].size(), by_module["top"][c].size());
    for (size_t k = 0; k < by_module["top"][c].size(); ++k) {
      const nlohmann::json &a = by_value["top"][c][k], &b = by_module["top"][c][k];
      EXPECT_EQ(a["image"], b["image"]);
      EXPECT_EQ(a["y"], b["y"]);
      EXPECT_EQ(a["x"], b["x"]);
      EXPECT_NEAR(a["value"].get<double>(), b["value"].get<double>(),
                  1e-5 * std::abs(b["value"].get<double>()) + 1e-6);
    }
  }
  const test::RunResult f =
      test::run_cnnviz({"filters", "-q", "-m", model, "--layer", value, "--channels", "0",
                        "--steps", "2", "--size", "64", "-o", dir.file("f")});
  EXPECT_EQ(f.exit_code, 0) << f.err;
  EXPECT_TRUE(fs::exists(
      dir.file("f/filters/features.3.value__features_features_3_Concat_output_0_ch0.png")))
      << f.err;
}

// Detectors and segmenters exported both ways from the same weights (the
// tiny models of tests/reference/tiny_models.py, one of them torchvision's
// RetinaNet through its dense wrapper, and torchvision's LR-ASPP): the same
// detections or class areas on a non-square image (a size the ONNX export
// was not traced at), and the same maps of the first detection or of the
// default class.
class ModelOnnxTaskTest : public ::testing::TestWithParam<std::string> {};

nlohmann::json task_results(const std::string& task, const std::string& model,
                            const std::string& image) {
  const test::RunResult r = test::run_cnnviz({task, "-m", model, "--json", image});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out)["results"][0];
}

TEST_P(ModelOnnxTaskTest, DetectsOrSegmentsAndExplainsAsTheTorchScriptExport) {
  TempDir dir;
  const std::string image = test::structured_image(dir, 200, 160);
  const std::string pt = pt_path(GetParam()), onnx = onnx_path(GetParam());
  const bool detector =
      GetParam().find("fcn") == std::string::npos && GetParam().find("lraspp") == std::string::npos;
  const nlohmann::json want = task_results(detector ? "detect" : "segment", pt, image);
  const nlohmann::json got = task_results(detector ? "detect" : "segment", onnx, image);
  if (detector) {
    ASSERT_FALSE(want["detections"].empty());
    ASSERT_EQ(got["detections"].size(), want["detections"].size());
    for (size_t k = 0; k < want["detections"].size(); ++k) {
      const nlohmann::json &a = got["detections"][k], &b = want["detections"][k];
      EXPECT_EQ(a["class"], b["class"]) << "detection " << k;
      EXPECT_NEAR(a["score"].get<double>(), b["score"].get<double>(), 1e-5) << "detection " << k;
      for (size_t c = 0; c < 4; ++c)
        EXPECT_NEAR(a["box"][c].get<double>(), b["box"][c].get<double>(), 1e-3) << "box " << k;
    }
  } else {
    EXPECT_EQ(got["classes"], want["classes"]);
  }
  for (const std::vector<std::string>& run :
       std::vector<std::vector<std::string>>{{"gradcam", "--all-layers"}, {"guided-backprop"}}) {
    for (const std::string& model : {pt, onnx}) {
      std::vector<std::string> args = run;
      if (detector) args.insert(args.end(), {"--box", "0"});
      args.insert(args.end(), {"-m", model, "--write", "npy", "-o",
                               dir.file(model == pt ? "pt" : "onnx"), image});
      const test::RunResult r = test::run_cnnviz(args);
      ASSERT_EQ(r.exit_code, 0) << run[0] << " on " << model << ": " << r.err;
    }
  }
  expect_same_maps(dir.file("pt"), dir.file("onnx"));
}

INSTANTIATE_TEST_SUITE_P(DetectorsAndSegmenters, ModelOnnxTaskTest,
                         ::testing::Values("tiny_yolov5", "tiny_yolov8", "tiny_retinanet",
                                           "tiny_fcn", "lraspp_mobilenet_v3_large"));

// The real squeezenet1_1 weights from shared/ (fixture.export_pretrained
// exports both files), on the photo of a cat.
TEST(PretrainedOnnxTest, ClassifiesAndExplainsAsTheTorchScriptExport) {
  const std::string shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "shared/ not found beside the repository: skipped";
  const std::string dir = test::test_models_dir() + "/pretrained/";
  ASSERT_TRUE(fs::exists(dir + "squeezenet1_1.onnx")) << "run through ctest";
  expect_round_trip(dir + "squeezenet1_1.pt", dir + "squeezenet1_1.onnx",
                    shared + "/images/cat.jpg", "squeezenet1_1");
}

// ViT-B/16 (330 MiB, the `backbones` label: scripts/test.sh --backbones).
TEST(BackboneOnnxTest, VitB16ClassifiesAndExplainsAsTheTorchScriptExport) {
  TempDir dir;
  expect_round_trip(pt_path("vit_b_16"), onnx_path("vit_b_16"),
                    test::structured_image(dir, 200, 160), "vit_b_16");
}

}  // namespace
}  // namespace cnnviz
