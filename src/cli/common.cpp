#include "common.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <ostream>
#include <tuple>

#include "cnnviz/core/blas.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/model_store.h"
#include "cnnviz/core/runtime.h"
#include "cnnviz/io/files.h"
#include "cnnviz/run/inputs.h"
#include "config.h"

namespace cnnviz::cli {

const CLI::Option* add_models_dir_option(CLI::App& sub, std::string& dir) {
  return sub
      .add_option("--models-dir", dir,
                  "Directory searched first for model names (then the user's, the "
                  "installation's; 'cnnviz models' shows them)")
      ->envname("CNNVIZ_MODELS");
}

std::vector<ModelDir> models_search_path(const std::string& dir, const CLI::Option* option) {
  ModelDir chosen{dir, "--models-dir"};
  const char* env = std::getenv("CNNVIZ_MODELS");
  if (dir.empty()) {
    chosen.source.clear();
  } else if (set_by_config(option)) {
    chosen.source = "config file";
  } else if (env && dir == env) {
    chosen.source = "$CNNVIZ_MODELS";
  }
  return model_search_path(chosen);
}

namespace {

constexpr std::array kInputLayouts = {InputLayout::kNchw, InputLayout::kNhwc};
constexpr std::array kDetectLayouts = {DetectLayout::kYolov8, DetectLayout::kYolov5};

template <typename Layout, size_t N, typename Name>
std::vector<std::string> names_of(const std::array<Layout, N>& layouts, Name name) {
  std::vector<std::string> names;
  for (Layout l : layouts) names.push_back(name(l));
  return names;
}

void add_layout_option(CLI::App& sub, ModelOptions& opts, bool detector_layouts) {
  std::vector<std::string> names = names_of(kInputLayouts, input_layout_name);
  std::string help =
      "The model's image input: nchw, or nhwc (channels last, as Keras exports; ONNX models); "
      "default: from an ONNX model's input shape";
  if (detector_layouts) {
    for (const std::string& n : names_of(kDetectLayouts, layout_name)) names.push_back(n);
    help +=
        ". Or how to read a detector's raw output: yolov8's [N,4+C,A] or yolov5's [N,A,5+C] (a "
        "detector without metadata; letterboxed to --size). Give it twice for both";
  }
  // One value per --layout, so that the images after it stay positional.
  sub.add_option("--layout", opts.layouts, help)
      ->check(CLI::IsMember(names))
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

// The one value of `names` among --layout's, or "" when none is; throws
// Error(kUsage) when two differ.
std::string one_layout(const ModelOptions& opts, const std::vector<std::string>& names) {
  std::string found;
  for (const std::string& v : opts.layouts) {
    if (std::find(names.begin(), names.end(), v) == names.end()) continue;
    if (!found.empty() && found != v) {
      throw Error(ErrorCode::kUsage, "--layout " + found + " and --layout " + v + ": pick one");
    }
    found = v;
  }
  return found;
}

InputLayout input_layout(const ModelOptions& opts) {
  const std::string name = one_layout(opts, names_of(kInputLayouts, input_layout_name));
  return name.empty() ? InputLayout::kFromShape : parse_input_layout(name, "--layout");
}

}  // namespace

DetectLayout detect_layout(const ModelOptions& opts) {
  const std::string name = one_layout(opts, names_of(kDetectLayouts, layout_name));
  return name.empty() ? DetectLayout::kNone : parse_layout(name, "--layout");
}

void add_model_options(CLI::App& sub, ModelOptions& opts, bool channels_flag,
                       bool detector_layouts) {
  sub.add_option("-m,--model", opts.model,
                 "Model name (the first NAME.pt on the models search path: cnnviz models) or a "
                 "TorchScript file")
      ->envname("CNNVIZ_MODEL")
      ->capture_default_str();
  opts.models_dir_option = add_models_dir_option(sub, opts.models_dir);
  sub.add_option("--threads", opts.threads, "LibTorch threads (default: every available core)")
      ->check(CLI::Range(1, kMaxThreads));
  sub.add_option("--device", opts.device,
                 "cpu, cuda, cuda:N, or auto (CUDA when available, else the CPU)")
      ->envname("CNNVIZ_DEVICE")
      ->capture_default_str();
  sub.add_option("--labels", opts.labels,
                 "Class names, one per line (for models without metadata; overrides it)");
  for (auto [name, values, help] :
       {std::tuple{"--mean", &opts.mean,
                   "Per-channel mean of the normalization (R,G,B; one value for a grey model)"},
        std::tuple{"--std", &opts.std,
                   "Per-channel std of the normalization (R,G,B; one value for a grey model)"}}) {
    // One argument, "a,b,c" or "a": one value per input channel (counted
    // against the channels once the model is known).
    sub.add_option_function<std::string>(
           name,
           [name = std::string(name), values](const std::string& text) {
             values->clear();
             size_t start = 0;
             for (;;) {
               const size_t comma = text.find(',', start);
               const std::string item = text.substr(start, comma - start);
               size_t used = 0;
               double v = 0;
               try {
                 v = std::stod(item, &used);
               } catch (const std::exception&) {
                 used = 0;
               }
               if (item.empty() || used != item.size() || !(std::abs(v) <= 1e6)) {
                 throw CLI::ValidationError(name,
                                            "'" + item + "' is not a number between -1e6 and 1e6");
               }
               values->push_back(static_cast<float>(v));
               if (comma == std::string::npos) break;
               start = comma + 1;
             }
             if (values->size() > 3) {
               throw CLI::ValidationError(name, "at most 3 values (one per input channel)");
             }
           },
           help)
        ->allow_extra_args(false);
  }
  sub.add_option(channels_flag ? "--channels" : "--input-channels", opts.channels,
                 "Input channels of the model: 3 (RGB) or 1 (grey: the image's ITU-R 601 luma)")
      ->check(CLI::IsMember({1, 3}));
  sub.add_option("--size", opts.size, "Input size: resize the shorter side to N, crop N x N")
      ->check(CLI::Range(8, 4096));
  sub.add_option("--resize", opts.resize,
                 "Resize the shorter side to N before the crop (default: the crop size)")
      ->check(CLI::Range(8, 8192));
  sub.add_flag("--no-crop", opts.no_crop,
               "No centre crop: the whole image, its shorter side resized (models that take any "
               "input size; one image per pass)");
  add_layout_option(sub, opts, detector_layouts);
}

void add_input_options(CLI::App& sub, InputOptions& opts) {
  sub.add_option("images", opts.images,
                 "Image files or directories (searched recursively for image files)");
  sub.add_option("--from-list", opts.from_list,
                 "Also read image paths from FILE, one per line ('-' for stdin)");
  sub.add_option("--shard", opts.shard,
                 "Process only the K-th of N deterministic shares of the inputs (K/N)")
      ->capture_default_str();
  sub.add_flag("-q,--quiet", opts.quiet, "No progress bar or summary on stderr");
  sub.add_option("--max-pixels", opts.max_pixels,
                 "Images whose header declares more pixels (width x height) fail before "
                 "decoding")
      ->check(CLI::Range(int64_t{1}, kMaxMaxPixels))
      ->capture_default_str();
}

std::vector<std::string> collect_inputs(const InputOptions& opts, std::ostream& err) {
  ExpandedInputs inputs = expand_inputs(opts.images, opts.from_list, std::cin);
  if (!opts.quiet) {
    for (const std::string& note : inputs.notes) err << kPrefix << note << "\n";
  }
  if (inputs.images.empty()) {
    throw Error(ErrorCode::kUsage,
                "no input images (give image files or directories, or --from-list FILE)");
  }
  return std::move(inputs.images);
}

namespace {

void apply_overrides(const ModelOptions& opts, ModelInfo& info) {
  if (!opts.labels.empty()) info.labels = read_labels(opts.labels);
  Preprocessing& p = info.preprocess;
  if (opts.channels > 0 && opts.channels != p.channels) {
    // Another channel count: that count's defaults unless --mean/--std say more.
    p.channels = opts.channels;
    p.mean = p.channels == 1 ? std::array<float, 3>{0, 0, 0} : Preprocessing{}.mean;
    p.std = p.channels == 1 ? std::array<float, 3>{1, 1, 1} : Preprocessing{}.std;
  }
  for (const auto& [name, values] : {std::pair{"--mean", &opts.mean}, {"--std", &opts.std}}) {
    if (!values->empty() && values->size() != static_cast<size_t>(p.channels)) {
      throw Error(ErrorCode::kUsage, std::string(name) + ": " + std::to_string(values->size()) +
                                         " value" + (values->size() == 1 ? "" : "s") +
                                         " for a model with " + std::to_string(p.channels) +
                                         " input channel" + (p.channels == 1 ? "" : "s") +
                                         " (--channels)");
    }
  }
  if (!opts.mean.empty()) std::copy(opts.mean.begin(), opts.mean.end(), p.mean.begin());
  if (!opts.std.empty()) {
    for (float s : opts.std) {
      if (!(s > 0)) throw Error(ErrorCode::kUsage, "--std: every value must be positive");
    }
    std::copy(opts.std.begin(), opts.std.end(), p.std.begin());
  }
  if (opts.size > 0) p.resize = p.crop = opts.size;
  if (opts.resize > 0) p.resize = opts.resize;
  if (opts.no_crop) p.crop = 0;
  if (p.max_size > 0 || info.proposals) {  // torchvision's detectors: never cropped
    p.crop = 0;
    if (p.max_size > 0) p.max_size = std::max(p.max_size, p.resize);
  }
  if (p.resize < p.crop) {
    throw Error(ErrorCode::kUsage, "--resize " + std::to_string(p.resize) +
                                       ": smaller than the crop (" + std::to_string(p.crop) + ")");
  }
}

}  // namespace

Model open_model(const ModelOptions& opts, std::ostream& err) {
  const at::Device device = resolve_device(opts.device);
  if (opts.device == "auto" && device.is_cpu() && cuda_built()) {
    err << kPrefix << "warning: this LibTorch has CUDA but no GPU is visible: running on the CPU\n";
  }
  Model model = Model::load(
      resolve_model(opts.model, models_search_path(opts.models_dir, opts.models_dir_option)),
      device, LoadOptions{opts.onnx_values, input_layout(opts)});
  set_threads(opts.threads);
  if (device.is_cpu() && loaded_blas().reference && has_matrix_products(model)) {
    err << kPrefix << "warning: model '" << model.info().name
        << "' multiplies matrices, and they run on the reference BLAS (" << loaded_blas().path
        << "), 10-20x slower than an optimized one: install libopenblas0-openmp\n";
  }
  apply_overrides(opts, model.mutable_info());
  const ModelInfo& info = model.info();
  const bool told = !opts.labels.empty() || !opts.mean.empty() || !opts.std.empty() ||
                    opts.size > 0 || opts.resize > 0 || opts.channels > 0;
  if (!info.has_metadata && !told) {
    err << kPrefix << "warning: model '" << info.path
        << "' has no cnnviz.json metadata: using ImageNet preprocessing (224, mean/std of "
           "ImageNet; --size, --mean, --std to change) and unnamed classes (--labels FILE)\n";
  } else if (info.weights_kind == WeightsKind::kRandom) {
    const std::string export_name = info.arch.empty() ? info.name : info.arch;
    err << kPrefix << "WARNING: model '" << info.name
        << "' has RANDOM weights: its predictions are meaningless\n"
        << kPrefix << "  for real ones: cnnviz-export --force " << export_name
        << " (needs network or a torch hub cache; see docs/models.md)\n";
  }
  return model;
}

const TestSeams& test_seams() {
  static const TestSeams seams = [] {
    auto number = [](const char* name, long fallback) {
      const char* v = std::getenv(name);
      return v && *v ? std::atol(v) : fallback;
    };
    TestSeams t;
    t.write_delay_ms = static_cast<int>(number("CNNVIZ_TEST_WRITE_DELAY_MS", 0));
    t.job_delay_ms = static_cast<int>(number("CNNVIZ_TEST_JOB_DELAY_MS", 0));
    t.oom_above = number("CNNVIZ_TEST_OOM_ABOVE", -1);
    return t;
  }();
  return seams;
}

}  // namespace cnnviz::cli
