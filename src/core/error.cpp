#include "cnnviz/error.h"

namespace cnnviz {

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
