// cnnviz::Error: the one exception type the library throws.
//
// Every failure a user can cause (bad path, undecodable image, wrong model, bad
// option value) is reported as an Error whose message is one line in the form
// "subject: problem (hint)" and whose code says which exit status the CLI uses.
// Only the CLI's main() catches; library code never exits or prints.
#ifndef CNNVIZ_CORE_ERROR_H_
#define CNNVIZ_CORE_ERROR_H_

#include <stdexcept>
#include <string>
#include <vector>

namespace cnnviz {

// Values are the process exit codes (exit_codes() lists them all).
enum class ErrorCode {
  kRuntime = 1,      // unexpected failure inside LibTorch/OpenCV, internal error
  kUsage = 2,        // bad command line or option value
  kInput = 3,        // an input image is missing, unreadable or undecodable
  kModel = 4,        // model not found, not TorchScript, or without usable metadata
  kUnsupported = 5,  // the model cannot do what was asked (layer, method)
  kOutput = 6,       // an output file or directory cannot be written
};

// Exit status of a run interrupted by SIGINT/SIGTERM (128 + SIGINT).
constexpr int kInterruptedExit = 130;

// Every exit status cnnviz uses, with its meaning in a few words: 0, each
// ErrorCode, then kInterruptedExit. The one source of the list: `cnnviz
// --help` prints exit_codes_text(), and the docs' table is checked against it.
struct ExitStatus {
  int code;
  const char* meaning;
};
const std::vector<ExitStatus>& exit_codes();
// "0 ok, 1 runtime failure, 2 usage, ..., 130 interrupted".
std::string exit_codes_text();

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}

  ErrorCode code() const { return code_; }
  int exit_code() const { return static_cast<int>(code_); }

 private:
  ErrorCode code_;
};

// A device ran out of memory (CUDA's allocator): callers that batch can retry
// with fewer images.
class OutOfMemory : public Error {
 public:
  explicit OutOfMemory(const std::string& message) : Error(ErrorCode::kRuntime, message) {}
};

// Returns the first line of a (possibly multi-line) library message, without
// trailing whitespace: LibTorch errors carry stack traces after the first line.
std::string first_line(const std::string& message);

// The line of a LibTorch exception message that says what went wrong: for
// errors raised inside the TorchScript interpreter (whose first line is
// "The following operation failed ..." and whose body is a traceback) the
// final "RuntimeError: ..." line without its prefix, else the first line.
std::string torch_error_summary(const std::string& message);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_ERROR_H_
