#include "cnnviz/model.h"

#include <torch/script.h>

#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>

#include "cnnviz/error.h"
#include "cnnviz/runtime.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace cnnviz {

namespace {

constexpr const char* kMetadataFile = "cnnviz.json";
constexpr int kMetadataFormat = 1;

[[noreturn]] void bad_metadata(const std::string& path, const std::string& problem) {
  throw Error(ErrorCode::kModel, "model '" + path + "': invalid " + kMetadataFile + ": " + problem +
                                     " (re-export it with scripts/export_models.py)");
}

std::array<float, 3> read_triple(const json& j, const char* key, const std::string& path) {
  if (!j.contains(key) || !j[key].is_array() || j[key].size() != 3) {
    bad_metadata(path, std::string("preprocess.") + key + " must be a list of 3 numbers");
  }
  std::array<float, 3> v{};
  for (size_t i = 0; i < 3; ++i) {
    if (!j[key][i].is_number())
      bad_metadata(path, std::string("preprocess.") + key + " not numeric");
    v[i] = j[key][i].get<float>();
  }
  return v;
}

}  // namespace

const char* weights_kind_name(WeightsKind kind) {
  switch (kind) {
    case WeightsKind::kPretrained:
      return "pretrained";
    case WeightsKind::kFile:
      return "file";
    case WeightsKind::kRandom:
      return "random";
    case WeightsKind::kUnknown:
      break;
  }
  return "unknown";
}

std::string ModelInfo::label(int64_t index) const {
  if (index >= 0 && index < static_cast<int64_t>(labels.size())) return labels[index];
  return "class " + std::to_string(index);
}

ModelInfo parse_model_info(const std::string& json_text, const std::string& path) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    bad_metadata(path, first_line(e.what()));
  }
  if (!j.is_object()) bad_metadata(path, "not a JSON object");
  ModelInfo info;
  info.path = path;
  info.has_metadata = true;
  try {
    int format = j.value("cnnviz_format", 0);
    if (format != kMetadataFormat) {
      bad_metadata(path, "cnnviz_format " + std::to_string(format) +
                             " is not supported (expected " + std::to_string(kMetadataFormat) +
                             ")");
    }
    info.name = j.value("name", std::string());
    info.arch = j.value("arch", std::string());
    if (j.contains("weights")) {
      const json& w = j["weights"];
      std::string kind = w.value("kind", std::string());
      info.weights_kind = kind == "pretrained" ? WeightsKind::kPretrained
                          : kind == "file"     ? WeightsKind::kFile
                          : kind == "random"   ? WeightsKind::kRandom
                                               : WeightsKind::kUnknown;
      info.weights_source = w.value("source", std::string());
    }
    info.labels = j.value("labels", std::vector<std::string>());
    if (j.contains("num_classes") && j["num_classes"].get<size_t>() != info.labels.size()) {
      bad_metadata(path, "num_classes and the number of labels differ");
    }
    if (j.contains("preprocess")) {
      const json& p = j["preprocess"];
      info.preprocess.resize = p.value("resize", info.preprocess.resize);
      info.preprocess.crop = p.value("crop", info.preprocess.crop);
      info.preprocess.mean = read_triple(p, "mean", path);
      info.preprocess.std = read_triple(p, "std", path);
    }
    info.feature_layers = j.value("feature_layers", std::vector<std::string>());
    info.gradcam_layer = j.value("gradcam_layer", std::string());
  } catch (const json::exception& e) {
    bad_metadata(path, first_line(e.what()));
  }
  const Preprocessing& p = info.preprocess;
  if (p.crop < 1 || p.resize < p.crop) bad_metadata(path, "preprocess needs 1 <= crop <= resize");
  for (float s : p.std) {
    if (!(s > 0.0f)) bad_metadata(path, "preprocess.std must be positive");
  }
  return info;
}

struct Model::Impl {
  torch::jit::Module module;
  ModelInfo info;
  at::Device device = at::Device(at::kCPU);

