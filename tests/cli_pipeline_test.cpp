// The run pipeline end to end: subcommands and options from the registry,
// --write, and a run killed while its writers are behind the network.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <map>
#include <set>
#include <thread>

#include "cnnviz/io/npy.h"
#include "cnnviz/methods/methods.h"
#include "cnnviz/run/outputs.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

class CliPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::squeezenet_path();
    out_ = dir_.file("out");
  }

  test::RunResult cnnviz(const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env = {}) {
    return test::run_cnnviz(args, env);
  }

  nlohmann::json manifest() const {
    return nlohmann::json::parse(test::read_text(out_ + "/manifest.json"));
  }

  // `count` random images in DIR/imgs; returns the folder.
  std::string images(int count) {
    const std::string folder = dir_.file("imgs");
    fs::create_directories(folder);
    cv::RNG rng(3);
    for (int i = 0; i < count; ++i) {
      cv::Mat m(90 + i, 120, CV_8UC3);
      rng.fill(m, cv::RNG::UNIFORM, 0, 256);
      char name[32];
      std::snprintf(name, sizeof(name), "/p%02d.png", i);
      cv::imwrite(folder + name, m);
    }
    return folder;
  }

  // Every PNG and .npy under OUTDIR decodes: nothing half-written has its
  // final name.
  void expect_every_file_whole() const {
    for (const auto& e : fs::recursive_directory_iterator(out_)) {
      const std::string p = e.path().string();
      if (e.path().extension() == ".png") {
        EXPECT_FALSE(cv::imread(p, cv::IMREAD_UNCHANGED).empty()) << p;
      } else if (e.path().extension() == ".npy") {
        EXPECT_NO_THROW(read_npy(p)) << p;
      }
    }
  }

  test::TempDir dir_;
  std::string model_, out_;
};

