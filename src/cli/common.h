// Options and helpers shared by the subcommands.
#ifndef CNNVIZ_CLI_COMMON_H_
#define CNNVIZ_CLI_COMMON_H_

#include <CLI/CLI.hpp>
#include <iosfwd>
#include <string>
#include <vector>

#include "cnnviz/core/limits.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/model_store.h"

namespace cnnviz::cli {

// Options every model-running subcommand takes. The environment variables are
// read by CLI11 when the flag is absent.
struct ModelOptions {
  std::string model = "vgg16";                     // -m/--model, $CNNVIZ_MODEL
  std::string models_dir;                          // --models-dir, $CNNVIZ_MODELS, the config file
  const CLI::Option* models_dir_option = nullptr;  // to tell where models_dir came from
  int threads = 0;                                 // --threads; 0 = every available core
  std::string device = "auto";                     // --device cpu|cuda|cuda:N|auto, $CNNVIZ_DEVICE
  // Overrides for models without (or with other) metadata.
  std::string labels;            // --labels FILE, one class name per line
  std::vector<float> mean, std;  // --mean, --std: one value per input channel
  int channels = 0;              // --channels 1|3; 0: the metadata's (default 3)
  int size = 0;                  // --size N: resize and crop to N
  int resize = 0;                // --resize N: shorter side to N before the crop
  bool no_crop = false;          // --no-crop: the whole resized image
  // --layout, at most once per kind: the input's (nchw|nhwc) and, for
  // detect, a detector output's (yolov8|yolov5).
  std::vector<std::string> layouts;
  // Set by subcommands from their --layer: the ONNX value names among them
  // become layers when the model loads (Model::load).
  std::vector<std::string> onnx_values;
};

// `channels_flag` false: the input-channel override is --input-channels (for
// subcommands whose --channels picks a layer's channels). `detector_layouts`:
// --layout also takes a detector output's layout (detect_layout()).
void add_model_options(CLI::App& sub, ModelOptions& opts, bool channels_flag = true,
                       bool detector_layouts = false);

// The detector output layout among --layout's values; kNone when none is
// given. Throws Error(kUsage) when two are.
DetectLayout detect_layout(const ModelOptions& opts);

// Adds --models-dir (and $CNNVIZ_MODELS) to `sub`; returns the option.
const CLI::Option* add_models_dir_option(CLI::App& sub, std::string& dir);

// The models search path (model_store.h) with `dir` first, labelled with
// where it came from: --models-dir, $CNNVIZ_MODELS or the config file.
std::vector<ModelDir> models_search_path(const std::string& dir, const CLI::Option* option);

// Where the images come from: IMAGE... arguments (files or directories),
// --from-list FILE ("-": stdin), --shard K/N; and whether to show progress.
struct InputOptions {
  std::vector<std::string> images;
  std::string from_list;
  std::string shard = "1/1";
  bool quiet = false;
  int64_t max_pixels = kDefaultMaxPixels;  // --max-pixels
};

void add_input_options(CLI::App& sub, InputOptions& opts);

// The expanded input list (see inputs.h); what directories skipped is said
// on `err` (unless --quiet). Throws Error(kUsage) when it is empty.
std::vector<std::string> collect_inputs(const InputOptions& opts, std::ostream& err);

// Resolves, loads and announces the model: sets the thread count, and warns on
// `err` when the weights are random or the file has no metadata.
Model open_model(const ModelOptions& opts, std::ostream& err);

// The test suite's seams, the one place the CLI reads them from the
// environment (tests run the binary): CNNVIZ_TEST_WRITE_DELAY_MS (each map of
// an explain run takes longer to write), CNNVIZ_TEST_JOB_DELAY_MS (each job of
// `serve` takes longer) and CNNVIZ_TEST_OOM_ABOVE (passes over more images
// fail as out of memory). The library reads no environment for them.
struct TestSeams {
  int write_delay_ms = 0;
  int job_delay_ms = 0;
  int64_t oom_above = -1;  // -1: none
};
const TestSeams& test_seams();

// The one prefix of every message cnnviz writes to stderr.
constexpr const char* kPrefix = "cnnviz: ";

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_COMMON_H_
