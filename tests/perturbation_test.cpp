// Occlusion and RISE: against tests/reference/perturbation_ref.py on the
// exported SqueezeNet (same windows, same seeded masks; tolerance 1e-5 of the
// map's max |value|: both sides run the same frozen module on the same
// batches), against closed forms on a linear model built here, and through
// the CLI (options, their checks, outputs).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/compute.h"
#include "cnnviz/methods/methods.h"
#include "map_util.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

constexpr double kRelTol = 1e-5;

// logits[n, c] = sum over pixels of w[c] * x[n] (two classes): occlusion's
// drop for a window is then the sum of w * (x - fill) over it.
Model linear_model(const test::TempDir& dir, const at::Tensor& w) {
  torch::jit::Module net("Linear");
  net.register_parameter("w", w, false);
  net.define(
      "def forward(self, x):\n"
      "  return (x.unsqueeze(1) * self.w.unsqueeze(0)).sum(dim=[2, 3, 4])\n");
  net.save(dir.file("linear.pt"));
  return Model::load(dir.file("linear.pt"));
}

std::vector<MethodMap> run(const Model& model, const std::string& method, const at::Tensor& x,
                           int64_t cls, MethodParams params) {
  Engine engine(model, {});
  const MethodDef& m = find_method(method);
  params.score = method_score(m, std::nullopt, false);
  return compute_maps(engine, m, x, fixed_class(cls), params).maps.at(0);
}

TEST(OcclusionTest, LinearModelHasTheClosedForm) {
  test::TempDir dir;
  const int64_t h = 12, w = 10;
  at::manual_seed(3);
  const at::Tensor weights = at::randn({2, 3, h, w});
  Model model = linear_model(dir, weights);
  const at::Tensor x = at::randn({1, 3, h, w});
  MethodParams p;
  p.window = 4;
  p.stride = 3;  // tops 0, 3, 6 and 8 (flush with the border); lefts 0, 3, 6
  p.sample_batch = 5;
  p.fill = "black";
  const at::Tensor fill = method_util::reference_image(x, "black", p, "--fill");
  const at::Tensor got = run(model, "occlusion", x, 1, p).at(0).value[0];
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{h, w}));
  at::Tensor sum = at::zeros({h, w}, at::kDouble), count = at::zeros({h, w}, at::kDouble);
  const at::Tensor contrib = (weights[1] * (x[0] - fill[0])).sum(0).to(at::kDouble);  // [h,w]
  for (int64_t top : {0, 3, 6, 8}) {
    for (int64_t left : {0, 3, 6}) {
      auto win = [&](at::Tensor t) { return t.slice(0, top, top + 4).slice(1, left, left + 4); };
      const double drop = win(contrib).sum().item<double>();
      win(sum) += drop;
      win(count) += 1;
    }
  }
  ASSERT_GT(count.min().item<double>(), 0) << "every pixel is covered";
  test::expect_maps_close(got, (sum / count).to(at::kFloat), kRelTol, "occlusion, linear model");
}

TEST(OcclusionTest, WindowAndStrideAreChecked) {
  const MethodDef& m = find_method("occlusion");
  ASSERT_NE(m.check, nullptr);
  MethodParams p;
  p.window = 300;
  test::expect_error([&] { m.check(p, 224, 224); }, ErrorCode::kUsage, "--window 300");
  p.window = 32;
  p.stride = 40;
  test::expect_error([&] { m.check(p, 224, 224); }, ErrorCode::kUsage, "--stride 40");
  p.stride = 32;
  m.check(p, 224, 224);
}

TEST(RiseTest, ConstantScoreGivesAFlatMapAndTheSeedFixesTheMasks) {
  test::TempDir dir;
  // Logits that ignore the input: every mask weighs 1 and the saliency is
  // the mean mask / p, close to 1 everywhere.
  torch::jit::Module net("Constant");
  net.define("def forward(self, x):\n  return torch.zeros([x.size(0), 3]) + x.sum() * 0.0\n");
  net.save(dir.file("constant.pt"));
  Model model = Model::load(dir.file("constant.pt"));
  const at::Tensor x = at::randn({1, 3, 16, 16});
  MethodParams p;
  p.masks = 4000;
  p.grid = 4;
  p.sample_batch = 500;
  p.score = Score{ScoreKind::kLogit, false};
  Engine engine(model, {});
  const MethodDef& rise = find_method("rise");
  // The logit is 0 everywhere: use the probability (1/3 per class).
  p.score = Score{ScoreKind::kProbability, false};
  const at::Tensor map = compute_maps(engine, rise, x, fixed_class(0), p).maps[0][0].value[0];
  const at::Tensor unit = map * 3.0;
  EXPECT_NEAR(unit.mean().item<double>(), 1.0, 0.02);
  EXPECT_LT((unit - 1).abs().max().item<double>(), 0.15);
  const at::Tensor again = compute_maps(engine, rise, x, fixed_class(0), p).maps[0][0].value[0];
  EXPECT_TRUE(at::equal(map, again)) << "same seed, same masks";
  p.seed = 1;
  const at::Tensor other = compute_maps(engine, rise, x, fixed_class(0), p).maps[0][0].value[0];
  EXPECT_FALSE(at::equal(map, other));
}

