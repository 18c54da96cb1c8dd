// The run layer in process: explain (explain.h), classify (classify.h) and
// evaluate (evaluate.h) called as functions on small generated images, so
// that a failure points at the run, not at a subprocess. What each returns
// and writes, a bad image among good ones, --skip-existing and shards.
// Properties only: squeezenet1_1 has random weights.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cnnviz/core/model.h"
#include "cnnviz/run/classify.h"
#include "cnnviz/run/evaluate.h"
#include "cnnviz/run/explain.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/progress.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {
namespace {

class ModelRunTest : public ::testing::Test {
 protected:
  void SetUp() override { model_.emplace(Model::load(test::squeezenet_path())); }

  const Model& model() const { return *model_; }

  // A small PNG of uniform noise (`seed`) in the test's directory.
  std::string image(const std::string& name, uint64_t seed) {
    cv::Mat m(40, 56, CV_8UC3);
    cv::RNG(seed).fill(m, cv::RNG::UNIFORM, 0, 256);
    const std::string path = dir_.file(name);
    EXPECT_TRUE(cv::imwrite(path, m)) << path;
    return path;
  }

  // A file with an image's name that is no image.
  std::string bad_image(const std::string& name) {
    const std::string path = dir_.file(name);
    test::write_text(path, "not an image\n");
    return path;
  }

  // Grad-CAM at the default layer, top-1 class, every variant, few threads.
  ExplainOptions explain_options() const {
    ExplainOptions o;
    o.method = "gradcam";
    o.outdir = dir_.file("out");
    o.batch_size = 2;
    o.decoders = 1;
    o.writers = 2;
    return o;
  }

  static json read_json(const std::string& path) { return json::parse(test::read_text(path)); }

  // The files an entry lists, as paths under `outdir`; each exists and is
  // not empty.
  static std::vector<std::string> listed_files(const std::string& outdir, const json& entry) {
    std::vector<std::string> paths;
    for (const json& f : entry["files"]) {
      const std::string path = outdir + "/" + f["path"].get<std::string>();
      EXPECT_TRUE(fs::is_regular_file(path)) << path;
      EXPECT_GT(fs::file_size(path), 0u) << path;
      EXPECT_EQ(f["path"].get<std::string>().rfind(entry["dir"].get<std::string>() + "/", 0), 0u)
          << f["path"] << " is not in the image's directory " << entry["dir"];
      paths.push_back(path);
    }
    return paths;
  }

  test::TempDir dir_;
  std::optional<Model> model_;
  std::ostringstream err_;  // what Progress prints
};

// --- explain ---

TEST_F(ModelRunTest, ExplainWritesTheManifestAndEveryFileItLists) {
  const std::vector<std::string> images = {image("a.png", 1), image("b.png", 2)};
  const ExplainOptions o = explain_options();
  Progress progress(err_, images.size(), false);
  const ExplainSummary s = explain(model(), images, o, progress);

  EXPECT_EQ(s.images, 2u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.skipped, 0u);
  EXPECT_FALSE(s.interrupted);
  EXPECT_EQ(progress.failures(), 0u);
  const json& doc = s.manifest;
  EXPECT_EQ(doc, read_json(o.outdir + "/manifest.json")) << "returned as written";
  EXPECT_EQ(doc["method"], "gradcam");
  EXPECT_EQ(doc["layers"], json::array({model().info().default_layer}));
  EXPECT_TRUE(doc["shard"].is_null());
  EXPECT_EQ(doc["summary"]["images"], 2);
  EXPECT_EQ(doc["summary"]["failed"], 0);
  EXPECT_EQ(doc["summary"]["skipped"], 0);
  ASSERT_EQ(doc["images"].size(), 2u);
  size_t files = 0, bytes = 0;
  std::set<std::string> dirs;
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(images[i]);
    const json& e = doc["images"][i];
    EXPECT_EQ(e["image"], images[i]);
    EXPECT_EQ(e["index"], i);
    EXPECT_FALSE(e.contains("error"));
    dirs.insert(e["dir"].get<std::string>());
    // One target, the top class, with the predictions it comes from.
    ASSERT_EQ(e["targets"].size(), 1u);
    const json& t = e["targets"][0];
    EXPECT_EQ(t["source"], "top");
    EXPECT_EQ(t["rank"], 1);
    ASSERT_FALSE(e["predictions"].empty());
    EXPECT_EQ(t["class"], e["predictions"][0]["index"]);
    EXPECT_GE(t["class"].get<int64_t>(), 0);
    EXPECT_LT(t["class"].get<int64_t>(), 1000);
    // Every variant of a layer map: npy, gray, heatmap, overlay, overlay_full.
    const std::vector<std::string> paths = listed_files(o.outdir, e);
    EXPECT_EQ(paths.size(), 5u);
    files += paths.size();
    for (const std::string& p : paths) bytes += fs::file_size(p);
  }
  EXPECT_EQ(dirs, (std::set<std::string>{"a", "b"}));
  EXPECT_EQ(s.files_written, files);
  EXPECT_EQ(s.bytes_written, bytes);
  // The journal holds each finished image.
  EXPECT_EQ(test::lines(test::read_text(o.outdir + "/journal.jsonl")).size(), 2u);
}

