// The feature-visualization runs behind `cnnviz filters`, `class-model`,
// `dream`, `invert` and `top-activations`: they check what they are given
// against the model, optimize or scan in batches, and write PNGs, contact
// sheets and OUTDIR/manifest.json ("format": "cnnviz/synthesis"), which
// `cnnviz report` shows. See docs/guide.md, "Feature visualization".
#ifndef CNNVIZ_RUN_SYNTHESIS_RUN_H_
#define CNNVIZ_RUN_SYNTHESIS_RUN_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cnnviz/core/limits.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/synthesis.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/progress.h"

namespace cnnviz {

struct SynthesisRunOptions {
  std::string outdir = "cnnviz-out";
  std::string layer;                 // filters, dream, invert, top-activations
  bool all_layers = false;           // invert: every feature stage
  std::string channels = "0-15";     // filters, top-activations: LIST, RANGE or all
  bool neuron = false;               // filters: the centre neuron, not the channel mean
  std::vector<std::string> classes;  // class-model
  int batch = 8;                     // images optimized together
  SynthesisOptions synthesis;
  DreamOptions dream;
  int k = 9;               // top-activations: images kept per channel
  size_t batch_size = 16;  // top-activations: images per forward pass
  int decoders = 0;        // top-activations: decoding threads (0: every core)
  Shard shard;             // top-activations: this process's share
  bool resume = false;     // top-activations: continue from the saved state
  bool merge = false;      // top-activations: combine the shards' states
  int64_t max_pixels = kDefaultMaxPixels;
};

// Parses a channel list for a layer of `count` channels: "all", "K",
// "A-B" (inclusive), or a comma-separated list of those. Throws
// Error(kUsage) naming the text and the layer's channel count for anything
// out of range or malformed.
std::vector<int64_t> parse_channel_list(const std::string& text, int64_t count,
                                        const std::string& layer);

// The runs. Each writes OUTDIR/manifest.json and returns it. They throw
// Error(kUsage) for a bad layer, channel, class or option, Error(kUnsupported)
// for a layer whose output is not a spatial map where one is needed, and
// Error(kOutput) when OUTDIR cannot be written. For dream, invert and
// top-activations, an image that cannot be read fails alone (its entry has
// an error; `progress` reports it).
nlohmann::ordered_json run_filters(const Model& model, const SynthesisRunOptions& options,
                                   Progress& progress);
nlohmann::ordered_json run_class_model(const Model& model, const SynthesisRunOptions& options,
                                       Progress& progress);
nlohmann::ordered_json run_dream(const Model& model, const std::vector<std::string>& images,
                                 const SynthesisRunOptions& options, Progress& progress);
nlohmann::ordered_json run_invert(const Model& model, const std::vector<std::string>& images,
                                  const SynthesisRunOptions& options, Progress& progress);
// One pass over the images of options.shard keeping the top k per channel;
// the state (OUTDIR/top-activations[.shard-K-of-N].state.json) is saved after
// every batch, so --resume continues an interrupted run; --merge combines
// every shard's state and writes the sheets.
nlohmann::ordered_json run_top_activations(const Model& model,
                                           const std::vector<std::string>& images,
                                           const SynthesisRunOptions& options, Progress& progress);

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_SYNTHESIS_RUN_H_
