// The feature-visualization subcommands end to end: files, sheets,
// manifests, the report, resume and shards of top-activations, and bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

class CliSynthesisTest : public ::testing::Test {
 protected:
  void SetUp() override { model_ = test::squeezenet_path(); }

  // `n` photo-like images (blurred noise of different seeds), 160x120.
  std::vector<std::string> images(int n, const std::string& sub = "imgs") {
    fs::create_directories(dir_.file(sub));
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
      cv::Mat img(120, 160, CV_8UC3);
      cv::RNG rng(static_cast<uint64_t>(100 + i));
      rng.fill(img, cv::RNG::UNIFORM, 0, 255);
      cv::GaussianBlur(img, img, cv::Size(7, 7), 2.0);
      out.push_back(dir_.file(sub + "/img" + std::to_string(i) + ".png"));
      cv::imwrite(out.back(), img);
    }
    return out;
  }

  nlohmann::json manifest(const std::string& outdir) {
    return nlohmann::json::parse(test::read_text(outdir + "/manifest.json"));
  }

  std::string model_;
  test::TempDir dir_;
};

TEST_F(CliSynthesisTest, FiltersWriteImagesASheetAndAManifestTheReportShows) {
  const std::string out = dir_.file("f");
  test::RunResult r =
      test::run_cnnviz({"filters", "-m", model_, "--layer", "features.7", "--channels", "0-2,9",
                        "--steps", "3", "--size", "48", "--batch", "3", "-o", out, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = manifest(out);
  EXPECT_EQ(m["format"], "cnnviz/synthesis");
  EXPECT_EQ(m["command"], "filters");
  ASSERT_EQ(m["images"].size(), 4u);
  EXPECT_EQ(m["images"][3]["unit"]["channel"], 9);
  EXPECT_EQ(m["images"][3]["history"].back()[0], 3);
  for (const auto& e : m["images"]) {
    const cv::Mat img = cv::imread(out + "/" + e["files"][0]["path"].get<std::string>());
    EXPECT_EQ(img.cols, 48);
    EXPECT_EQ(img.rows, 48);
  }
  const cv::Mat sheet = cv::imread(out + "/filters/features.7_sheet.png");
  EXPECT_EQ(sheet.cols, 4 * 48);
  EXPECT_EQ(nlohmann::json::parse(r.out)["images"].size(), 4u);
  r = test::run_cnnviz({"report", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(test::read_text(out + "/index.html").find("features.7_ch9.png"), std::string::npos);
}

TEST_F(CliSynthesisTest, ClassModelReportsTheFinalProbability) {
  const std::string out = dir_.file("c");
  test::RunResult r =
      test::run_cnnviz({"class-model", "-m", model_, "--class", "3", "--class", "goldfish",
                        "--steps", "2", "--size", "40", "--tv", "0.5", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = manifest(out);
  ASSERT_EQ(m["images"].size(), 2u);
  EXPECT_EQ(m["images"][1]["class"], 1);
  const double p = m["images"][0]["probability"].get<double>();
  EXPECT_TRUE(p > 0 && p <= 1);
  EXPECT_EQ(m["options"]["tv"], 0.5);
  EXPECT_TRUE(fs::exists(out + "/class-model/c3.png"));
  EXPECT_TRUE(fs::exists(out + "/class-model/sheet.png"));
}

TEST_F(CliSynthesisTest, DreamKeepsEachImageSizeAndABadFileFailsAlone) {
  std::vector<std::string> in = images(2);
  test::write_text(dir_.file("imgs/broken.png"), "not a png");
  const std::string out = dir_.file("d");
  test::RunResult r = test::run_cnnviz({"dream", "-m", model_, "--layer", "features.6", "--octaves",
                                        "2", "--steps", "2", "-o", out, dir_.file("imgs")});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("broken.png"), std::string::npos) << r.err;
  const nlohmann::json m = manifest(out);
  ASSERT_EQ(m["images"].size(), 3u);
  int written = 0;
  for (const auto& e : m["images"]) {
    if (e.contains("error")) continue;
    const cv::Mat img = cv::imread(out + "/" + e["files"][0]["path"].get<std::string>());
    EXPECT_EQ(img.cols, 160);
    EXPECT_EQ(img.rows, 120);
    EXPECT_GT(e["activation_rms_after"].get<double>(), e["activation_rms_before"].get<double>());
    ++written;
  }
  EXPECT_EQ(written, 2);
}

TEST_F(CliSynthesisTest, InvertAllLayersWritesOnePerStageAndASheet) {
  std::vector<std::string> in = images(1);
  const std::string out = dir_.file("i");
  test::RunResult r = test::run_cnnviz(
      {"invert", "-m", model_, "--all-layers", "--steps", "2", "--size", "64", "-o", out, in[0]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = manifest(out);
  const size_t stages = m["layers"].size();
  EXPECT_GE(stages, 10u);
  EXPECT_EQ(m["images"][0]["files"].size(), stages + 1);
  EXPECT_EQ(m["images"][0]["relative_error"].size(), stages);
  EXPECT_TRUE(fs::exists(out + "/img0/invert_contact.png"));
}

std::string top_lists(const nlohmann::json& m) {
  nlohmann::json t = nlohmann::json::array();
  for (const auto& e : m["images"]) t.push_back(e["top"]);
  return t.dump();
}

// The whole run, the run resumed from the state of its first half, and two
// shards merged keep the same images, values and positions.
TEST_F(CliSynthesisTest, TopActivationsResumeAndShardsAgreeWithOneRun) {
  std::vector<std::string> in = images(8);
  const std::vector<std::string> base = {
      "top-activations", "-m",  model_, "--layer",      "features.5", "--channels",
      "0-3,40",          "--k", "3",    "--batch-size", "3"};
  auto with = [&](std::vector<std::string> extra, const std::vector<std::string>& files) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), files.begin(), files.end());
    return test::run_cnnviz(args);
  };
  const std::string whole = dir_.file("whole");
  test::RunResult r = with({"-o", whole}, in);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = manifest(whole);
  ASSERT_EQ(m["images"].size(), 5u);
  EXPECT_EQ(m["images"][0]["top"].size(), 3u);
  EXPECT_FALSE(m["receptive_field"]["global"].get<bool>());
  EXPECT_TRUE(fs::exists(whole + "/top/features.5_ch40_patches.png"));
  EXPECT_TRUE(fs::exists(whole + "/top/features.5_ch40_boxes.png"));

  const std::string resumed = dir_.file("resumed");
  r = with({"-o", resumed}, std::vector<std::string>(in.begin(), in.begin() + 4));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = with({"-o", resumed, "--resume"}, in);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(top_lists(manifest(resumed)), top_lists(m));

  const std::string sharded = dir_.file("sharded");
  for (const char* shard : {"1/2", "2/2"}) {
    r = with({"-o", sharded, "--shard", shard}, in);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_FALSE(fs::exists(sharded + "/manifest.json"));
  r = with({"-o", sharded, "--merge"}, {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(top_lists(manifest(sharded)), top_lists(m));
}

TEST_F(CliSynthesisTest, BadInputGetsOneLineAndItsExitCode) {
  std::vector<std::string> in = images(1);
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"filters", "--layer", "features.3", "--channels", "500"}, 2, "channels, 0-"},
      {{"filters", "--layer", "features.3", "--steps", "0"}, 2, "--steps"},
      {{"filters", "--layer", "features.42"}, 5, "not found"},
      {{"filters", "--layer", "classifier"}, 5, "not a spatial map"},
      {{"class-model", "--class", "5000"}, 2, "5000"},
      {{"class-model", "--class", "no such label"}, 2, "no such label"},
      {{"dream", "--layer", "classifier", in[0]}, 5, "not a spatial map"},
      {{"invert", in[0]}, 2, "--all-layers"},
      {{"top-activations", "--layer", "features.3", "--channels", "3-1", in[0]}, 2, "empty"},
      {{"top-activations", "--layer", "features.3", "--merge", "-o", dir_.file("none")},
       3,
       "no state files"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = c.args;
    args.insert(args.begin() + 1, {"-m", model_});
    const test::RunResult r = test::run_cnnviz(args);
    EXPECT_EQ(r.exit_code, c.code) << args[0] << " " << args.back() << ": " << r.err;
    // One line, after the warning every run of a random-weight model prints.
    std::vector<std::string> said;
    for (const std::string& line : test::lines(r.err)) {
      if (line.find("RANDOM weights") == std::string::npos && line.rfind("cnnviz:   ", 0) != 0) {
        said.push_back(line);
      }
    }
    ASSERT_EQ(said.size(), 1u) << r.err;
    EXPECT_NE(said[0].find(c.says), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace cnnviz