TEST_F(CliPipelineTest, EveryMethodOffersItsParameters) {
  for (const MethodDef& m : method_table()) {
    for (const std::string& name : m.names()) {
      SCOPED_TRACE(name);
      test::RunResult r = cnnviz({name, "--help"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      for (const ParamDef& p : param_table()) {
        // --alpha is also the overlays' weight, on every method without
        // LRP's alpha parameter.
        if (p.name == "alpha" && !m.takes(p.name)) continue;
        EXPECT_EQ(r.out.find(p.flag() + " ") != std::string::npos, m.takes(p.name)) << p.flag();
      }
      EXPECT_EQ(r.out.find("--all-layers") != std::string::npos,
                m.layers == LayerUse::kChosen || m.layers == LayerUse::kOptional);
      EXPECT_NE(r.out.find("--write"), std::string::npos);
      EXPECT_NE(r.out.find("--writers"), std::string::npos);
      EXPECT_NE(r.out.find(m.summary), std::string::npos);
    }
  }
}

TEST_F(CliPipelineTest, WriteChoosesTheFilesAndIsPartOfTheRun) {
  const std::string folder = images(2);
  test::RunResult r =
      cnnviz({"gradcam", "--all-layers", "-m", model_, "-o", out_, "--write", "overlay", folder});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json doc = manifest();
  EXPECT_EQ(doc["options"]["write"], nlohmann::json({"overlay"}));
  EXPECT_EQ(doc["options"]["raw"], false);
  for (const auto& img : doc["images"]) {
    ASSERT_EQ(img["files"].size(), 13u);
    for (const auto& f : img["files"]) {
      EXPECT_EQ(f["variant"], "overlay");
      EXPECT_EQ(cv::imread(out_ + "/" + f["path"].get<std::string>()).cols, 224);
    }
  }
  size_t on_disk = 0;
  for (const auto& e : fs::recursive_directory_iterator(out_)) {
    on_disk += e.is_regular_file() && e.path().filename().string()[0] != '.';
  }
  EXPECT_EQ(on_disk, 2 * 13 + 2u) << "the maps, the manifest and the journal";

  // The same selection is the same run; another one is not.
  r = cnnviz({"gradcam", "--all-layers", "-m", model_, "-o", out_, "--write", "overlay",
              "--skip-existing", folder});
  EXPECT_NE(r.err.find("0 done, 2 skipped"), std::string::npos) << r.err;
  r = cnnviz({"gradcam", "--all-layers", "-m", model_, "-o", out_, "--write", "overlay,heatmap",
              "--skip-existing", folder});
  EXPECT_NE(r.err.find("2 done, 0 skipped"), std::string::npos) << r.err;
  EXPECT_EQ(manifest()["images"][0]["files"].size(), 26u);

  // Grey files of an input gradient; --no-raw is the selection without npy.
  r = cnnviz({"saliency", "-m", model_, "-o", out_, "--write", "gray,npy", "--no-raw", folder});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  doc = manifest();
  EXPECT_EQ(doc["options"]["write"], nlohmann::json({"all_gray", "pos_gray", "neg_gray"}));
  for (const auto& f : doc["images"][1]["files"]) {
    EXPECT_EQ(
        cv::imread(out_ + "/" + f["path"].get<std::string>(), cv::IMREAD_UNCHANGED).channels(), 1);
  }
}

TEST_F(CliPipelineTest, WithoutACropEachImageRunsWhole) {
  const std::string folder = dir_.file("shapes");
  fs::create_directories(folder);
  cv::Mat wide(300, 500, CV_8UC3), tall(400, 250, CV_8UC3);
  cv::randu(wide, 0, 255);
  cv::randu(tall, 0, 255);
  cv::imwrite(folder + "/wide.png", wide);
  cv::imwrite(folder + "/tall.png", tall);
  test::RunResult r = cnnviz({"gradcam", "--no-crop", "--size", "112", "--batch-size", "4",
                              "--layer", "features.12", "-m", model_, "-o", out_, folder});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The shorter side resized to 112, nothing cut: 186 x 112 and 112 x 179.
  const std::map<std::string, std::pair<int, int>> input = {{"wide", {186, 112}},
                                                            {"tall", {112, 179}}};
  const std::map<std::string, std::pair<int, int>> source = {{"wide", {500, 300}},
                                                             {"tall", {250, 400}}};
  for (const auto& img : manifest()["images"]) {
    const std::string stem = img["dir"];
    for (const auto& f : img["files"]) {
      const cv::Mat m = cv::imread(out_ + "/" + f["path"].get<std::string>());
      if (f["variant"] == "heatmap" || f["variant"] == "overlay") {
        EXPECT_EQ(std::pair(m.cols, m.rows), input.at(stem)) << f["path"];
      } else if (f["variant"] == "overlay_full") {
        EXPECT_EQ(std::pair(m.cols, m.rows), source.at(stem)) << f["path"];
      }
    }
  }
  // The same for classify; the top-activations scan, which tiles one size, refuses.
  r = cnnviz({"classify", "--no-crop", "-m", model_, folder + "/wide.png", folder + "/tall.png"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = cnnviz({"top-activations", "--no-crop", "--layer", "features.12", "-m", model_, "-o",
              out_ + "-top", folder});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("has no crop (its inputs differ in size)"), std::string::npos) << r.err;
}

TEST_F(CliPipelineTest, BadWriteListsAreUsageErrors) {
  const std::string folder = images(1);
  test::RunResult r = cnnviz({"gbp", "-m", model_, "-o", out_, "--write", "overlay", folder});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(test::lines(r.err).back(),
            "cnnviz: --write overlay: guided-backprop writes none of these (its maps are input "
            "gradients: npy, all, all_gray, pos, pos_gray, neg, neg_gray, signed)");
  r = cnnviz({"gradcam", "-m", model_, "-o", out_, "--write", "png", folder});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--write png: no such output"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out_ + "/manifest.json"));
}

// kill -9 while the writers are behind the network (each map is held back
// by the test hook), then --skip-existing: the images the journal lists are
// kept, the others are done again, nothing is lost or doubled, and no file
// under its final name is half-written.
TEST_F(CliPipelineTest, KilledWhileWritingResumesWithoutLoss) {
  const int n = 16;
  const std::string folder = images(n);
  test::TempDir run_dir;
  const int pid = test::start({test::cnnviz_bin(), "gradcam", "--all-layers", "-m", model_, "-o",
                               out_, "--batch-size", "4", "--writers", "2", folder},
                              run_dir.path(), {{"CNNVIZ_TEST_WRITE_DELAY_MS", "25"}});
  const std::string journal = out_ + "/journal.jsonl";
  auto journaled = [&] { return test::lines(test::read_text(journal)).size(); };
  for (int i = 0; i < 1200 && (!fs::exists(journal) || journaled() < 2); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  const size_t kept = journaled();
  ASSERT_GE(kept, 2u);
  ASSERT_LT(kept, static_cast<size_t>(n)) << "the run finished before it was killed";
  EXPECT_FALSE(fs::exists(out_ + "/manifest.json"));
  for (const std::string& line : test::lines(test::read_text(journal))) {
    EXPECT_NO_THROW(nlohmann::json::parse(line)) << line;
  }
  expect_every_file_whole();

  test::RunResult r = cnnviz({"gradcam", "--all-layers", "-m", model_, "-o", out_,
                              "--skip-existing", "--batch-size", "4", folder});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(std::to_string(n - kept) + " done, " + std::to_string(kept) + " skipped"),
            std::string::npos)
      << r.err;
  nlohmann::json doc = manifest();
  ASSERT_EQ(doc["images"].size(), static_cast<size_t>(n));
  std::set<std::string> seen;
  for (const auto& img : doc["images"]) {
    EXPECT_TRUE(seen.insert(img["image"].get<std::string>()).second) << img["image"];
    ASSERT_EQ(img["files"].size(), 13 * 5 + 1u) << img["image"];
    for (const auto& f : img["files"]) {
      EXPECT_TRUE(fs::exists(out_ + "/" + f["path"].get<std::string>())) << f["path"];
    }
  }
  expect_every_file_whole();
}

}  // namespace
}  // namespace cnnviz
