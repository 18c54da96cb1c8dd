// `cnnviz evaluate`: faithfulness metrics of methods over images (the run
// layer's orchestration of faithfulness.h; see docs/guide.md, "Evaluate").
#ifndef CNNVIZ_RUN_EVALUATE_H_
#define CNNVIZ_RUN_EVALUATE_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/faithfulness.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/model.h"
#include "cnnviz/methods/methods.h"
#include "cnnviz/run/progress.h"

namespace cnnviz {

struct EvaluateOptions {
  std::vector<std::string> methods;         // names from method_table()
  std::string layer;                        // for layer methods; default: the model's
  std::optional<std::string> target_class;  // index or label; default: top-1
  FaithfulnessOptions curves;
  bool randomization = true;  // the model-randomization sanity check
  uint64_t seed = 0;          // of the randomized weights
  MethodParams params;        // settings of the methods
  std::string outdir = "cnnviz-eval";
  bool plots = true;                          // curves_<method>.png per image
  int64_t max_pixels = kDefaultMaxPixels;     // images with more fail before decoding
  std::string report_name = "evaluate.json";  // in OUTDIR (shards: evaluate.shard-K-of-N.json)
};

// Runs every method on every image, measures each map, writes
// OUTDIR/evaluate.json (returned too) and OUTDIR/<stem>/curves_<method>.png.
// A bad image gets an error entry; the others go on. `failed` counts them.
nlohmann::ordered_json evaluate(const Model& model, const std::vector<std::string>& images,
                                const EvaluateOptions& options, Progress& progress, size_t& failed);

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_EVALUATE_H_
