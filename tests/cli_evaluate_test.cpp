// End-to-end tests of `cnnviz evaluate`: curves, plots, the randomization
// check, the table, and bad images among good ones.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cnnviz/methods/methods.h"
#include "test_util.h"

namespace cnnviz {
namespace {

using CliEvaluateTest = test::PhotoCliTest;

TEST_F(CliEvaluateTest, EvaluateWritesCurvesAndKeepsGoingPastBadImages) {
  const std::string bad = dir_.file("bad.png");
  test::write_text(bad, "not an image");
  test::RunResult r = cnnviz({"evaluate", "-q", "-m", model_, "--method", "gradcam,saliency",
                              "--steps", "8", "-o", out_, "--json", image_, bad});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc, read_json(out_ + "/evaluate.json"));
  ASSERT_EQ(doc["images"].size(), 2u);
  EXPECT_TRUE(doc["images"][1].contains("error"));
  EXPECT_NE(doc["images"][1]["error"].get<std::string>().find("bad.png"), std::string::npos);
  const auto& m = doc["images"][0]["methods"];
  for (const char* method : {"gradcam", "saliency"}) {
    ASSERT_TRUE(m.contains(method)) << method;
    EXPECT_EQ(m[method]["deletion"].size(), 9u);
    EXPECT_EQ(m[method]["insertion"].size(), 9u);
    EXPECT_GE(m[method]["deletion_auc"].get<double>(), 0.0);
    EXPECT_LE(m[method]["insertion_auc"].get<double>(), 1.0);
    EXPECT_FALSE(cv::imread(out_ + "/" + m[method]["plot"].get<std::string>()).empty());
    // Cascading randomization of squeezenet's 26 weight layers: 1, 2, ..., 16, 26.
    EXPECT_EQ(m[method]["randomization"].size(), 6u);
  }
  EXPECT_EQ(doc["randomization_levels"].back()["top"], 26);
  EXPECT_EQ(doc["summary"]["gradcam"]["images"], 1);
  // The table form.
  r = cnnviz({"evaluate", "-q", "-m", model_, "--method", "cam", "--steps", "4",
              "--no-randomization", "--no-plots", "-o", out_ + "2", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("del AUC"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cam"), std::string::npos) << r.out;
  r = cnnviz({"evaluate", "-m", model_, image_});
  EXPECT_EQ(r.exit_code, 2) << "--method is required";
}

TEST_F(CliEvaluateTest, AttentionMethodsAreScoredOnTheirLastBlocksMap) {
  const std::string vit = test::test_models_dir() + "/tiny_vit.pt";
  test::RunResult r = cnnviz({"evaluate", "-q", "-m", vit, "--method",
                              "attention,rollout,attention-grad", "--steps", "4", "--no-plots",
                              "-o", out_, "--json", image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  for (const char* method : {"attention", "rollout", "attention-grad"}) {
    const auto& m = doc["images"][0]["methods"][method];
    EXPECT_EQ(m["deletion"].size(), 5u) << method;
    EXPECT_FALSE(m["randomization"].empty()) << method;
  }
  for (const char* method : {"attention", "rollout", "attention-grad"}) {
    EXPECT_EQ(find_method(method).summary_map(2), 1u) << method;
  }
  EXPECT_EQ(find_method("gradcam").summary_map(5), 0u);
}

}  // namespace
}  // namespace cnnviz