TEST_F(ModelRunTest, ExplainFailsAnUnreadableImageAlone) {
  const std::vector<std::string> images = {image("a.png", 1), bad_image("bad.png"),
                                           image("b.png", 2)};
  const ExplainOptions o = explain_options();
  Progress progress(err_, images.size(), false);
  const ExplainSummary s = explain(model(), images, o, progress);

  EXPECT_EQ(s.images, 3u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(progress.failures(), 1u);
  const json& doc = s.manifest;
  EXPECT_EQ(doc["summary"]["failed"], 1);
  ASSERT_EQ(doc["images"].size(), 3u);
  const json& bad = doc["images"][1];
  EXPECT_EQ(bad["image"], images[1]);
  ASSERT_TRUE(bad.contains("error"));
  EXPECT_NE(bad["error"].get<std::string>().find("bad.png"), std::string::npos) << bad["error"];
  EXPECT_FALSE(bad.contains("files"));
  for (size_t i : {0u, 2u}) {
    SCOPED_TRACE(images[i]);
    const json& e = doc["images"][i];
    EXPECT_FALSE(e.contains("error"));
    EXPECT_EQ(listed_files(o.outdir, e).size(), 5u);
  }
}

TEST_F(ModelRunTest, ExplainSkipsCompleteImagesOfAnEarlierRun) {
  const std::vector<std::string> images = {image("a.png", 1), image("b.png", 2)};
  ExplainOptions o = explain_options();
  std::map<std::string, fs::file_time_type> first;  // every file of the first run
  {
    Progress progress(err_, images.size(), false);
    const ExplainSummary s = explain(model(), images, o, progress);
    ASSERT_EQ(s.failed, 0u);
    for (const json& e : s.manifest["images"]) {
      for (const std::string& p : listed_files(o.outdir, e)) first[p] = fs::last_write_time(p);
    }
  }
  ASSERT_EQ(first.size(), 10u);

  o.skip_existing = true;
  Progress progress(err_, images.size(), false);
  const ExplainSummary s = explain(model(), images, o, progress);
  EXPECT_EQ(s.images, 2u);
  EXPECT_EQ(s.skipped, 2u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.files_written, 0u);
  EXPECT_EQ(s.bytes_written, 0u);
  EXPECT_EQ(s.manifest["summary"]["skipped"], 2);
  ASSERT_EQ(s.manifest["images"].size(), 2u);
  // The manifest lists the earlier files, untouched; none was added.
  std::map<std::string, fs::file_time_type> second;
  for (const json& e : s.manifest["images"]) {
    for (const std::string& p : listed_files(o.outdir, e)) second[p] = fs::last_write_time(p);
  }
  EXPECT_EQ(second, first);
  for (const char* stem : {"a", "b"}) {
    size_t n = 0;
    for (const auto& f : fs::directory_iterator(o.outdir + "/" + stem)) n += f.is_regular_file();
    EXPECT_EQ(n, 5u) << stem;
  }
}

TEST_F(ModelRunTest, ExplainWithAShardWritesOnlyItsShare) {
  const std::vector<std::string> images = {image("a.png", 1), image("b.png", 2), image("c.png", 3)};
  ExplainOptions o = explain_options();
  o.shard = parse_shard("2/2");
  ASSERT_EQ(shard_positions(images.size(), o.shard), std::vector<size_t>{1});
  Progress progress(err_, 1, false);
  const ExplainSummary s = explain(model(), images, o, progress);

  EXPECT_EQ(s.images, 1u);
  EXPECT_EQ(s.failed, 0u);
  const json& doc = s.manifest;
  EXPECT_EQ(doc, read_json(o.outdir + "/manifest.shard-2-of-2.json"));
  EXPECT_FALSE(fs::exists(o.outdir + "/manifest.json"));
  EXPECT_TRUE(fs::exists(o.outdir + "/journal.shard-2-of-2.jsonl"));
  EXPECT_EQ(doc["shard"], "shard-2-of-2");
  EXPECT_EQ(doc["inputs"], 3);
  EXPECT_EQ(doc["summary"]["images"], 1);
  ASSERT_EQ(doc["images"].size(), 1u);
  EXPECT_EQ(doc["images"][0]["image"], images[1]);
  EXPECT_EQ(doc["images"][0]["index"], 1);
  EXPECT_EQ(listed_files(o.outdir, doc["images"][0]).size(), 5u);
  EXPECT_TRUE(fs::is_directory(o.outdir + "/b"));
  EXPECT_FALSE(fs::exists(o.outdir + "/a")) << "another shard's image";
  EXPECT_FALSE(fs::exists(o.outdir + "/c")) << "another shard's image";
}

// --- classify ---

TEST_F(ModelRunTest, ClassifyGivesTopKAndTheRankOfGivenClasses) {
  const std::vector<std::string> images = {image("a.png", 1), bad_image("bad.png"),
                                           image("b.png", 2)};
  ClassifyOptions o;
  o.top_k = 3;
  o.batch_size = 2;
  o.decoders = 1;
  std::vector<std::string> seen;
  Progress progress(err_, images.size(), false);
  const ClassifySummary s = classify(model(), images, o, progress,
                                     [&](const ClassifyResult& r) { seen.push_back(r.image); });

  EXPECT_EQ(seen, (std::vector<std::string>{images[0], images[2]})) << "good ones, in order";
  EXPECT_FALSE(s.interrupted);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(progress.failures(), 1u);
  ASSERT_EQ(s.results.size(), 3u);
  const ClassifyResult& bad = s.results[1];
  EXPECT_EQ(bad.image, images[1]);
  ASSERT_TRUE(bad.error.has_value());
  EXPECT_NE(bad.error->find("bad.png"), std::string::npos) << *bad.error;
  EXPECT_TRUE(bad.predictions.empty());
  for (size_t i : {0u, 2u}) {
    const ClassifyResult& r = s.results[i];
    SCOPED_TRACE(r.image);
    EXPECT_EQ(r.image, images[i]);
    EXPECT_FALSE(r.error.has_value());
    EXPECT_TRUE(r.done());
    EXPECT_TRUE(r.targets.empty()) << "no class given";
    ASSERT_EQ(r.predictions.size(), 3u);
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_GT(r.predictions[k].probability, 0.0);
      EXPECT_LE(r.predictions[k].probability, 1.0);
      if (k > 0) {
        EXPECT_GE(r.predictions[k - 1].probability, r.predictions[k].probability);
      }
    }
  }

  // Again, with the first image's third and first classes given (--class
  // applies to every image): there, ranks 3 and 1, at the probabilities
  // they were predicted with.
  const std::vector<Prediction> top = s.results[0].predictions;
  o.targets.classes = {std::to_string(top[2].index), std::to_string(top[0].index)};
  Progress again(err_, images.size(), false);
  const ClassifySummary g = classify(model(), images, o, again, [](const ClassifyResult&) {});
  EXPECT_EQ(g.failed, 1u);
  ASSERT_EQ(g.results.size(), 3u);
  EXPECT_EQ(g.results[2].targets.size(), 2u);
  ASSERT_EQ(g.results[0].targets.size(), 2u);
  const TargetScore& third = g.results[0].targets[0];
  const TargetScore& first = g.results[0].targets[1];
  EXPECT_EQ(third.index, top[2].index);
  EXPECT_EQ(third.spec, std::to_string(top[2].index));
  EXPECT_EQ(third.source, "class");
  EXPECT_EQ(third.rank, 3);
  EXPECT_NEAR(third.probability, top[2].probability, 1e-6);
  EXPECT_EQ(first.index, top[0].index);
  EXPECT_EQ(first.rank, 1);
  EXPECT_NEAR(first.probability, top[0].probability, 1e-6);
  EXPECT_GT(first.logit, third.logit);
  EXPECT_EQ(g.results[0].predictions.size(), 3u) << "the top classes still";
}

