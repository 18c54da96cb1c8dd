// End-to-end tests of the cnnviz binary: exit codes, messages, output formats.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "map_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::squeezenet_path();
    cv::Mat img(240, 320, CV_8UC3);
    cv::randu(img, 0, 255);
    good_ = dir_.file("good.png");
    ASSERT_TRUE(cv::imwrite(good_, img));
    good2_ = dir_.file("second.jpg");
    ASSERT_TRUE(cv::imwrite(good2_, img));
  }

  test::RunResult cnnviz(std::vector<std::string> args,
                         const std::map<std::string, std::string>& env = {}) {
    // The caller's CNNVIZ_MODEL/CNNVIZ_MODELS stay out unless a test sets them.
    return test::run_cnnviz(args, env);
  }

  // Every stderr line is a cnnviz message: no stack trace, no library noise.
  static void expect_clean_stderr(const std::string& err) {
    for (const std::string& line : test::lines(err)) {
      EXPECT_EQ(line.rfind("cnnviz: ", 0), 0u) << "stray stderr line: " << line;
    }
  }

  test::TempDir dir_;
  std::string model_, good_, good2_;
};

TEST_F(CliTest, HelpAndVersionExitZero) {
  test::RunResult help = cnnviz({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("classify"), std::string::npos);
  EXPECT_NE(help.out.find("Exit codes"), std::string::npos);
  test::RunResult sub = cnnviz({"classify", "--help"});
  EXPECT_EQ(sub.exit_code, 0);
  EXPECT_NE(sub.out.find("--top-k"), std::string::npos);
  EXPECT_NE(sub.out.find("CNNVIZ_MODEL"), std::string::npos);
  test::RunResult version = cnnviz({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out.rfind("cnnviz ", 0), 0u);
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(cnnviz({}).exit_code, 2);
  EXPECT_EQ(cnnviz({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(cnnviz({"classify"}).exit_code, 2);  // no image
  test::RunResult zero = cnnviz({"classify", "-m", model_, "-k", "0", good_});
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_NE(zero.err.find("-k"), std::string::npos) << zero.err;
  test::RunResult huge = cnnviz({"classify", "-m", model_, "-k", "5000", good_});
  EXPECT_EQ(huge.exit_code, 2);
  EXPECT_NE(huge.err.find("-k 5000: must be between 1 and 1000"), std::string::npos) << huge.err;
  expect_clean_stderr(huge.err);
}

TEST_F(CliTest, ClassifyPrintsTopKPerImage) {
  test::RunResult r = cnnviz({"classify", "-m", model_, "-k", "3", good_, good2_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> out = test::lines(r.out);
  ASSERT_EQ(out.size(), 8u) << r.out;
  EXPECT_EQ(out[0], good_);
  EXPECT_EQ(out[4], good2_);
  EXPECT_EQ(out[1].substr(0, 5), "   1 ");
  // Random weights are announced loudly on stderr.
  EXPECT_NE(r.err.find("RANDOM weights"), std::string::npos);
  expect_clean_stderr(r.err);
}

TEST_F(CliTest, JsonOutputFollowsTheSchema) {
  test::RunResult r = cnnviz({"classify", "-m", model_, "--json", good_, good2_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["model"]["arch"], "squeezenet1_1");
  EXPECT_EQ(doc["model"]["weights"]["kind"], "random");
  ASSERT_EQ(doc["results"].size(), 2u);
  EXPECT_EQ(doc["results"][0]["image"], good_);
  const auto& preds = doc["results"][0]["predictions"];
  ASSERT_EQ(preds.size(), 5u);
  for (size_t i = 0; i < preds.size(); ++i) {
    EXPECT_EQ(preds[i]["rank"], i + 1);
    EXPECT_TRUE(preds[i]["label"].is_string());
    if (i > 0) {
      EXPECT_LE(preds[i]["probability"], preds[i - 1]["probability"]);
    }
  }
  EXPECT_EQ(doc["summary"]["failed"], 0);
  // The same image decoded twice (PNG and lossless-enough JPEG aside) is
  // classified by a deterministic network: two runs give identical output.
  EXPECT_EQ(cnnviz({"classify", "-m", model_, "--json", good_, good2_}).out, r.out);
}

TEST_F(CliTest, BatchingDoesNotChangeResults) {
  test::RunResult one =
      cnnviz({"classify", "-m", model_, "--json", "--batch-size", "1", good_, good2_, good_});
  test::RunResult three =
      cnnviz({"classify", "-m", model_, "--json", "--batch-size", "3", good_, good2_, good_});
  ASSERT_EQ(one.exit_code, 0);
  ASSERT_EQ(three.exit_code, 0);
  auto a = nlohmann::json::parse(one.out)["results"];
  auto b = nlohmann::json::parse(three.out)["results"];
  for (size_t i = 0; i < 3; ++i) {
    for (size_t k = 0; k < 5; ++k) {
      EXPECT_EQ(a[i]["predictions"][k]["index"], b[i]["predictions"][k]["index"]);
      EXPECT_NEAR(a[i]["predictions"][k]["probability"].get<double>(),
                  b[i]["predictions"][k]["probability"].get<double>(), 1e-5);
    }
  }
}

TEST_F(CliTest, BadImagesAreReportedAndTheOthersStillRun) {
  test::write_text(dir_.file("text.png"), "not an image");
  std::string jpeg = test::read_text(good2_);
  test::write_text(dir_.file("cut.jpg"), jpeg.substr(0, jpeg.size() / 2));
  test::RunResult r = cnnviz({"classify", "-m", model_, "--json", dir_.file("missing.jpg"), good_,
                              dir_.file("text.png"), dir_.file("cut.jpg")});
  EXPECT_EQ(r.exit_code, 3);
  expect_clean_stderr(r.err);
  EXPECT_NE(r.err.find("image '" + dir_.file("missing.jpg") + "': not found"), std::string::npos);
  EXPECT_NE(r.err.find("image '" + dir_.file("text.png") + "': not an image"), std::string::npos);
  EXPECT_NE(r.err.find("image '" + dir_.file("cut.jpg") + "': truncated JPEG"), std::string::npos);
  EXPECT_NE(r.err.find("1 done, 0 skipped, 3 failed of 4"), std::string::npos) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  ASSERT_EQ(doc["results"].size(), 4u);
  EXPECT_TRUE(doc["results"][0].contains("error"));
  EXPECT_EQ(doc["results"][1]["predictions"].size(), 5u);
  EXPECT_EQ(doc["summary"]["failed"], 3);
}

TEST_F(CliTest, ModelProblemsExitFour) {
  test::write_text(dir_.file("broken.pt"), "definitely not torchscript");
  test::RunResult corrupt = cnnviz({"classify", "-m", dir_.file("broken.pt"), good_});
  EXPECT_EQ(corrupt.exit_code, 4);
  EXPECT_EQ(test::lines(corrupt.err).size(), 1u) << corrupt.err;
  EXPECT_NE(corrupt.err.find("cannot load model '" + dir_.file("broken.pt") + "'"),
            std::string::npos);

  test::RunResult missing =
      cnnviz({"classify", "-m", "vgg19", good_}, {{"CNNVIZ_MODELS", test::test_models_dir()}});
  EXPECT_EQ(missing.exit_code, 4);
  EXPECT_EQ(test::lines(missing.err).size(), 1u) << missing.err;
  EXPECT_NE(missing.err.find("squeezenet1_1"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("scripts/export_models.py vgg19"), std::string::npos);
}

TEST_F(CliTest, ModelComesFromTheEnvironment) {
  test::RunResult r =
      cnnviz({"classify", "-k", "1", good_},
             {{"CNNVIZ_MODEL", "squeezenet1_1"}, {"CNNVIZ_MODELS", test::test_models_dir()}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::lines(r.out).size(), 2u);
  test::RunResult dir_flag =
      cnnviz({"classify", "-m", "squeezenet1_1", "--models-dir", test::test_models_dir(), good_});
  EXPECT_EQ(dir_flag.exit_code, 0) << dir_flag.err;
}

TEST_F(CliTest, TimingsAreOneJsonLine) {
  test::RunResult r = cnnviz({"classify", "-m", model_, "--timings", good_});
  ASSERT_EQ(r.exit_code, 0);
  const std::string marker = "cnnviz: timings ";
  size_t at = r.err.find(marker);
  ASSERT_NE(at, std::string::npos) << r.err;
  std::string line = r.err.substr(at + marker.size());
  nlohmann::json t = nlohmann::json::parse(line.substr(0, line.find('\n')));
  EXPECT_EQ(t["images"], 1);
  EXPECT_GE(t["threads"].get<int>(), 1);
  EXPECT_GT(t["run_ms"].get<double>(), 0.0);
}


// The BLAS is read from the process: run with each of Debian's libblas.so.3
// builds first on the library path, --version names it, and a model with
// matrix products warns once on the reference one only.
TEST(CliBlasTest, VersionNamesTheLoadedBlasAndTheReferenceOneWarns) {
  const std::string vit = test::test_models_dir() + "/tiny_vit.pt";
  const std::string cnn = test::squeezenet_path();
  test::TempDir dir;
  const std::string image = test::smooth_image(dir, 1);
  const std::string lib = "/usr/lib/x86_64-linux-gnu/";
  struct Case {
    std::string dir, name;
    bool warns;
  };
  int tried = 0;
  for (const Case& c : {Case{lib + "blas", "BLAS: reference BLAS (netlib), ", true},
                        Case{lib + "openblas-openmp", "BLAS: OpenBLAS ", false}}) {
    if (!std::filesystem::exists(c.dir + "/libblas.so.3")) continue;
    ++tried;
    const std::map<std::string, std::string> env = {{"LD_LIBRARY_PATH", c.dir}};
    const test::RunResult version = test::run_cnnviz({"--version"}, env);
    ASSERT_EQ(version.exit_code, 0) << version.err;
    EXPECT_NE(version.out.find("\n" + c.name), std::string::npos) << version.out;
    const test::RunResult r = test::run_cnnviz({"classify", "-m", vit, image, image}, env);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string warning = "multiplies matrices, and they run on the reference BLAS";
    const size_t at = r.err.find(warning);
    EXPECT_EQ(at != std::string::npos, c.warns) << r.err;
    if (at != std::string::npos) {
      EXPECT_EQ(r.err.find(warning, at + 1), std::string::npos) << "warned twice: " << r.err;
      EXPECT_NE(r.err.find("install libopenblas0-openmp"), std::string::npos) << r.err;
    }
    // Convolutions do not go through the BLAS: no warning for a CNN.
    const test::RunResult conv = test::run_cnnviz({"classify", "-m", cnn, image}, env);
    ASSERT_EQ(conv.exit_code, 0) << conv.err;
    EXPECT_EQ(conv.err.find(warning), std::string::npos) << conv.err;
  }
  if (tried == 0) GTEST_SKIP() << "neither of Debian's libblas.so.3 builds is installed";
}

}  // namespace
}  // namespace cnnviz
