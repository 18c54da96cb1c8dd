// Batch runs: directories and list files, bad files among good ones, shards
// and merge, resuming with --skip-existing, Ctrl-C, unwritable output, and
// smaller batches after running out of memory.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

class CliBatchTest : public ::testing::Test {
 protected:
  void SetUp() override { model_ = test::squeezenet_path(); }

  test::RunResult cnnviz(std::vector<std::string> args, const std::string& stdin_text = "") {
    return test::run_cnnviz(args, {}, stdin_text);
  }

  nlohmann::json manifest(const std::string& name = "manifest.json") {
    return nlohmann::json::parse(test::read_text(out() + "/" + name));
  }
  std::string out() const { return dir_.file("out"); }

  // The folder: good photos of several kinds and every kind of bad file.
  std::string bad_folder() {
    const std::string d = dir_.file("folder");
    fs::create_directories(d + "/nested");
    cv::Mat photo(180, 240, CV_8UC3);
    cv::randu(photo, 0, 255);
    cv::imwrite(d + "/good.jpg", photo);
    cv::Mat gray;
    cv::extractChannel(photo, gray, 0);
    cv::imwrite(d + "/nested/gray.png", gray);
    cv::Mat rgba(100, 100, CV_8UC4, cv::Scalar(10, 20, 30, 0));
    cv::imwrite(d + "/rgba.png", rgba);
    cv::imwrite(d + "/tiny.png", cv::Mat(1, 1, CV_8UC3, cv::Scalar(1, 2, 3)));
    cv::imwrite(d + "/huge.jpg", cv::Mat(12000, 12000, CV_8UC3, cv::Scalar(90, 120, 150)));
    std::string jpeg = test::read_text(d + "/good.jpg");
    test::write_text(d + "/corrupt.jpg", jpeg.substr(0, jpeg.size() / 3));
    test::write_text(d + "/empty.png", "");
    test::write_text(d + "/text.png", "this is not a picture\n");
    test::write_text(d + "/notes.txt", "ignored: not an image extension\n");
    return d;
  }

  test::TempDir dir_;
  std::string model_;
};

