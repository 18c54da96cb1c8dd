// Targets: the scores a backward pass differentiates (logit, probability,
// log-probability, sigmoid, counterfactual), per-image classes, targets
// files, and what each method accepts. Unit tests with a model built here,
// the reference comparison (tests/reference/methods_ref.py --score,
// --counterfactual) on an exported SqueezeNet, and the CLI end to end.
#include "cnnviz/core/targets.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cnnviz/core/error.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/methods.h"
#include "cnnviz/run/inputs.h"
#include "map_util.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

using test::expect_error;

// Six classes from a per-channel scale, ReLUs and a spatial mean: small
// enough to take every class's gradient.
std::string six_class_model(const test::TempDir& dir) {
  torch::jit::Module net("SixClasses");
  net.register_parameter("w", at::tensor({2.0f, -1.0f, 0.5f}).view({1, 3, 1, 1}), false);
  net.define(
      "def forward(self, x):\n"
      "  y = torch.relu(x * self.w)\n"
      "  h = (y * y).mean(dim=[2, 3])\n"
      "  return torch.cat([h, -h + 0.3], 1)\n");
  const std::string path = dir.file("six.pt");
  net.save(path);
  return path;
}

TEST(TargetsUnitTest, ScoresOfEachKind) {
  const at::Tensor z = at::tensor({1.0f, 2.0f, -0.5f, 0.0f, 3.0f, 1.5f}).view({2, 3});
  const std::vector<int64_t> cls = {1, 0};
  const at::Tensor p = at::softmax(z, 1);
  auto at2 = [](const at::Tensor& t, int64_t r, int64_t c) { return t[r][c].item<double>(); };
  at::Tensor s = target_scores(z, cls, {ScoreKind::kLogit, false});
  EXPECT_DOUBLE_EQ(s[0].item<double>(), 2.0);
  EXPECT_DOUBLE_EQ(s[1].item<double>(), 0.0);
  s = target_scores(z, cls, {ScoreKind::kProbability, false});
  EXPECT_NEAR(s[0].item<double>(), at2(p, 0, 1), 1e-7);
  s = target_scores(z, cls, {ScoreKind::kLogProbability, true});
  EXPECT_NEAR(s[1].item<double>(), -std::log(at2(p, 1, 0)), 1e-6);
  s = target_scores(z, cls, {ScoreKind::kSigmoid, false});
  EXPECT_NEAR(s[0].item<double>(), 1.0 / (1.0 + std::exp(-2.0)), 1e-7);
  // A rank an image has no target at scores 0.
  s = target_scores(z, {kNoTarget, 2}, {ScoreKind::kProbability, false});
  EXPECT_EQ(s[0].item<double>(), 0.0);
  EXPECT_NEAR(s[1].item<double>(), at2(p, 1, 2), 1e-7);
  expect_error([&] { target_scores(z, {3, 0}, {}); }, ErrorCode::kUsage, "out of range");
  // One output: its softmax is 1 whatever the input.
  const at::Tensor one = at::tensor({0.7f, -0.2f}).view({2, 1});
  expect_error(
      [&] {
        target_scores(one, {0, 0}, {ScoreKind::kProbability, false});
      },
      ErrorCode::kUsage, "one output");
  EXPECT_NEAR(target_scores(one, {0, 0}, {ScoreKind::kLogit, true})[1].item<double>(), 0.2, 1e-7);
}

TEST(TargetsUnitTest, ParsesScoreNames) {
  for (const std::string& name : score_names()) EXPECT_EQ(score_name(parse_score(name)), name);
  expect_error([] { parse_score("prob"); }, ErrorCode::kUsage, "--score 'prob': unknown");
}

TEST(TargetsUnitTest, PerImageClassesPadRanksAndFallBackToTheTopClasses) {
  const at::Tensor z =
      at::tensor({0.0f, 5.0f, 1.0f, 3.0f, 0.0f, 2.0f, 1.0f, 1.0f, 9.0f}).view({3, 3});
  TargetChooser choose =
      per_image_classes({std::vector<int64_t>{2, 0}, std::nullopt, std::vector<int64_t>{1}}, 1);
  const auto ranks = choose(z);
  ASSERT_EQ(ranks.size(), 2u);
  EXPECT_EQ(ranks[0], (std::vector<int64_t>{2, 0, 1}));  // image 1: its top-1 class
  EXPECT_EQ(ranks[1], (std::vector<int64_t>{0, kNoTarget, kNoTarget}));
  TargetChooser bad = per_image_classes({std::vector<int64_t>{3}, std::nullopt, std::nullopt}, 1);
  expect_error([&] { bad(z); }, ErrorCode::kUsage, "class 3: out of range");
  const auto two = fixed_classes({2, 1})(z);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1], (std::vector<int64_t>{1, 1, 1}));
  expect_error([&] { fixed_classes({1, 7})(z); }, ErrorCode::kUsage, "--class 7: out of range");
}

