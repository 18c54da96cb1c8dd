// Feature visualization (synthesis.h, synthesis_run.h): the objectives'
// gradients against tests/reference/featviz_ref.py, determinism, the early
// stop of the engine, receptive fields against a brute-force measurement,
// the top-k bookkeeping against a full sort, and the parsing of options.
#include "cnnviz/core/synthesis.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/run/synthesis_run.h"
#include "map_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {

TEST(SynthesisTest, ChannelLists) {
  EXPECT_EQ(parse_channel_list("all", 3, "l"), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(parse_channel_list("4", 8, "l"), (std::vector<int64_t>{4}));
  EXPECT_EQ(parse_channel_list("0-2,5,1", 8, "l"), (std::vector<int64_t>{0, 1, 2, 5}));
  test::expect_error([] { parse_channel_list("8", 8, "features.3"); }, ErrorCode::kUsage,
                     "layer 'features.3' has 8 channels, 0-7");
  test::expect_error([] { parse_channel_list("2-90", 8, "l"); }, ErrorCode::kUsage, "out of range");
  test::expect_error([] { parse_channel_list("3-1", 8, "l"); }, ErrorCode::kUsage, "empty");
  test::expect_error([] { parse_channel_list("a", 8, "l"); }, ErrorCode::kUsage, "not a channel");
  test::expect_error([] { parse_channel_list("1,,2", 8, "l"); }, ErrorCode::kUsage,
                     "not a channel");
  test::expect_error([] { parse_channel_list("-1", 8, "l"); }, ErrorCode::kUsage, "not a channel");
}

TEST(SynthesisTest, TransformsParseAndDrawWithinTheirRanges) {
  EXPECT_EQ(transforms_text(parse_transforms("rotate,jitter")), "jitter,rotate");
  EXPECT_FALSE(parse_transforms("none").any());
  test::expect_error([] { parse_transforms("jitter,shear"); }, ErrorCode::kUsage,
                     "unknown transform 'shear'");
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200; ++i) {
    const TransformDraw d = draw_transforms(TransformSet{}, rng);
    EXPECT_EQ(d.pad, 12);
    EXPECT_TRUE(d.oy1 >= 0 && d.oy1 < 8 && d.ox1 >= 0 && d.ox1 < 8);
    EXPECT_TRUE(d.oy2 >= 0 && d.oy2 < 4 && d.ox2 >= 0 && d.ox2 < 4);
    EXPECT_TRUE(d.scale >= 0.9 - 1e-9 && d.scale <= 1.1 + 1e-9);
    EXPECT_TRUE(d.angle >= -10 && d.angle <= 10);
  }
  // The output size: 128 + 24 - 8, scaled, - 4.
  TransformDraw d;
  d.pad = 12;
  d.jitter1 = 8;
  d.scale = 1.1;
  d.jitter2 = 4;
  const at::Tensor out = apply_transforms(at::rand({2, 3, 128, 128}), d);
  EXPECT_EQ(out.size(2), static_cast<int64_t>(std::ceil(144 * 1.1)) - 4);
}

TEST(SynthesisTest, ParameterizationsGiveImagesInRange) {
  for (ParamKind kind : {ParamKind::kPixel, ParamKind::kFft}) {
    ParamOptions o;
    o.kind = kind;
    o.size = 33;  // odd sizes too
    const at::Tensor p = init_param(o, 2, 5);
    EXPECT_EQ(p.sizes().vec(), param_shape(o, 2));
    const at::Tensor x = param_images(p, o);
    EXPECT_EQ(x.sizes().vec(), (std::vector<int64_t>{2, 3, 33, 33}));
    EXPECT_GE(x.min().item<float>(), 0.0f);
    EXPECT_LE(x.max().item<float>(), 1.0f);
    EXPECT_TRUE(at::equal(init_param(o, 2, 5), p)) << "the start is a function of the seed";
  }
}