// --- evaluate ---

TEST_F(ModelRunTest, EvaluateMeasuresEachImageAndCountsFailures) {
  const std::vector<std::string> images = {image("a.png", 1), bad_image("bad.png")};
  EvaluateOptions o;
  o.methods = {"gradcam"};
  o.randomization = false;
  o.curves.steps = 4;
  o.curves.batch = 5;
  o.outdir = dir_.file("eval");
  Progress progress(err_, images.size(), false);
  size_t failed = 0;
  const json doc = evaluate(model(), images, o, progress, failed);

  EXPECT_EQ(failed, 1u);
  EXPECT_EQ(doc["failed"], 1);
  EXPECT_EQ(doc, read_json(o.outdir + "/evaluate.json")) << "returned as written";
  EXPECT_FALSE(doc.contains("randomization_levels"));
  ASSERT_EQ(doc["images"].size(), 2u);
  const json& good = doc["images"][0];
  EXPECT_EQ(good["image"], images[0]);
  EXPECT_FALSE(good.contains("error"));
  EXPECT_GE(good["class"].get<int64_t>(), 0);
  EXPECT_LT(good["class"].get<int64_t>(), 1000);
  ASSERT_TRUE(good["methods"].contains("gradcam"));
  const json& m = good["methods"]["gradcam"];
  EXPECT_EQ(m["deletion"].size(), 5u) << "steps + 1 points";
  EXPECT_EQ(m["insertion"].size(), 5u);
  for (const char* key : {"deletion_auc", "insertion_auc", "confidence", "drop"}) {
    EXPECT_GE(m[key].get<double>(), 0.0) << key;
    EXPECT_LE(m[key].get<double>(), 1.0) << key;
  }
  EXPECT_NEAR(m["deletion"][0].get<double>(), m["confidence"].get<double>(), 1e-5)
      << "deletion starts at the image's own probability";
  EXPECT_FALSE(m.contains("randomization"));
  EXPECT_TRUE(fs::is_regular_file(o.outdir + "/" + m["plot"].get<std::string>()));
  const json& bad = doc["images"][1];
  ASSERT_TRUE(bad.contains("error"));
  EXPECT_NE(bad["error"].get<std::string>().find("bad.png"), std::string::npos) << bad["error"];
  EXPECT_FALSE(bad.contains("methods"));
  // The summary is over the images that worked.
  const json& sum = doc["summary"]["gradcam"];
  EXPECT_EQ(sum["images"], 1);
  EXPECT_DOUBLE_EQ(sum["deletion_auc"].get<double>(), m["deletion_auc"].get<double>());
  EXPECT_DOUBLE_EQ(sum["insertion_auc"].get<double>(), m["insertion_auc"].get<double>());
  EXPECT_TRUE(sum["randomization_spearman"].empty());
}

}  // namespace
}  // namespace cnnviz