TEST(TargetsUnitTest, EachMethodSaysWhichScoresItExplains) {
  const Score gradcam = method_score(find_method("gradcam"), ScoreKind::kSigmoid, true);
  EXPECT_EQ(gradcam.kind, ScoreKind::kSigmoid);
  EXPECT_TRUE(gradcam.counterfactual);
  EXPECT_EQ(method_score(find_method("gradcam"), std::nullopt, false).kind, ScoreKind::kLogit);
  // Score-CAM's own score is the masked image's probability.
  EXPECT_EQ(method_score(find_method("scorecam"), std::nullopt, false).kind,
            ScoreKind::kProbability);
  expect_error([] { method_score(find_method("scorecam"), std::nullopt, true); }, ErrorCode::kUsage,
               "--counterfactual: scorecam");
  expect_error([] { method_score(find_method("cam"), ScoreKind::kProbability, false); },
               ErrorCode::kUsage, "--score probability: cam explains logit only");
  expect_error([] { method_score(find_method("eigencam"), ScoreKind::kLogit, false); },
               ErrorCode::kUsage, "does not depend on the target");
}

// The gradient of a probability is the softmax Jacobian's row applied to the
// logits' gradients: d p_c / dx = p_c (g_c - sum_j p_j g_j), g_j = d z_j / dx.
// Counterfactual maps are the negated ones; log-probability is the
// probability's gradient over p_c.
TEST(TargetsUnitTest, ScoreGradientsFollowTheChainRule) {
  test::TempDir dir;
  Model model = Model::load(six_class_model(dir));
  Engine engine(model, {});
  const at::Tensor x = at::randn({2, 3, 5, 5}, at::TensorOptions().dtype(at::kFloat));
  Pass pass = engine.run(x);
  const at::Tensor z = pass.logits();
  ASSERT_EQ(z.size(1), 6);
  std::vector<at::Tensor> g;  // [class]: [2,3,5,5]
  for (int64_t j = 0; j < 6; ++j) g.push_back(pass.backward({j, j}, Backprop::kPlain));
  const at::Tensor p = at::softmax(z.to(at::kDouble), 1);
  const std::vector<int64_t> cls = {4, 1};
  const at::Tensor prob = pass.backward(cls, Backprop::kPlain, {ScoreKind::kProbability, false});
  const at::Tensor logp = pass.backward(cls, Backprop::kPlain, {ScoreKind::kLogProbability, false});
  const at::Tensor cf = pass.backward(cls, Backprop::kPlain, {ScoreKind::kLogit, true});
  for (int64_t n = 0; n < 2; ++n) {
    at::Tensor mean = at::zeros_like(g[0][n], at::kDouble);
    for (int64_t j = 0; j < 6; ++j) mean += p[n][j] * g[j][n].to(at::kDouble);
    const at::Tensor expected = p[n][cls[n]] * (g[cls[n]][n].to(at::kDouble) - mean);
    test::expect_close(prob[n], expected.to(at::kFloat), "probability gradient");
    test::expect_close(logp[n], (expected / p[n][cls[n]]).to(at::kFloat), "log-probability");
    EXPECT_TRUE(at::equal(cf[n], -g[cls[n]][n])) << "counterfactual = negated gradient";
  }
}

TEST(TargetsUnitTest, ParsesTargetsFiles) {
  const TargetsFile f = parse_targets(
      "\xEF\xBB\xBFimage,classes\r\n"
      "cat.jpg, tabby , 285\n"
      "# a comment\n\n"
      "\"shots/a, b.png\",\"tiger cat\"\n"
      "./shots/c.png\t7\t\"8\"\n",
      "t.csv");
  ASSERT_EQ(f.rows.size(), 3u);
  EXPECT_EQ(f.rows[0].classes, (std::vector<std::string>{"tabby", "285"}));
  EXPECT_EQ(f.rows[1].image, "shots/a, b.png");
  EXPECT_EQ(f.rows[1].line, 5u);
  EXPECT_EQ(f.rows[2].classes, (std::vector<std::string>{"7", "\"8\""}));  // TSV: no quoting
  EXPECT_EQ(f.find("photos/cat.jpg"), &f.rows[0]);  // a bare name matches any folder
  EXPECT_EQ(f.find("shots/c.png"), &f.rows[2]);     // paths compare normalized
  EXPECT_EQ(f.find("other/c.png"), nullptr);
  EXPECT_EQ(f.digest.size(), 16u);
  EXPECT_NE(parse_targets("cat.jpg,1\n", "t").digest, parse_targets("cat.jpg,2\n", "t").digest);

  expect_error([] { parse_targets("cat.jpg\n", "t.csv"); }, ErrorCode::kInput,
               "targets file 't.csv' line 1: no class after 'cat.jpg'");
  expect_error([] { parse_targets("a.jpg,1\nb.jpg,1,,2\n", "t"); }, ErrorCode::kInput,
               "line 2: field 3 is empty");
  expect_error([] { parse_targets("a.jpg,1\n\"b.jpg,1\n", "t"); }, ErrorCode::kInput,
               "line 2: a quote is not closed");
}

