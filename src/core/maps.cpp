#include "cnnviz/core/maps.h"

#include <algorithm>

namespace cnnviz {

const char* map_kind_name(MapKind kind) {
  switch (kind) {
    case MapKind::kInputGradient:
      return "input-gradient";
    case MapKind::kInputProduct:
      return "input-product";
    case MapKind::kLayerMap:
      return "layer-map";
  }
  return "layer-map";
}

std::string map_kind_words(MapKind kind) {
  std::string words = map_kind_name(kind);
  std::replace(words.begin(), words.end(), '-', ' ');
  return words;
}

}  // namespace cnnviz