TEST_F(CliBatchTest, FolderWithBadFilesKeepsEveryGoodResult) {
  const std::string folder = bad_folder();
  test::RunResult r = cnnviz({"gradcam", "-m", model_, "-o", out(), folder});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  nlohmann::json doc = manifest();
  ASSERT_EQ(doc["images"].size(), 8u);  // notes.txt is not taken from a directory
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& e : doc["images"])
    by_name[fs::path(e["image"].get<std::string>()).filename()] = e;
  for (const char* good : {"good.jpg", "gray.png", "rgba.png", "tiny.png", "huge.jpg"}) {
    ASSERT_TRUE(by_name.count(good)) << good;
    EXPECT_FALSE(by_name[good].contains("error")) << good << ": " << by_name[good].dump();
    EXPECT_FALSE(by_name[good]["files"].empty()) << good;
  }
  EXPECT_NE(by_name["corrupt.jpg"]["error"].get<std::string>().find("truncated"),
            std::string::npos);
  EXPECT_NE(by_name["empty.png"]["error"].get<std::string>().find("empty file"), std::string::npos);
  EXPECT_NE(by_name["text.png"]["error"].get<std::string>().find("not an image"),
            std::string::npos);
  EXPECT_EQ(doc["summary"]["failed"], 3);
  // Each failure is reported once, as it happens; the summary counts them
  // and says where the files went.
  const std::string failure = "cnnviz: image '" + folder + "/empty.png': empty file\n";
  ASSERT_NE(r.err.find(failure), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(failure, r.err.find(failure) + 1), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("5 done, 0 skipped, 3 failed of 8"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cnnviz: wrote 25 files for 5 images to " + out() +
                       "/; 'cnnviz report " + out() + "' makes a page of them\n"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << "progress bar drawn without a terminal";
}

TEST_F(CliBatchTest, ProgressBarOnlyOnATerminal) {
  // util-linux's script(1) (Debian's essential bsdutils) runs us on a pty.
  if (!fs::exists("/usr/bin/script")) GTEST_SKIP() << "/usr/bin/script not installed";
  const std::string folder = dir_.file("imgs");
  fs::create_directories(folder);
  for (int i = 0; i < 3; ++i) {
    cv::imwrite(folder + "/t" + std::to_string(i) + ".png",
                cv::Mat(40, 40, CV_8UC3, cv::Scalar(i)));
  }
  const std::string cmd =
      test::cnnviz_bin() + " saliency --no-raw -m " + model_ + " -o " + out() + " " + folder;
  test::RunResult tty = test::run({"/usr/bin/script", "-qec", cmd, "/dev/null"});
  EXPECT_EQ(tty.exit_code, 0) << tty.out;
  EXPECT_NE(tty.out.find("img/s"), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find("ETA"), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find("3 done, 0 skipped, 0 failed of 3"), std::string::npos) << tty.out;
  test::RunResult quiet = test::run({"/usr/bin/script", "-qec", cmd + " --quiet", "/dev/null"});
  EXPECT_EQ(quiet.exit_code, 0);
  EXPECT_EQ(quiet.out.find("img/s"), std::string::npos) << quiet.out;
  EXPECT_EQ(quiet.out.find("done,"), std::string::npos) << quiet.out;
}

TEST_F(CliBatchTest, ListFileFromStdinAndDirectoriesMix) {
  const std::string folder = bad_folder();
  test::RunResult r = cnnviz(
      {"classify", "-m", model_, "-k", "1", "--json", "--from-list", "-", folder + "/good.jpg"},
      "# a comment\n" + folder + "/tiny.png\n\n" + folder + "/rgba.png\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  ASSERT_EQ(doc["results"].size(), 3u);
  EXPECT_EQ(doc["results"][1]["image"], folder + "/tiny.png");
  EXPECT_EQ(cnnviz({"classify", "-m", model_}).exit_code, 2);  // no input at all
  EXPECT_EQ(cnnviz({"classify", "-m", model_, "--from-list", dir_.file("none.txt")}).exit_code, 3);
}

TEST_F(CliBatchTest, ShardsCoverEveryImageOnceAndMerge) {
  const std::string folder = dir_.file("imgs");
  fs::create_directories(folder);
  for (int i = 0; i < 7; ++i) {
    cv::Mat m(64, 64, CV_8UC3, cv::Scalar(i * 30, 50, 200 - i * 20));
    cv::imwrite(folder + "/im" + std::to_string(i) + ".png", m);
  }
  std::set<std::string> seen;
  for (const char* shard : {"1/3", "2/3", "3/3"}) {
    test::RunResult r =
        cnnviz({"saliency", "-m", model_, "-o", out(), "--shard", shard, "--no-raw", folder});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  for (const char* name :
       {"manifest.shard-1-of-3.json", "manifest.shard-2-of-3.json", "manifest.shard-3-of-3.json"}) {
    const nlohmann::json doc = manifest(name);  // not a temporary: the loop keeps a reference
    for (const auto& e : doc["images"]) {
      EXPECT_TRUE(seen.insert(e["image"].get<std::string>()).second) << "processed twice";
    }
  }
  EXPECT_EQ(seen.size(), 7u);
  test::RunResult m = cnnviz({"merge", out()});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  nlohmann::json doc = manifest();
  ASSERT_EQ(doc["images"].size(), 7u);
  for (size_t i = 0; i < 7; ++i) EXPECT_EQ(doc["images"][i]["index"], i);
  EXPECT_EQ(cnnviz({"gradcam", "-m", model_, "--shard", "4/3", folder}).exit_code, 2);
  EXPECT_EQ(cnnviz({"merge", dir_.file("nothing")}).exit_code, 3);
}

TEST_F(CliBatchTest, SkipExistingRedoesOnlyIncompleteImages) {
  const std::string folder = dir_.file("imgs");
  fs::create_directories(folder);
  for (int i = 0; i < 3; ++i) {
    cv::imwrite(folder + "/p" + std::to_string(i) + ".png",
                cv::Mat(50, 70, CV_8UC3, cv::Scalar(40 * i, 90, 10)));
  }
  ASSERT_EQ(cnnviz({"gradcam", "-m", model_, "-o", out(), folder}).exit_code, 0);
  nlohmann::json first = manifest();
  const std::string lost = out() + "/" + first["images"][1]["files"][0]["path"].get<std::string>();
  fs::remove(lost);
  test::RunResult r = cnnviz({"gradcam", "-m", model_, "-o", out(), "--skip-existing", folder});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("1 done, 2 skipped, 0 failed of 3"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(lost));
  EXPECT_EQ(manifest()["images"].size(), 3u);
  // Other settings are another run: nothing is skipped.
  test::RunResult other =
      cnnviz({"gradcam", "-m", model_, "-o", out(), "--skip-existing", "--alpha", "0.3", folder});
  EXPECT_NE(other.err.find("3 done, 0 skipped"), std::string::npos) << other.err;
}

TEST_F(CliBatchTest, InterruptLeavesAConsistentManifest) {
  const std::string folder = dir_.file("many");
  fs::create_directories(folder);
  cv::Mat m(240, 320, CV_8UC3);
  cv::randu(m, 0, 255);
  for (int i = 0; i < 400; ++i) cv::imwrite(folder + "/f" + std::to_string(i) + ".png", m);
  test::TempDir run_dir;
  int pid = test::start({test::cnnviz_bin(), "gradcam", "--all-layers", "-m", model_, "-o", out(),
                         "--batch-size", "2", folder},
                        run_dir.path());
  // Wait for the first finished image, then press Ctrl-C.
  const std::string journal = out() + "/journal.jsonl";
  for (int i = 0; i < 600 && test::lines(test::read_text(journal)).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid, SIGINT);
  test::RunResult r = test::finish(pid, run_dir.path());
  EXPECT_EQ(r.exit_code, 130) << r.err;
  nlohmann::json doc = manifest();
  EXPECT_TRUE(doc["summary"]["interrupted"].get<bool>());
  const size_t written = doc["images"].size();
  EXPECT_GE(written, 1u);
  EXPECT_LT(written, 400u);
  EXPECT_EQ(test::lines(test::read_text(journal)).size(), written);
  for (const auto& e : doc["images"]) {
    for (const auto& f : e["files"])
      EXPECT_TRUE(fs::exists(out() + "/" + f["path"].get<std::string>()));
  }
  for (const auto& entry : fs::recursive_directory_iterator(out())) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
  }
}

TEST_F(CliBatchTest, UnwritableOutputStopsWithoutLeftovers) {
  cv::Mat m(64, 64, CV_8UC3, cv::Scalar(1, 2, 3));
  const std::string image = dir_.file("x.png");
  cv::imwrite(image, m);
  std::string target = out();
  if (geteuid() == 0) {
    // Root ignores directory permissions; a file in the way of OUTDIR fails alike.
    test::write_text(dir_.file("blocker"), "");
    target = dir_.file("blocker") + "/out";
  } else {
    fs::create_directories(out());
    fs::permissions(out(), fs::perms::owner_read | fs::perms::owner_exec);
  }
  test::RunResult r = cnnviz({"gradcam", "-m", model_, "-o", target, image});
  if (fs::exists(out())) fs::permissions(out(), fs::perms::owner_all);
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("cannot"), std::string::npos);
  EXPECT_TRUE(!fs::exists(out()) || fs::is_empty(out()));
}

// Out of device memory (simulated: CNNVIZ_TEST_OOM_ABOVE=N fails every pass
// over more than N images): smaller batches, nothing lost.
TEST_F(CliBatchTest, OutOfMemoryRetriesWithSmallerBatches) {
  cv::Mat noise(180, 240, CV_8UC3);
  cv::randu(noise, 0, 255);
  const std::string photo = dir_.file("photo.png");
  ASSERT_TRUE(cv::imwrite(photo, noise));
  cv::Mat img(100, 120, CV_8UC3, cv::Scalar(20, 200, 90));
  for (const char* name : {"b.png", "c.png"}) ASSERT_TRUE(cv::imwrite(dir_.file(name), img));
  std::vector<std::string> args = {
      test::cnnviz_bin(), "gradcam",         "--batch-size", "3", "-m", model_, "-o", out(), photo,
      dir_.file("b.png"), dir_.file("c.png")};
  test::RunResult r = test::run(args, {{"CNNVIZ_TEST_OOM_ABOVE", "1"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("out of memory on a batch of 3 images: retrying in batches of 2"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("retrying in batches of 1"), std::string::npos) << r.err;
  nlohmann::json doc = manifest();
  EXPECT_EQ(doc["summary"]["written"], 3);
  EXPECT_EQ(doc["summary"]["failed"], 0);
  // Nothing fits: every image fails with the reason, the run finishes.
  r = test::run({test::cnnviz_bin(), "classify", "-m", model_, photo, dir_.file("b.png")},
                {{"CNNVIZ_TEST_OOM_ABOVE", "0"}});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("image '" + photo + "': out of memory"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cnnviz
