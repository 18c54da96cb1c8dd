// Feature stages discovered from a model's module tree (see engine.h).
#include <map>

#include "cnnviz/engine.h"

namespace cnnviz {

namespace {

// A spatial feature map from a module that runs once.
bool qualifies(const LayerInfo& l) {
  return l.calls == 1 && l.shape.size() == 4 && l.shape[2] * l.shape[3] > 1;
}

std::string parent_of(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? std::string() : path.substr(0, dot);
}

}  // namespace

std::vector<std::string> feature_stages(const std::vector<LayerInfo>& layers) {
  // Qualifying children of each module, in forward order (`layers` is).
  std::map<std::string, std::vector<std::string>> children;
  for (const LayerInfo& l : layers) {
    if (l.path == kGlobalPoolInput || !qualifies(l)) continue;
    children[parent_of(l.path)].push_back(l.path);
  }
  std::string at;  // the root
  for (;;) {
    const std::vector<std::string>& here = children[at];
    std::vector<std::string> containers;
    for (const std::string& c : here) {
      auto it = children.find(c);
      if (it != children.end() && !it->second.empty()) containers.push_back(c);
    }
    if (containers.size() != 1) return here;
    at = containers.front();
  }
}

}  // namespace cnnviz
