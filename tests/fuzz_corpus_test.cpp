// The fuzz targets (tests/fuzz/targets.cpp) on their seed corpus and on
// every input that once crashed one (tests/fuzz/regressions/<target>/), in
// the ordinary build: a fixed bug stays fixed without a fuzzing build.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "fuzz/targets.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

TEST(FuzzCorpusTest, SeedsAndRegressionsRunClean) {
  size_t inputs = 0;
  for (const fuzz::NamedTarget& t : fuzz::targets()) {
    for (const char* kind : {"corpus", "regressions"}) {
      const fs::path dir = fs::path(test::source_dir()) / "tests/fuzz" / kind / t.name;
      if (!fs::is_directory(dir)) continue;
      for (const auto& e : fs::directory_iterator(dir)) {
        std::ifstream in(e.path(), std::ios::binary);
        const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                         std::istreambuf_iterator<char>());
        SCOPED_TRACE(e.path().string());
        EXPECT_NO_THROW(t.run(bytes.data(), bytes.size()));
        ++inputs;
      }
    }
  }
  EXPECT_GT(inputs, 20u) << "the seed corpus is missing";
}

}  // namespace
}  // namespace cnnviz
