// Helpers shared by the tests: paths, temporary directories, running the CLI,
// and checking cnnviz::Error codes and messages.
#ifndef CNNVIZ_TESTS_TEST_UTIL_H_
#define CNNVIZ_TESTS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cnnviz/core/error.h"

namespace cnnviz::test {

std::string source_dir();
std::string cnnviz_bin();
std::string python();
std::string test_models_dir();  // random-weight exports made by the ctest fixture
// shared/ beside the repository ($CNNVIZ_SHARED overrides); empty if absent.
std::string shared_dir();
// The exported random-weight squeezenet1_1; fails the test if absent.
std::string squeezenet_path();

// A fresh directory removed (with its contents) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_text(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);

struct RunResult {
  int exit_code = -1;  // -1 when the process did not exit normally
  std::string out;
  std::string err;
};

// Runs argv[0] with the arguments, no shell involved; `env` entries are set
// (or, with an empty value, unset) in the child only.
RunResult run(const std::vector<std::string>& argv,
              const std::map<std::string, std::string>& env = {},
              const std::string& stdin_text = "");

// Runs the cnnviz binary with `args`, with $CNNVIZ_MODEL and $CNNVIZ_MODELS
// unset, $XDG_CONFIG_HOME and $XDG_DATA_HOME pointing nowhere (no user
// config file, no user models), and `env` set in the child. With
// $CNNVIZ_TEST_JSON_DIR set, keeps a copy of the JSON it produced there.
RunResult run_cnnviz(std::vector<std::string> args, std::map<std::string, std::string> env = {},
                     const std::string& stdin_text = "");

// Starts argv in the background (stdout/stderr to files in `dir`); returns
// its pid. finish() waits for it and collects the result.
int start(const std::vector<std::string>& argv, const std::string& dir,
          const std::map<std::string, std::string>& env = {});
RunResult finish(int pid, const std::string& dir);

// Runs tests/reference/<script> with the test Python and `args`.
RunResult run_reference(const std::string& script, const std::vector<std::string>& args);

// Lines of `text`, without the newlines.
std::vector<std::string> lines(const std::string& text);

// `depth` nested JSON arrays, "[[...]]": deeper than any parser should go.
std::string nested_arrays(int depth);

// Expects `fn` to throw cnnviz::Error with `code` and a message containing
// `substring`.
void expect_error(const std::function<void()>& fn, ErrorCode code, const std::string& substring);

// For tests that run the binary on one photo: the exported squeezenet1_1, a
// 180x240 noise photo `image_` in `dir_`, and an output folder `out_`.
class PhotoCliTest : public ::testing::Test {
 protected:
  void SetUp() override;
  RunResult cnnviz(const std::vector<std::string>& args);
  nlohmann::json read_json(const std::string& path);

  TempDir dir_;
  std::string model_, image_, out_;
};

}  // namespace cnnviz::test

#endif  // CNNVIZ_TESTS_TEST_UTIL_H_
