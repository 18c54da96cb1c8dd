#include "cnnviz/core/error.h"

#include <gtest/gtest.h>

namespace cnnviz {
namespace {

TEST(ErrorTest, CarriesCodeAndExitStatus) {
  Error e(ErrorCode::kModel, "model 'x': not found");
  EXPECT_EQ(e.code(), ErrorCode::kModel);
  EXPECT_EQ(e.exit_code(), 4);
  EXPECT_STREQ(e.what(), "model 'x': not found");
}

TEST(ErrorTest, FirstLineDropsTracesAndTrailingSpace) {
  EXPECT_EQ(first_line("problem here  \nframe 0\nframe 1"), "problem here");
  EXPECT_EQ(first_line("single"), "single");
  EXPECT_EQ(first_line(""), "");
}

TEST(ErrorTest, TorchScriptTracebacksReduceToTheirCause) {
  const std::string jit =
      "The following operation failed in the TorchScript interpreter.\n"
      "Traceback of TorchScript, serialized code (most recent call last):\n"
      "  File \"code/x.py\", line 12, in forward\n"
      "RuntimeError: expected input to have 3 channels, but got 5 channels instead\n";
  EXPECT_EQ(torch_error_summary(jit),
            "expected input to have 3 channels, but got 5 channels instead");
  EXPECT_EQ(torch_error_summary("plain problem\nbacktrace"), "plain problem");
}

}  // namespace
}  // namespace cnnviz
