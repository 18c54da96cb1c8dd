#include "cnnviz/core/error.h"

namespace cnnviz {

const std::vector<ExitStatus>& exit_codes() {
  static const std::vector<ExitStatus> codes = {
      {0, "ok"},
      {static_cast<int>(ErrorCode::kRuntime), "runtime failure"},
      {static_cast<int>(ErrorCode::kUsage), "usage (also a bad config file)"},
      {static_cast<int>(ErrorCode::kInput), "bad input (images, manifest)"},
      {static_cast<int>(ErrorCode::kModel), "model"},
      {static_cast<int>(ErrorCode::kUnsupported), "unsupported"},
      {static_cast<int>(ErrorCode::kOutput), "output"},
      {kInterruptedExit, "interrupted"},
  };
  return codes;
}

std::string exit_codes_text() {
  std::string text;
  for (const ExitStatus& s : exit_codes()) {
    text += (text.empty() ? "" : ", ") + std::to_string(s.code) + " " + s.meaning;
  }
  return text;
}

std::string first_line(const std::string& message) {
  std::string line = message.substr(0, message.find('\n'));
  while (!line.empty() && (line.back() == ' ' || line.back() == '\r' || line.back() == '\t')) {
    line.pop_back();
  }
  return line;
}

std::string torch_error_summary(const std::string& message) {
  if (message.find("Traceback of TorchScript") == std::string::npos) return first_line(message);
  size_t end = message.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return "";
  size_t begin = message.rfind('\n', end);
  std::string last = message.substr(begin == std::string::npos ? 0 : begin + 1, end - begin);
  const std::string prefix = "RuntimeError: ";
  if (last.rfind(prefix, 0) == 0) last = last.substr(prefix.size());
  return last;
}

}  // namespace cnnviz
