// Turning arguments into the list of images (inputs.h): list files, with
// newlines or NUL bytes between the names, and folders, which say what they
// skipped.
#include "cnnviz/run/inputs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sstream>

#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

class InputsTest : public ::testing::Test {
 protected:
  test::TempDir dir_;
};

TEST_F(InputsTest, ListsAndFolders) {
  // NUL-separated, as find -print0 writes it: names may hold newlines.
  using namespace std::string_literals;
  test::write_text(dir_.file("list0"), "a b.png\0line\nbreak.png\0c.png\0"s);
  std::istringstream none;
  EXPECT_EQ(expand_inputs({}, dir_.file("list0"), none).images,
            (std::vector<std::string>{"a b.png", "line\nbreak.png", "c.png"}));
  // A newline list with a stray NUL byte: the names around it stay whole,
  // and the line holding it becomes an entry that can only fail, printably.
  test::write_text(dir_.file("list1"), "a.png\nb\0c.png\nd.png\n"s);
  EXPECT_EQ(expand_inputs({}, dir_.file("list1"), none).images,
            (std::vector<std::string>{"a.png", "b\\0c.png", "d.png"}));
  std::istringstream in("x.png\r\n# comment\n\n  \ny.png  \n");
  EXPECT_EQ(expand_inputs({}, "-", in).images, (std::vector<std::string>{"x.png", "y.png"}));
  // A folder says what it skipped: files without an image extension, and
  // image names that are not regular files (a FIFO would block).
  const std::string folder = dir_.file("photos");
  fs::create_directories(folder);
  cv::imwrite(folder + "/a.png", cv::Mat(4, 4, CV_8UC3, cv::Scalar(1, 2, 3)));
  test::write_text(folder + "/anim.gif", "GIF89a");
  ASSERT_EQ(mkfifo((folder + "/pipe.jpg").c_str(), 0644), 0);
  const ExpandedInputs got = expand_inputs({folder}, "", none);
  EXPECT_EQ(got.images, (std::vector<std::string>{folder + "/a.png"}));
  ASSERT_EQ(got.notes.size(), 1u);
  EXPECT_EQ(got.notes[0], "'" + folder +
                              "': skipped 1 file without an image extension (anim.gif) and 1 that "
                              "is not a regular file (pipe.jpg)");
}

}  // namespace
}  // namespace cnnviz
