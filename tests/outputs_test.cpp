// --write: what a selection means for each kind of map; and the files of a
// run that merge, report and --skip-existing find.
#include "cnnviz/run/outputs.h"

#include <gtest/gtest.h>

#include "cnnviz/run/manifest.h"
#include "test_util.h"

namespace cnnviz {
namespace {

using Variants = std::vector<std::string>;

TEST(OutputsTest, DefaultIsEverythingTodaysRunsWrite) {
  EXPECT_EQ(select_outputs(find_method("gbp"), {}, true).variants,
            (Variants{"npy", "all", "all_gray", "pos", "pos_gray", "neg", "neg_gray", "signed"}));
  EXPECT_EQ(select_outputs(find_method("gradcam"), {}, true).variants,
            (Variants{"npy", "gray", "heatmap", "overlay", "overlay_full", "contact"}));
  EXPECT_EQ(select_outputs(find_method("guided-gradcam"), {}, true).variants,
            (Variants{"npy", "color", "gray", "contact"}));
  // --no-raw drops the arrays, with or without --write.
  EXPECT_EQ(select_outputs(find_method("gradcam"), {}, false).variants,
            (Variants{"gray", "heatmap", "overlay", "overlay_full", "contact"}));
  EXPECT_EQ(select_outputs(find_method("gradcam"), {"npy", "overlay"}, false).variants,
            (Variants{"overlay"}));
}

TEST(OutputsTest, NamesSelectVariantsInTheirOwnOrder) {
  EXPECT_EQ(select_outputs(find_method("gradcam"), {"overlay", "npy"}, true).variants,
            (Variants{"npy", "overlay"}));
  // "gray" is every grey file of an input gradient.
  EXPECT_EQ(select_outputs(find_method("saliency"), {"gray"}, true).variants,
            (Variants{"all_gray", "pos_gray", "neg_gray"}));
  EXPECT_EQ(select_outputs(find_method("saliency"), {"all", "neg_gray"}, true).variants,
            (Variants{"all", "neg_gray"}));
  EXPECT_EQ(select_outputs(find_method("gradcam"), {"gray"}, true).variants, (Variants{"gray"}));
  // Names another kind has are ignored as long as something is written.
  EXPECT_EQ(select_outputs(find_method("gradcam"), {"overlay", "pos"}, true).variants,
            (Variants{"overlay"}));
}

TEST(OutputsTest, BadSelectionsAreUsageErrors) {
  test::expect_error([] { select_outputs(find_method("gradcam"), {"overlays"}, true); },
                     ErrorCode::kUsage, "--write overlays: no such output (known: npy, all,");
  test::expect_error(
      [] {
        select_outputs(find_method("gbp"), {"overlay", "heatmap"}, true);
      },
      ErrorCode::kUsage,
      "guided-backprop writes none of these (its maps are input gradients: npy, "
      "all, all_gray");
  test::expect_error([] { select_outputs(find_method("gradcam"), {"npy"}, false); },
                     ErrorCode::kUsage, "writes none");
}

TEST(OutputsTest, RunFilesAreTheWholeRunsThenShardsByK) {
  test::TempDir dir;
  for (const char* f :
       {"manifest.shard-10-of-12.json", "manifest.shard-2-of-12.json", "manifest.json",
        "manifest.shard-2-of-3.json", "manifest.shard-x-of-2.json", "manifest.shard-1-of-2.jsonl",
        "journal.shard-1-of-2.jsonl", "journal.jsonl", "xmanifest.shard-1-of-2.json"}) {
    test::write_text(dir.file(f), "{}");
  }
  std::vector<std::string> names;
  for (const RunFile& f : find_run_files(dir.path(), "manifest", ".json")) {
    names.push_back(f.name + ":" + std::to_string(f.k) + "/" + std::to_string(f.n));
  }
  EXPECT_EQ(names, (std::vector<std::string>{"manifest.json:0/0", "manifest.shard-2-of-3.json:2/3",
                                             "manifest.shard-2-of-12.json:2/12",
                                             "manifest.shard-10-of-12.json:10/12"}));
  EXPECT_EQ(find_run_files(dir.path(), "journal", ".jsonl").size(), 2u);
  EXPECT_TRUE(find_run_files(dir.file("nowhere"), "manifest", ".json").empty());
}

}  // namespace
}  // namespace cnnviz
