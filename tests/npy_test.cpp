#include "cnnviz/io/npy.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace cnnviz {
namespace {

TEST(NpyTest, RoundTripsShapeAndValues) {
  test::TempDir dir;
  NpyArray a{{2, 3, 4}, {}};
  for (int i = 0; i < 24; ++i) a.data.push_back(0.5f * static_cast<float>(i) - 3.0f);
  write_npy(dir.file("a.npy"), a);
  NpyArray b = read_npy(dir.file("a.npy"));
  EXPECT_EQ(b.shape, a.shape);
  EXPECT_EQ(b.data, a.data);
}

TEST(NpyTest, HeaderIsAlignedAndOneDimensionalShapeHasComma) {
  test::TempDir dir;
  write_npy(dir.file("v.npy"), NpyArray{{3}, {1.0f, 2.0f, 3.0f}});
  std::string bytes = test::read_text(dir.file("v.npy"));
  ASSERT_GT(bytes.size(), 10u);
  size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  EXPECT_NE(bytes.find("'shape': (3,)"), std::string::npos);
  EXPECT_EQ(bytes.size(), 10 + header_len + 12);
}

TEST(NpyTest, RejectsMismatchedShapeAndForeignFiles) {
  test::TempDir dir;
  test::expect_error(
      [&] {
        write_npy(dir.file("x.npy"), NpyArray{{2, 2}, {1.0f}});
      },
      ErrorCode::kRuntime, "shape");
  test::write_text(dir.file("t.npy"), "not numpy");
  test::expect_error([&] { read_npy(dir.file("t.npy")); }, ErrorCode::kInput, "not a .npy");
}

TEST(NpyTest, UnwritableDestinationIsAnOutputError) {
  test::expect_error(
      [] {
        write_npy("/nonexistent-dir/x.npy", NpyArray{{1}, {1.0f}});
      },
      ErrorCode::kOutput, "cannot write '/nonexistent-dir/x.npy'");
}

}  // namespace
}  // namespace cnnviz
