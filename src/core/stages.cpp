// Feature stages discovered from a model's module tree (see engine.h).
#include <map>
#include <set>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/feature_map.h"

namespace cnnviz {

namespace {

// A spatial feature map (feature_map.h's rule) from a module that runs once.
bool qualifies(const LayerInfo& l) { return l.calls == 1 && infer_layout(l.shape).has_value(); }

std::string parent_of(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? std::string() : path.substr(0, dot);
}

}  // namespace

std::vector<std::string> feature_stages(const std::vector<LayerInfo>& layers) {
  // Modules that return no tensor (a segmenter's backbone, which returns a
  // dict) are see-through too.
  std::set<std::string> known;
  for (const LayerInfo& l : layers) {
    if (!l.shape.empty()) known.insert(l.path);
  }
  // Qualifying children of each module, in forward order (`layers` is). A
  // module that is never called itself (a ModuleList: MaxViT's `blocks`)
  // is see-through: its children count as its parent's.
  std::map<std::string, std::vector<std::string>> children;
  for (const LayerInfo& l : layers) {
    if (l.path == kGlobalPoolInput || !qualifies(l)) continue;
    std::string parent = parent_of(l.path);
    while (!parent.empty() && !known.count(parent)) parent = parent_of(parent);
    children[parent].push_back(l.path);
  }
  auto has_children = [&](const std::string& path) {
    auto it = children.find(path);
    return it != children.end() && !it->second.empty();
  };
  std::string at;  // the root
  for (;;) {
    const std::vector<std::string>& here = children[at];
    std::vector<std::string> containers, deep;
    for (const std::string& c : here) {
      if (!has_children(c)) continue;
      containers.push_back(c);
      for (const std::string& g : children[c]) {
        if (has_children(g)) {
          deep.push_back(c);
          break;
        }
      }
    }
    if (containers.size() == 1) {
      at = containers.front();
    } else if (containers.size() > 1 && deep.size() == 1) {
      at = deep.front();  // a stem beside the trunk (RegNet's stem, trunk_output)
    } else {
      return here;
    }
  }
}

}  // namespace cnnviz
