// Parsing and writing JSON from outside (json_util.h): nesting is bounded,
// errors are one line naming the document, and text that is not UTF-8
// survives a dump instead of throwing.
#include "cnnviz/core/json_util.h"

#include <gtest/gtest.h>

#include "cnnviz/run/manifest.h"
#include "test_util.h"

using json = nlohmann::ordered_json;

namespace cnnviz {
namespace {

using test::nested_arrays;

TEST(JsonUtilTest, JsonNestingIsBounded) {
  EXPECT_NO_THROW(parse_json(nested_arrays(kMaxJsonDepth), "x", ErrorCode::kInput));
  test::expect_error([] { parse_json(nested_arrays(200000), "m.json", ErrorCode::kInput); },
                     ErrorCode::kInput, "m.json: not valid JSON (nested deeper than 64 levels)");
  test::expect_error([] { parse_json("{\"a\": ", "m.json", ErrorCode::kModel); }, ErrorCode::kModel,
                     "m.json: not valid JSON (parse error");
  EXPECT_TRUE(try_parse_json(nested_arrays(1000)).is_discarded());
  EXPECT_FALSE(try_parse_json("{\"a\": [1, 2]}").is_discarded());
}

TEST(JsonUtilTest, Utf8IsValidatedAndDumpedWithoutThrowing) {
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9 \xf0\x9f\x90\x88"));
  for (const char* bad : {"caf\xe9", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
    EXPECT_FALSE(valid_utf8(bad)) << bad;
  }
  json doc;
  set_image_name(doc, "photos/caf\xe9.png");
  const json back = json::parse(dump_json(doc));
  EXPECT_EQ(image_name(back), "photos/caf\xe9.png") << "the name survives the manifest";
}

}  // namespace
}  // namespace cnnviz
