// The JSON documents cnnviz writes, each with a published schema in
// schemas/<kind>.schema.json. Every document (every journal line) carries
// "format": "cnnviz/<kind>" and "format_version": N. The version goes up when
// a field is removed or renamed or changes its meaning or type; adding a
// field does not change it (readers ignore fields they do not know).
#ifndef CNNVIZ_CORE_FORMATS_H_
#define CNNVIZ_CORE_FORMATS_H_

namespace cnnviz {

enum class Format {
  kClassify,
  kSegment,
  kDetect,
  kManifest,
  kJournal,
  kEvaluate,
  kLayers,
  kModels,
  kSynthesis,           // the feature-visualization runs' manifest.json
  kTopActivationsState  // top-activations' saved state
};

inline const char* format_name(Format f) {
  switch (f) {
    case Format::kClassify:
      return "cnnviz/classify";
    case Format::kSegment:
      return "cnnviz/segment";
    case Format::kDetect:
      return "cnnviz/detect";
    case Format::kManifest:
      return "cnnviz/manifest";
    case Format::kJournal:
      return "cnnviz/journal";
    case Format::kEvaluate:
      return "cnnviz/evaluate";
    case Format::kLayers:
      return "cnnviz/layers";
    case Format::kModels:
      return "cnnviz/models";
    case Format::kSynthesis:
      return "cnnviz/synthesis";
    case Format::kTopActivationsState:
      return "cnnviz/top-activations-state";
  }
  return "cnnviz/unknown";
}

inline int format_version(Format) { return 1; }

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_FORMATS_H_