  // Inference runs on a frozen copy optimized for it (constants folded,
  // batch norm folded into convolutions, oneDNN layouts): about twice as fast
  // on CPU, logits within 1e-6 of the original. The original module stays
  // untouched for the gradient-based methods. Built on first use.
  std::once_flag frozen_once;
  torch::jit::Module frozen;
  bool frozen_ok = false;

  torch::jit::Module& inference_module() {
    std::call_once(frozen_once, [this] {
      try {
        frozen = torch::jit::freeze(module);
        // Its oneDNN rewrites are for the CPU; on a GPU, freezing alone.
        if (device.is_cpu()) frozen = torch::jit::optimize_for_inference(frozen);
        frozen_ok = true;
      } catch (const std::exception&) {
        frozen_ok = false;  // an exotic graph: the plain module still works
      }
    });
    return frozen_ok ? frozen : module;
  }
};

Model::Model(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Model Model::load(const std::string& path, at::Device device) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(ErrorCode::kModel, "model file '" + path + "': not found");
  if (fs::is_directory(path, ec)) {
    throw Error(ErrorCode::kModel, "model file '" + path + "': is a directory");
  }
  auto impl = std::make_shared<Impl>();
  torch::jit::ExtraFilesMap extra{{kMetadataFile, ""}};
  try {
    impl->module = torch::jit::load(path, device, extra);
    impl->device = device;
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kModel, "cannot load model '" + path + "': not a TorchScript archive (" +
                                       first_line(e.what_without_backtrace()) + ")");
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kModel, "cannot load model '" + path + "': " + first_line(e.what()));
  }
  impl->module.eval();
  const std::string& meta = extra[kMetadataFile];
  if (meta.empty()) {
    impl->info.path = path;
  } else {
    impl->info = parse_model_info(meta, path);
  }
  if (impl->info.name.empty()) impl->info.name = fs::path(path).stem().string();
  return Model(std::move(impl));
}

const ModelInfo& Model::info() const { return impl_->info; }

ModelInfo& Model::mutable_info() { return impl_->info; }

at::Device Model::device() const { return impl_->device; }

torch::jit::Module& Model::module() const { return impl_->module; }

at::Tensor Model::logits(const at::Tensor& batch) const {
  c10::InferenceMode no_autograd;
  simulate_out_of_memory(batch.size(0));
  c10::IValue out;
  try {
    out = impl_->inference_module().forward({batch.to(impl_->device)});
  } catch (const c10::OutOfMemoryError& e) {
    throw OutOfMemory("model '" + impl_->info.path + "': out of memory on " +
                      impl_->device.str() + " for a batch of " + std::to_string(batch.size(0)));
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kRuntime, "model '" + impl_->info.path + "': forward pass failed (" +
                                         first_line(e.what_without_backtrace()) + ")");
  } catch (const std::exception& e) {  // torch::jit::JITException and friends
    throw Error(ErrorCode::kRuntime, "model '" + impl_->info.path + "': forward pass failed (" +
                                         torch_error_summary(e.what()) + ")");
  }
  // Some classifiers (GoogLeNet, Inception) return a tuple whose first
  // element holds the logits.
  if (out.isTuple()) out = out.toTupleRef().elements().at(0);
  if (!out.isTensor() || out.toTensor().dim() != 2) {
    throw Error(ErrorCode::kRuntime,
                "model '" + impl_->info.path + "': forward does not return [N,classes] logits");
  }
  at::Tensor result = out.toTensor().to(at::kCPU, at::kFloat);
  const auto& labels = impl_->info.labels;
  if (!labels.empty() && result.size(1) != static_cast<int64_t>(labels.size())) {
    throw Error(ErrorCode::kModel, "model '" + impl_->info.path + "': outputs " +
                                       std::to_string(result.size(1)) + " classes but has " +
                                       std::to_string(labels.size()) + " labels");
  }
  return result;
}

}  // namespace cnnviz