TEST(TargetsUnitTest, RefusesBadTargetsFiles) {
  expect_error([] { parse_targets("d/a.jpg,1\nd/./a.jpg,2\n", "t"); }, ErrorCode::kInput,
               "line 2: image 'd/./a.jpg' is also on line 1");
  expect_error([] { parse_targets("# only a comment\n", "t"); }, ErrorCode::kInput, "no rows");
  expect_error([] { parse_targets(std::string("a.jpg,1\0", 8), "t"); }, ErrorCode::kInput,
               "NUL byte");
  expect_error([] { parse_targets("a.jpg,\xff\n", "t"); }, ErrorCode::kInput, "not UTF-8");
  std::string many = "a.jpg";
  for (int i = 0; i <= 100; ++i) many += "," + std::to_string(i);
  expect_error([&] { parse_targets(many, "t"); }, ErrorCode::kInput, "more than 100 classes");
  expect_error([] { parse_targets(",1\n", "t"); }, ErrorCode::kInput, "no image");
}

// Against the reference: saliency, guided backprop and Grad-CAM of the
// counterfactual probability (the softmax and the negation in one run).
TEST(ModelTargetsTest, ScoresMatchTheAutogradReference) {
  const std::string model_path = test::test_models_dir() + "/squeezenet1_1.pt";
  ASSERT_TRUE(fs::exists(model_path)) << model_path << ": run through ctest";
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = test::smooth_image(dir, 5);
  Model model = Model::load(model_path);
  const at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
  const std::string layer = model.info().default_layer;
  // The most likely class with evidence against it at the layer (random
  // weights: for many classes the counterfactual map is empty, for the
  // target likely ones the gradient is zero).
  int64_t target = -1;
  {
    Engine engine(model, {layer});
    Pass pass = engine.run(x);
    const at::Tensor order = pass.logits()[0].argsort(0, /*descending=*/true);
    MethodParams cf;
    cf.score = Score{ScoreKind::kProbability, true};
    for (int64_t i = 0; i < 200 && target < 0; ++i) {
      Capture capture(engine, pass, {order[i].item<int64_t>()}, cf);
      if (find_method("gradcam").compute(capture).at(0).value.max().item<double>() > 0) {
        target = order[i].item<int64_t>();
      }
    }
  }
  ASSERT_GE(target, 0) << "no class with a counterfactual map";
  for (const auto& [score, counterfactual] :
       // One reference run (they are the slow part): the probability's
       // counterfactual goes through both the softmax and the negation.
       std::vector<std::pair<std::string, bool>>{{"probability", true}}) {
    SCOPED_TRACE(score + (counterfactual ? " counterfactual" : ""));
    const std::string out = dir.file(score + (counterfactual ? "-cf" : ""));
    std::vector<std::string> argv = {test::python(),
                                     test::source_dir() + "/tests/reference/methods_ref.py",
                                     model_path,
                                     image,
                                     out,
                                     "--score",
                                     score,
                                     "--class",
                                     std::to_string(target),
                                     "--threads",
                                     std::to_string(threads)};
    if (counterfactual) argv.push_back("--counterfactual");
    test::RunResult r = test::run(argv);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json meta = nlohmann::json::parse(test::read_text(out + "/meta.json"));
    const int64_t cls = meta["class"].get<int64_t>();

    Engine engine(model, {layer});
    Pass pass = engine.run(x);
    MethodParams params;
    params.score = method_score(find_method("gradcam"), parse_score(score), counterfactual);
    Capture capture(engine, pass, {cls}, params);
    test::expect_close(capture.input_gradient(Backprop::kPlain)[0],
                       test::load(out + "/saliency.npy"), "saliency");
    test::expect_close(capture.input_gradient(Backprop::kGuided)[0],
                       test::load(out + "/guided.npy"), "guided");
    const std::vector<MethodMap> cam = find_method("gradcam").compute(capture);
    test::expect_close(cam.at(0).value[0], test::load(out + "/gradcam_" + layer + ".npy"),
                       "gradcam");
    if (counterfactual) {
      // Counterfactual Grad-CAM is relu of the negated weighted sum of the
      // score's own Grad-CAM (Selvaraju et al., section 7).
      const size_t i = *capture.layer_index(layer);
      const at::Tensor a = capture.activation(i);
      const at::Tensor w = -capture.layer_gradient(i).mean({2, 3}, true);  // of the probability
      test::expect_close(cam[0].value[0], at::relu(-(w * a).sum(1))[0], "relu(-sum w A)");
      EXPECT_GT(cam[0].value.max().item<double>(), 0.0);
    }
  }
}

class CliTargetsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::squeezenet_path();
    out_ = dir_.file("out");
    folder_ = dir_.file("imgs");
    fs::create_directories(folder_);
    cv::RNG rng(5);
    for (const char* name : {"a.png", "b.png", "c.png"}) {
      cv::Mat m(80, 100, CV_8UC3);
      rng.fill(m, cv::RNG::UNIFORM, 0, 256);
      cv::imwrite(folder_ + "/" + name, m);
    }
  }
  nlohmann::json manifest() const {
    return nlohmann::json::parse(test::read_text(out_ + "/manifest.json"));
  }
  test::TempDir dir_;
  std::string model_, out_, folder_;
};

TEST_F(CliTargetsTest, TargetsFileGivesEachImageItsClasses) {
  const std::string targets = dir_.file("targets.csv");
  test::write_text(targets, "image,class\na.png,tabby,5\n" + folder_ + "/b.png,no such label\n" +
                                "gone.png,3\n");
  test::RunResult r = test::run_cnnviz({"gradcam", "-m", model_, "-o", out_, "--write", "npy",
                                        "--targets", targets, "--score", "probability", folder_});
  EXPECT_EQ(r.exit_code, 3) << r.err;  // one image failed
  EXPECT_NE(r.err.find("1 of 3 images are not in '" + targets + "'; they get their top-1"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("1 rows of '" + targets + "' name no input image (first: line 4"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("line 3: class 'no such label': no such class"), std::string::npos) << r.err;
  const nlohmann::json doc = manifest();
  EXPECT_EQ(doc["options"]["score"], "probability");
  EXPECT_EQ(doc["options"]["targets"]["rows"], 3);
  EXPECT_EQ(doc["summary"]["default_targets"], 1);
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& img : doc["images"]) by_name[fs::path(img["image"]).filename()] = img;
  const nlohmann::json& a = by_name["a.png"]["targets"];
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0]["class"], 281);
  EXPECT_EQ(a[0]["spec"], "tabby");
  EXPECT_EQ(a[0]["source"], "targets");
  EXPECT_EQ(a[0]["rank"], nullptr);
  EXPECT_NEAR(a[0]["score"].get<double>(), a[0]["probability"].get<double>(), 1e-6);
  EXPECT_EQ(a[1]["class"], 5);
  EXPECT_EQ(by_name["a.png"]["files"].size(), 2u);
  EXPECT_TRUE(by_name["b.png"].contains("error"));
  const nlohmann::json& c = by_name["c.png"]["targets"];
  ASSERT_EQ(c.size(), 1u);  // its top-1, nothing for the rank a.png's second class took
  EXPECT_EQ(c[0]["source"], "top");
  EXPECT_EQ(c[0]["rank"], 1);
  EXPECT_EQ(by_name["c.png"]["files"].size(), 1u);

  // A bad file stops the run before any work, naming the line.
  test::write_text(targets, "a.png,1\na.png,2\n");
  r = test::run_cnnviz(
      {"gradcam", "-m", model_, "-o", dir_.file("o2"), "--targets", targets, folder_});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("line 2: image 'a.png' is also on line 1"), std::string::npos) << r.err;
}

