// What a method's maps are, in the one vocabulary every layer uses: the
// registry says which kind each method gives, io draws each kind, and the
// manifest, messages and the explorer's API name them with map_kind_name().
#ifndef CNNVIZ_CORE_MAPS_H_
#define CNNVIZ_CORE_MAPS_H_

#include <string>

namespace cnnviz {

enum class MapKind {
  kInputGradient,  // [N,3,H,W], signed, input space: the seed's all/pos/neg, colour and grey
  kInputProduct,   // [N,3,H,W], a gradient times an upsampled CAM (guided Grad-CAM): colour, grey
  kLayerMap,       // [N,h,w] >= 0, at a layer's (or the input's) resolution: heatmaps, overlays
};

// "input-gradient", "input-product", "layer-map": the kind's name in the
// explorer's API and anywhere a program reads it.
const char* map_kind_name(MapKind kind);
// The same in words for people: "input gradient", "input product", "layer map".
std::string map_kind_words(MapKind kind);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_MAPS_H_