test::RunResult reference(std::vector<std::string> args) {
  std::vector<std::string> argv = {test::python(),
                                   test::source_dir() + "/tests/reference/perturbation_ref.py"};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run(argv);
}

TEST(ModelPerturbationTest, SqueezeNetMatchesTheReference) {
  const std::string model_path = test::squeezenet_path();
  const int threads = set_threads(0);
  test::TempDir dir;
  const std::string image = test::smooth_image(dir, 5);
  test::RunResult r = reference({model_path,
                                 image,
                                 dir.path(),
                                 "--occlusion",
                                 "--window",
                                 "60",
                                 "--stride",
                                 "30",
                                 "--fill",
                                 "blur",
                                 "--blur-sigma",
                                 "4",
                                 "--rise",
                                 "--masks",
                                 "64",
                                 "--grid",
                                 "6",
                                 "--p",
                                 "0.4",
                                 "--seed",
                                 "7",
                                 "--batch",
                                 "16",
                                 "--threads",
                                 std::to_string(threads)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json meta = nlohmann::json::parse(test::read_text(dir.file("meta.json")));
  const int64_t cls = meta["class"].get<int64_t>();
  Model model = Model::load(model_path);
  const at::Tensor x = preprocess(read_image_rgb(image), model.info().preprocess).unsqueeze(0);
  MethodParams p;
  p.window = 60;
  p.stride = 30;
  p.fill = "blur";
  p.blur_sigma = 4;
  p.masks = 64;
  p.grid = 6;
  p.keep = 0.4;
  p.seed = 7;
  p.sample_batch = 16;
  test::expect_maps_close(run(model, "occlusion", x, cls, p).at(0).value[0],
                          test::load(dir.file("occlusion.npy")), kRelTol, "occlusion");
  EXPECT_EQ(meta["windows"], 49) << "7 x 7 windows (tops 0, 30, ..., 150, then 164)";
  test::expect_maps_close(run(model, "rise", x, cls, p).at(0).value[0],
                          test::load(dir.file("rise.npy")), kRelTol, "rise");
}

TEST(CliPerturbationTest, MapsOptionsAndErrors) {
  const std::string model = test::squeezenet_path();
  test::TempDir dir;
  const std::string image = test::smooth_image(dir, 6);
  const std::string out = dir.file("out");
  test::RunResult r = test::run_cnnviz({"occlusion", "-q", "--window", "56", "--stride", "56",
                                        "--fill", "black", "-m", model, "-o", out, image});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(test::read_text(out + "/manifest.json"));
  EXPECT_EQ(doc["options"]["window"], 56);
  EXPECT_EQ(doc["options"]["fill"], "black");
  EXPECT_EQ(doc["options"]["score"], "logit");
  const std::string stem =
      "occlusion_c" + std::to_string(doc["images"][0]["targets"][0]["class"].get<int>());
  for (const char* variant : {".npy", "_heatmap.png", "_overlay.png"}) {
    EXPECT_TRUE(fs::exists(out + "/" + fs::path(image).stem().string() + "/" + stem + variant))
        << stem << variant;
  }
  r = test::run_cnnviz({"rise", "-q", "--masks", "32", "--grid", "5", "--seed", "3", "-m", model,
                        "-o", dir.file("rise"), image});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  doc = nlohmann::json::parse(test::read_text(dir.file("rise") + "/manifest.json"));
  EXPECT_EQ(doc["options"]["masks"], 32);
  EXPECT_EQ(doc["options"]["p"], 0.5);
  EXPECT_EQ(doc["options"]["score"], "probability");

  // Settings that make no sense: usage errors (exit 2) naming the option.
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"occlusion", "--window", "300"}, "--window 300"},
      {{"occlusion", "--window", "16", "--stride", "17"}, "--stride 17"},
      {{"occlusion", "--fill", "grey"}, "--fill"},
      {{"rise", "--masks", "0"}, "--masks"},
      {{"rise", "--p", "0"}, "--p"},
      {{"rise", "--counterfactual"}, "--counterfactual"},
      {{"occlusion", "--unit", "features.3:0"}, "--unit"},
  };
  for (auto [args, what] : bad) {
    args.insert(args.end(), {"-m", model, "-o", dir.file("bad"), image});
    r = test::run_cnnviz(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << args[1] << ": " << r.err;
    // One line of error (after the random-weights warning, when it is loaded).
    std::vector<std::string> errors;
    for (const std::string& line : test::lines(r.err)) {
      if (line.find("RANDOM weights") == std::string::npos &&
          line.find("for real ones") == std::string::npos) {
        errors.push_back(line);
      }
    }
    ASSERT_EQ(errors.size(), 1u) << r.err;
    EXPECT_NE(errors[0].find(what), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace cnnviz
