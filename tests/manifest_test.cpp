// What a run keeps in OUTDIR (manifest.h): image directories' stems, the
// journal, the run lock and merging the shards' manifests; none of it is
// trusted blindly when it comes from outside, and nothing is written through
// links.
#include "cnnviz/run/manifest.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {
namespace {

using test::nested_arrays;

TEST(ManifestTest, StemsNeverTakeTheRunsOwnNames) {
  const std::vector<std::string> stems =
      unique_stems({"a/manifest.json.png", "b/journal.jsonl.png", "c/index.html.png",
                    "d/.hidden.png", "e/evaluate.json.jpg", "f/caf\xe9.png", "g/cat.png"});
  EXPECT_EQ(stems, (std::vector<std::string>{"manifest.json-image", "journal.jsonl-image",
                                             "index.html-image", ".hidden-image",
                                             "evaluate.json-image", "caf_", "cat"}));
}

class ManifestFilesTest : public ::testing::Test {
 protected:
  test::TempDir dir_;
};

TEST_F(ManifestFilesTest, JournalsAreNotFollowedOrTrustedBlindly) {
  // A link named journal.jsonl gets nothing appended to its target.
  const std::string target = dir_.file("target.txt");
  test::write_text(target, "untouched\n");
  fs::create_directories(dir_.file("out"));
  fs::create_symlink(target, dir_.file("out/journal.jsonl"));
  test::expect_error([&] { Journal j(dir_.file("out/journal.jsonl")); }, ErrorCode::kOutput,
                     "is a symbolic link");
  EXPECT_EQ(test::read_text(target), "untouched\n");
  // A line left without its newline is ended before the next entry.
  const std::string path = dir_.file("j.jsonl");
  test::write_text(path, "{\"image\": \"half");
  {
    Journal j(path);
    j.append(json{{"image", "b.png"}, {"files", json::array()}}, "k");
  }
  const std::vector<std::string> lines = test::lines(test::read_text(path));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NO_THROW(json::parse(lines[1]));
  // Entries naming files outside OUTDIR, or links, are not complete outputs.
  test::write_text(dir_.file("out/x.png"), "x");
  fs::create_symlink(target, dir_.file("out/link.png"));
  auto entry = [](const std::string& p) { return json{{"files", {{{"path", p}}}}}; };
  EXPECT_TRUE(outputs_complete(dir_.file("out"), entry("x.png")));
  EXPECT_FALSE(outputs_complete(dir_.file("out"), entry(target)));
  EXPECT_FALSE(outputs_complete(dir_.file("out"), entry("../target.txt")));
  EXPECT_FALSE(outputs_complete(dir_.file("out"), entry("link.png")));
  EXPECT_FALSE(outputs_complete(dir_.file("out"), json{{"files", {{{"path", 3}}}}}));
}

TEST_F(ManifestFilesTest, ImageDirectoriesThatAreLinksAreRefused) {
  fs::create_directories(dir_.file("out"));
  fs::create_directories(dir_.file("elsewhere"));
  fs::create_symlink(dir_.file("elsewhere"), dir_.file("out/cat"));
  test::expect_error([&] { check_image_dir(dir_.file("out"), "cat"); }, ErrorCode::kOutput,
                     "is a symbolic link: refusing to write maps through it");
  test::write_text(dir_.file("out/dog"), "a file");
  test::expect_error([&] { check_image_dir(dir_.file("out"), "dog"); }, ErrorCode::kOutput,
                     "not a directory");
  EXPECT_NO_THROW(check_image_dir(dir_.file("out"), "new"));
}

TEST_F(ManifestFilesTest, OneRunPerShardAtATime) {
  RunLock first(dir_.path(), "run");
  test::expect_error([&] { RunLock second(dir_.path(), "run"); }, ErrorCode::kOutput,
                     "is in use by another cnnviz run");
  EXPECT_NO_THROW(RunLock shard(dir_.path(), "shard-1-of-2"));
}

TEST_F(ManifestFilesTest, MergeRefusesIncompleteMixedOrMalformedShards) {
  const std::string out = dir_.file("out");
  fs::create_directories(out);
  auto shard = [&](int k, int n, const std::string& text) {
    test::write_text(
        out + "/manifest.shard-" + std::to_string(k) + "-of-" + std::to_string(n) + ".json", text);
  };
  const std::string ok = R"({"method": "gradcam", "images": [{"image": "a.png", "index": 0}],
                             "summary": {"images": 1, "written": 1, "failed": 0, "skipped": 0}})";
  shard(1, 2, ok);
  test::expect_error([&] { merge_manifests(out); }, ErrorCode::kInput,
                     "merge: shard 2 of 2 missing in '" + out +
                         "' (run them, or merge what is "
                         "there with --partial)");
  const MergeResult partial = merge_manifests(out, true);
  EXPECT_EQ(partial.missing, std::vector<long>{2});
  EXPECT_EQ(json::parse(test::read_text(out + "/manifest.json"))["missing_shards"],
            json::array({2}));
  shard(1, 3, ok);
  test::expect_error([&] { merge_manifests(out); }, ErrorCode::kInput,
                     "holds shards of runs split 2, 3 ways");
  fs::remove(out + "/manifest.shard-1-of-3.json");
  for (const std::string& bad :
       {std::string(R"({"method": "gradcam", "images": [{"index": "x"}]})"),
        std::string(R"({"method": "gradcam", "images": [[1]]})"),
        std::string(R"({"method": "gradcam", "images": [], "summary": {"images": "many"}})"),
        std::string(R"({"images": 5})"), "{\"images\": " + nested_arrays(1000) + "}"}) {
    SCOPED_TRACE(bad.substr(0, 60));
    shard(2, 2, bad);
    test::expect_error([&] { merge_manifests(out); }, ErrorCode::kInput, "manifest.shard-2-of-2");
  }
  fs::remove(out + "/manifest.shard-2-of-2.json");
  // A FIFO is no shard (reading it would block): shard 2 is missing.
  ASSERT_EQ(mkfifo((out + "/manifest.shard-2-of-2.json").c_str(), 0644), 0);
  test::expect_error([&] { merge_manifests(out); }, ErrorCode::kInput, "shard 2 of 2 missing");
}

}  // namespace
}  // namespace cnnviz