TEST_F(CliTargetsTest, RepeatedClassesAndCounterfactuals) {
  test::RunResult r =
      test::run_cnnviz({"gradcam", "-m", model_, "-o", out_, "--write", "npy", "--class", "tabby",
                        "--class", "7", "--class", "281", "--counterfactual", folder_ + "/a.png"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json doc = manifest();
  EXPECT_EQ(doc["options"]["class"], nlohmann::json({"tabby", "7"}));
  EXPECT_EQ(doc["options"]["counterfactual"], true);
  const nlohmann::json& t = doc["images"][0]["targets"];
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0]["source"], "class");
  EXPECT_NEAR(t[1]["score"].get<double>(), -t[1]["logit"].get<double>(), 1e-6);
  EXPECT_EQ(doc["images"][0]["files"].size(), 2u);

  for (const auto& [args, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"cam", "--score", "probability"}, "--score probability: cam explains logit only"},
           {{"scorecam", "--counterfactual"}, "--counterfactual"},  // not one of its options
           {{"gradcam", "--score", "odds"}, "--score"},
           {{"gradcam", "--class", "1", "--top", "2"}, "excludes"}}) {
    std::vector<std::string> argv = args;
    argv.insert(argv.end(), {"-m", model_, "-o", dir_.file("o3"), folder_ + "/a.png"});
    r = test::run_cnnviz(argv);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
}

// A binary or regression head: one output, class 0; the counterfactual is
// its decrease; a softmax over one output is refused.
TEST_F(CliTargetsTest, ModelsWithOneOutput) {
  torch::jit::Module net("OneOutput");
  net.register_parameter("w", at::tensor({1.0f, -2.0f, 0.5f}).view({1, 3, 1, 1}), false);
  net.define(
      "def forward(self, x):\n  return torch.relu(x * self.w).mean([1, 2, 3]).unsqueeze(1)\n");
  const std::string path = dir_.file("one.pt");
  net.save(path);
  const std::vector<std::string> common = {"-m",      path,  "--size",          "32",
                                           "--write", "npy", folder_ + "/a.png"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), common.begin(), common.end());
    return args;
  };
  test::RunResult r =
      test::run_cnnviz(with({"saliency", "-o", out_ + "-up", "--score", "sigmoid"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cnnviz(with({"saliency", "-o", out_, "--counterfactual"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json t = manifest()["images"][0]["targets"][0];
  EXPECT_EQ(t["class"], 0);
  EXPECT_DOUBLE_EQ(t["score"].get<double>(), -t["logit"].get<double>());
  auto npy_of = [&](const std::string& outdir) {
    const nlohmann::json doc = nlohmann::json::parse(test::read_text(outdir + "/manifest.json"));
    for (const auto& f : doc["images"][0]["files"]) {
      if (f["variant"] == "raw") return test::load(outdir + "/" + f["path"].get<std::string>());
    }
    ADD_FAILURE() << "no .npy in " << outdir;
    return at::Tensor();
  };
  const at::Tensor down = npy_of(out_), up = npy_of(out_ + "-up");
  ASSERT_TRUE(down.defined() && up.defined());
  // sigmoid'(z) > 0: the evidence for and against point in opposite ways.
  EXPECT_LT((up * down).sum().item<double>(), 0.0);
  EXPECT_GT(down.abs().max().item<double>(), 0.0);
  r = test::run_cnnviz(with({"saliency", "-o", dir_.file("o4"), "--score", "probability"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("one output, whose softmax is always 1"), std::string::npos) << r.err;
}

TEST_F(CliTargetsTest, ClassifyReportsTheGivenClasses) {
  const std::string targets = dir_.file("t.tsv");
  test::write_text(targets, "a.png\t7\ttabby\nb.png\t99999\n");
  test::RunResult r = test::run_cnnviz(
      {"classify", "-m", model_, "--json", "-k", "3", "--targets", targets, folder_});
  EXPECT_EQ(r.exit_code, 3) << r.err;  // b.png: no class 99999
  EXPECT_NE(r.err.find("they get their predictions only"), std::string::npos) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  const nlohmann::json& a = doc["results"][0];
  ASSERT_EQ(a["targets"].size(), 2u);
  EXPECT_EQ(a["targets"][1]["class"], 281);
  EXPECT_EQ(a["targets"][1]["spec"], "tabby");
  // Its rank agrees with the predictions where they overlap.
  r = test::run_cnnviz({"classify", "-m", model_, "--json", "-k", "1", "--class",
                        std::to_string(a["predictions"][0]["index"].get<int>()),
                        folder_ + "/a.png"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json one = nlohmann::json::parse(r.out)["results"][0];
  EXPECT_EQ(one["targets"][0]["rank"], 1);
  EXPECT_EQ(one["targets"][0]["source"], "class");
  EXPECT_DOUBLE_EQ(one["targets"][0]["probability"].get<double>(),
                   one["predictions"][0]["probability"].get<double>());
  EXPECT_TRUE(doc["results"][1].contains("error"));
  EXPECT_NE(doc["results"][1]["error"].get<std::string>().find("99999: out of range"),
            std::string::npos);
  EXPECT_FALSE(doc["results"][2].contains("targets"));
}

}  // namespace
}  // namespace cnnviz