// Every entry of every batch, maximum over positions (the first one on ties),
// sorted by the documented rank, cut at k: what TopActivations keeps.
TEST(SynthesisTest, TopActivationsEqualAFullSort) {
  at::manual_seed(4);
  const int64_t n = 41, c = 6, k = 5;
  // Few distinct values, so ties between images and positions are common.
  const at::Tensor maps = at::randint(0, 6, {n, c, 4, 5}).to(at::kFloat);
  const std::vector<int64_t> channels = {5, 0, 3};
  TopActivations top(channels, k);
  for (int64_t b = 0; b < n; b += 7) {
    const int64_t e = std::min(n, b + 7);
    std::vector<int64_t> ids;
    for (int64_t i = b; i < e; ++i) ids.push_back(i);
    top.add(maps.slice(0, b, e), ids);
  }
  const std::vector<std::vector<TopEntry>> got = top.sorted();
  for (size_t j = 0; j < channels.size(); ++j) {
    std::vector<TopEntry> all;
    for (int64_t i = 0; i < n; ++i) {
      const at::Tensor m = maps[i][channels[j]];
      float best = -1;
      int64_t by = 0, bx = 0;
      for (int64_t y = 0; y < 4; ++y) {
        for (int64_t x = 0; x < 5; ++x) {
          const float v = m[y][x].item<float>();
          if (v > best) {
            best = v;
            by = y;
            bx = x;
          }
        }
      }
      all.push_back({best, i, by, bx});
    }
    std::sort(all.begin(), all.end(), ranks_above);
    all.resize(k);
    ASSERT_EQ(got[j].size(), all.size());
    for (size_t r = 0; r < all.size(); ++r) {
      EXPECT_EQ(got[j][r].value, all[r].value);
      EXPECT_EQ(got[j][r].image, all[r].image) << "channel " << channels[j] << " rank " << r;
      EXPECT_EQ(got[j][r].y, all[r].y);
      EXPECT_EQ(got[j][r].x, all[r].x);
    }
  }
}

// tests/reference/featviz_ref.py on dir/spec.json, writing dir/grad.npy, at
// cnnviz's thread count (convolutions round differently with another).
test::RunResult run_reference(const std::string& model_path, const test::TempDir& dir) {
  return test::run({test::python(), test::source_dir() + "/tests/reference/featviz_ref.py",
                    "--model", model_path, "--spec", dir.file("spec.json"), "--out",
                    dir.file("grad.npy"), "--threads", std::to_string(current_threads())});
}

double relative_l2(const at::Tensor& got, const at::Tensor& want) {
  return ((got - want).norm() / want.norm().clamp_min(1e-30)).item<double>();
}

struct GradCase {
  std::string name, arch, param, kind, layer;
  bool decorrelate, draws;
  double l2, tv, blur;
};

void PrintTo(const GradCase& c, std::ostream* os) { *os << c.name; }

class ModelSynthesisGradTest : public ::testing::TestWithParam<GradCase> {};

