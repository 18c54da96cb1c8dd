#include "cnnviz/core/text.h"

#include <gtest/gtest.h>

namespace cnnviz {
namespace {

TEST(TextTest, EditDistanceCountsInsertionsDeletionsAndSubstitutions) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("--topk", "--top-k"), 1u);        // an insertion
  EXPECT_EQ(edit_distance("--all-layer", "--all-layers"), 1u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);        // two substitutions, an insertion
  EXPECT_EQ(edit_distance("features.3", "features.30"), 1u);
  EXPECT_EQ(edit_distance("abc", "cba"), 2u);
  EXPECT_EQ(edit_distance("flaw", "lawn"), edit_distance("lawn", "flaw"));
}

}  // namespace
}  // namespace cnnviz