// One step's loss and gradient in the parameter against the eager-PyTorch
// reference with the same start, transforms and objective.
TEST_P(ModelSynthesisGradTest, MatchesTheReference) {
  const GradCase& c = GetParam();
  const std::string model_path = test::test_models_dir() + "/" + c.arch + ".pt";
  Model model = Model::load(model_path);
  test::TempDir dir;
  const int64_t n = 3;
  ParamOptions param;
  param.kind = c.param == "fft" ? ParamKind::kFft : ParamKind::kPixel;
  param.decorrelate = c.decorrelate;
  param.size = 64;
  param.init_sd = 0.5;  // far from the start's flat grey, so every term matters
  const at::Tensor p = init_param(param, n, 11);
  test::save_npy_tensor(dir.file("p.npy"), p);
  Objective objective;
  objective.kind = c.kind == "channel"  ? ObjectiveKind::kChannel
                   : c.kind == "neuron" ? ObjectiveKind::kNeuron
                   : c.kind == "class"  ? ObjectiveKind::kClass
                                        : ObjectiveKind::kInvert;
  objective.layers = {c.layer};
  objective.units = {3, 0, 7};
  nlohmann::json spec;
  if (objective.kind == ObjectiveKind::kInvert) {
    Engine e(model, {c.layer});
    e.keep_outputs(true, false);
    at::manual_seed(1);
    const at::Tensor x = at::randn({n, 3, 64, 64});
    Pass pass = e.run(x);
    const at::Tensor t = pass.output(0).detach().clone();
    for (int64_t i = 0; i < n; ++i) objective.targets.push_back(t[i]);
    test::save_npy_tensor(dir.file("t.npy"), t);
    spec["objective"]["target"] = dir.file("t.npy");
  }
  std::optional<TransformDraw> draw;
  if (c.draws) {
    draw = TransformDraw{12, 8, 3, 5, 1.06, -7.0, 4, 1, 2};
    spec["draws"] = {
        {"pad", 12},     {"jitter1", {3, 5}}, {"jitter1_size", 8}, {"scale", draw->scale},
        {"angle", -7.0}, {"jitter2", {1, 2}}, {"jitter2_size", 4}};
  } else {
    spec["draws"] = nullptr;
  }
  const Priors priors{c.l2, c.tv, c.blur};
  spec["param"] = c.param;
  spec["decorrelate"] = c.decorrelate;
  spec["size"] = 64;
  spec["batch"] = n;
  spec["param_init"] = dir.file("p.npy");
  spec["objective"]["kind"] = c.kind;
  spec["objective"]["layer"] = c.layer;
  spec["objective"]["units"] = objective.units;
  spec["weights"] = {{"l2", c.l2}, {"tv", c.tv}, {"blur", c.blur}};
  const Preprocessing& pre = model.info().preprocess;
  spec["mean"] = {pre.mean[0], pre.mean[1], pre.mean[2]};
  spec["std"] = {pre.std[0], pre.std[1], pre.std[2]};
  test::write_text(dir.file("spec.json"), spec.dump());
  const test::RunResult r = run_reference(model_path, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json ref = nlohmann::json::parse(r.out);
  const Engine engine = objective_engine(model, objective);
  const StepResult got = objective_step(engine, objective, p, param, draw, priors);
  const at::Tensor want = test::load(dir.file("grad.npy"));
  const double err = relative_l2(got.gradient.to(at::kCPU), want);
  EXPECT_LE(err, 1e-4) << c.name << ": |g - g_ref| / |g_ref|";
  EXPECT_NEAR(got.loss, ref["loss"].get<double>(), 1e-4 * std::max(1.0, std::abs(got.loss)));
  std::cout << c.name << ": gradient relative error " << err << ", loss " << got.loss << " vs "
            << ref["loss"].get<double>() << "\n";
}

INSTANTIATE_TEST_SUITE_P(
    Model, ModelSynthesisGradTest,
    ::testing::Values(GradCase{"fft_decorrelated_transforms_channel", "squeezenet1_1", "fft",
                               "channel", "features.7", true, true, 0, 0, 0},
                      GradCase{"pixel_neuron", "squeezenet1_1", "pixel", "neuron", "features.4",
                               false, false, 0, 0, 0},
                      GradCase{"class_with_priors", "squeezenet1_1", "fft", "class", "", true, true,
                               0.3, 0.7, 0.9},
                      GradCase{"invert_pixel", "squeezenet1_1", "pixel", "invert", "features.5",
                               true, false, 0, 0.2, 0},
                      GradCase{"vgg16_channel", "vgg16", "fft", "channel", "features.10", true,
                               true, 0, 0, 0}),
    [](const ::testing::TestParamInfo<GradCase>& info) { return info.param.name; });

// The dream objective's gradient in the input, after a roll, against the
// reference ("input" parameterization).
TEST(ModelSynthesisTest, DreamGradientMatchesTheReference) {
  const std::string model_path = test::squeezenet_path();
  Model model = Model::load(model_path);
  test::TempDir dir;
  at::manual_seed(7);
  const at::Tensor x = at::randn({2, 3, 80, 80});
  test::save_npy_tensor(dir.file("p.npy"), x);
  nlohmann::json spec = {
      {"param", "input"},
      {"decorrelate", false},
      {"size", 80},
      {"batch", 2},
      {"param_init", dir.file("p.npy")},
      {"draws", {{"roll", {5, -9}}}},
      {"objective", {{"kind", "dream"}, {"layer", "features.6"}, {"units", {0, 0}}}},
      {"weights", {{"l2", 0}, {"tv", 0}, {"blur", 0}}},
      {"mean", {0, 0, 0}},
      {"std", {1, 1, 1}}};
  test::write_text(dir.file("spec.json"), spec.dump());
  const test::RunResult r = run_reference(model_path, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Objective objective;
  objective.layers = {"features.6"};
  const Engine engine = objective_engine(model, objective);
  const at::Tensor g = dream_gradient(engine, x, 5, -9);
  EXPECT_LE(relative_l2(g, test::load(dir.file("grad.npy"))), 1e-4);
}

// A stopped forward pass records the same layer output and gives the same
// input gradient as a whole one.
TEST(ModelSynthesisTest, EarlyStopChangesNothing) {
  Model model = Model::load(test::squeezenet_path());
  at::manual_seed(3);
  const at::Tensor x = at::randn({2, 3, 96, 96});
  at::Tensor out[2], grad[2];
  for (int stop = 0; stop < 2; ++stop) {
    Engine engine(model, {"features.5"});
    engine.keep_outputs(stop == 1);
    Pass pass = engine.run(x);
    EXPECT_EQ(pass.logits().defined(), stop == 0);
    out[stop] = pass.output(0).detach().clone();
    grad[stop] = pass.gradient_of(pass.output(0).pow(2).mean());
  }
  EXPECT_TRUE(at::allclose(out[0], out[1]));
  EXPECT_TRUE(at::allclose(grad[0], grad[1], 1e-5, 1e-7));
}

TEST(ModelSynthesisTest, DeterministicForASeed) {
  Model model = Model::load(test::squeezenet_path());
  Objective objective;
  objective.layers = {"features.7"};
  objective.units = {1, 9};
  const Engine engine = objective_engine(model, objective);
  SynthesisOptions o;
  o.param.size = 48;
  o.steps = 4;
  o.seed = 12;
  const SynthesisResult a = synthesize(engine, objective, 2, o);
  const SynthesisResult b = synthesize(engine, objective, 2, o);
  EXPECT_TRUE(at::equal(a.images, b.images));
  o.seed = 13;
  const SynthesisResult c = synthesize(engine, objective, 2, o);
  EXPECT_FALSE(at::equal(a.images, c.images));
  // Optimizing raises the objective.
  o.steps = 30;
  const SynthesisResult d = synthesize(engine, objective, 2, o);
  EXPECT_GT(d.history.back()[0], d.history.front()[0]);
}

struct FieldCase {
  std::string arch, layer;
  int64_t input;
};

void PrintTo(const FieldCase& c, std::ostream* os) { *os << c.arch << " " << c.layer; }

class ModelReceptiveFieldTest : public ::testing::TestWithParam<FieldCase> {};

// The field from the graph equals the box of input pixels with a non-zero
// gradient for the neuron, over a batch of random inputs (the union: a max
// pooling or a dead ReLU hides a pixel from one input, not from all). The
// sizes are ones every window grid covers to the last pixel: squeezenet's
// first convolution (3x3, stride 2, no padding) never reads the last row of
// a 128-pixel input, which its field, computed for any input size, includes.
TEST_P(ModelReceptiveFieldTest, EqualsTheBruteForceBox) {
  const FieldCase& c = GetParam();
  Model model = Model::load(test::test_models_dir() + "/" + c.arch + ".pt");
  const ReceptiveField rf = receptive_field(model, c.layer);
  ASSERT_FALSE(rf.global);
  at::manual_seed(5);
  const at::Tensor x = at::randn({4, 3, c.input, c.input});
  Engine engine(model, {c.layer});
  engine.keep_outputs(/*stop=*/true);
  int64_t h = 0, w = 0;
  {
    Pass probe = engine.run(x.slice(0, 0, 1));
    h = probe.output(0).size(2);
    w = probe.output(0).size(3);
  }
  for (auto [y, xx] : {std::pair<int64_t, int64_t>{h / 2, w / 2}, {0, 0}, {h - 1, w / 3}}) {
    // A max pooling passes each channel's gradient to one position of its
    // window, and a dead ReLU none: the sum over every channel, and the
    // union over images, reach every pixel the neuron can see.
    Pass pass = engine.run(x);
    const at::Tensor g = pass.gradient_of(pass.output(0).select(2, y).select(2, xx).sum());
    const at::Tensor hit = g.abs().sum(at::IntArrayRef{0, 1}) > 0;  // [H,W]
    const at::Tensor rows = at::nonzero(hit.any(1)).flatten(),
                     cols = at::nonzero(hit.any(0)).flatten();
    ASSERT_GT(rows.numel(), 0);
    const PixelBox box = receptive_box(rf, y, xx, c.input, c.input);
    EXPECT_EQ(box.y0, rows.min().item<int64_t>()) << "neuron " << y << "," << xx;
    EXPECT_EQ(box.y1, rows.max().item<int64_t>() + 1) << "neuron " << y << "," << xx;
    EXPECT_EQ(box.x0, cols.min().item<int64_t>()) << "neuron " << y << "," << xx;
    EXPECT_EQ(box.x1, cols.max().item<int64_t>() + 1) << "neuron " << y << "," << xx;
  }
  std::cout << c.arch << " " << c.layer << ": size " << rf.size[0] << ", stride " << rf.stride[0]
            << ", start " << rf.start[0] << "\n";
}

INSTANTIATE_TEST_SUITE_P(Model, ModelReceptiveFieldTest,
                         ::testing::Values(FieldCase{"squeezenet1_1", "features.9", 127},
                                           FieldCase{"vgg16", "features.16", 96},
                                           FieldCase{"vgg16", "features.9", 64},
                                           FieldCase{"resnet50", "layer1", 96},
                                           FieldCase{"resnet50", "layer2", 160}),
                         [](const ::testing::TestParamInfo<FieldCase>& info) {
                           std::string s = info.param.arch + "_" + info.param.layer;
                           std::replace(s.begin(), s.end(), '.', '_');
                           return s;
                         });

TEST(ModelSynthesisTest, GlobalFieldsAfterAGlobalOperation) {
  Model model = Model::load(test::squeezenet_path());
  EXPECT_TRUE(receptive_field(model, "classifier").global);
  EXPECT_FALSE(receptive_field(model, "features.3").global);
  test::expect_error([&] { receptive_field(model, "features.99"); }, ErrorCode::kUnsupported,
                     "features.99");
}

}  // namespace
}  // namespace cnnviz
