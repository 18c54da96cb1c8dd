#include "cnnviz/core/model.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/script.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>

#include "cnnviz/core/error.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/onnx.h"
#include "cnnviz/core/runtime.h"
#include "logits.h"

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

// Reads the fields of cnnviz.json, each checked for its type and range; a
// failure names the field.
class MetadataReader {
 public:
  MetadataReader(const json& root, const std::string& path) : root_(root), path_(path) {}

  [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
    bad_metadata(path_, field + ": " + problem);
  }
  const json* find(const json& in, const char* key) const {
    auto it = in.find(key);
    return it == in.end() || it->is_null() ? nullptr : &*it;
  }
  std::string string(const json& in, const char* key, const std::string& field,
                     const std::string& fallback = {}) const {
    const json* v = find(in, key);
    if (!v) return fallback;
    if (!v->is_string()) fail(field, "must be a string");
    const std::string s = v->get<std::string>();
    if (s.size() > kMaxMetadataString) {
      fail(field, "longer than " + std::to_string(kMaxMetadataString) + " bytes");
    }
    return s;
  }
  int64_t integer(const json& in, const char* key, const std::string& field, int64_t lo, int64_t hi,
                  int64_t fallback) const {
    const json* v = find(in, key);
    if (!v) return fallback;
    if (!v->is_number_integer() && !v->is_number_unsigned()) fail(field, "must be an integer");
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
      fail(field, std::to_string(v->get<uint64_t>()) + " is out of range (" + std::to_string(lo) +
                      " to " + std::to_string(hi) + ")");
    }
    const int64_t n = v->get<int64_t>();
    if (n < lo || n > hi) {
      fail(field, std::to_string(n) + " is out of range (" + std::to_string(lo) + " to " +
                      std::to_string(hi) + ")");
    }
    return n;
  }
  std::vector<std::string> strings(const json& in, const char* key, const std::string& field,
                                   size_t max_count) const {
    const json* v = find(in, key);
    if (!v) return {};
    if (!v->is_array()) fail(field, "must be a list of strings");
    if (v->size() > max_count) {
      fail(field, "has " + std::to_string(v->size()) + " entries (at most " +
                      std::to_string(max_count) + ")");
    }
    std::vector<std::string> out;
    for (size_t i = 0; i < v->size(); ++i) {
      const json& e = (*v)[i];
      const std::string name = field + "[" + std::to_string(i) + "]";
      if (!e.is_string()) fail(name, "must be a string");
      out.push_back(e.get<std::string>());
      if (out.back().size() > kMaxMetadataString) {
        fail(name, "longer than " + std::to_string(kMaxMetadataString) + " bytes");
      }
    }
    return out;
  }
  // A list of `n` numbers (one per input channel), in the first n entries.
  std::array<float, 3> triple(const json& in, const char* key, const std::string& field,
                              const std::array<float, 3>& fallback, bool positive,
                              size_t n = 3) const {
    const json* v = find(in, key);
    if (!v) return fallback;
    const std::string what = "must be a list of " + std::to_string(n) + " number" +
                             (n == 1 ? "" : "s") + " (one per input channel)";
    if (!v->is_array() || v->size() != n) fail(field, what);
    std::array<float, 3> out = fallback;
    for (size_t i = 0; i < n; ++i) {
      const json& e = (*v)[i];
      if (!e.is_number()) fail(field, what);
      const double d = e.get<double>();
      if (!std::isfinite(d) || std::abs(d) > 1e6 || (positive && !(d > 0))) {
        fail(field, std::string("values must be ") + (positive ? "positive and " : "") +
                        "at most 1e6 in magnitude");
      }
      out[i] = static_cast<float>(d);
    }
    return out;
  }
  const json& object(const json& in, const char* key, const std::string& field) const {
    static const json empty = json::object();
    const json* v = find(in, key);
    if (!v) return empty;
    if (!v->is_object()) fail(field, "must be an object");
    return *v;
  }

 private:
  const json& root_;
  const std::string& path_;
};

}  // namespace

const char* task_name(Task task) {
  switch (task) {
    case Task::kSegment:
      return "segment";
    case Task::kDetect:
      return "detect";
    case Task::kClassify:
      break;
  }
  return "classify";
}

const char* layout_name(DetectLayout layout) {
  switch (layout) {
    case DetectLayout::kYolov8:
      return "yolov8";
    case DetectLayout::kYolov5:
      return "yolov5";
    case DetectLayout::kNone:
      break;
  }
  return "";
}

DetectLayout parse_layout(const std::string& name, const std::string& subject) {
  if (name == "yolov8") return DetectLayout::kYolov8;
  if (name == "yolov5") return DetectLayout::kYolov5;
  throw Error(ErrorCode::kUsage, subject + " '" + name + "': unknown (yolov8 or yolov5)");
}

const char* input_layout_name(InputLayout layout) {
  switch (layout) {
    case InputLayout::kNchw:
      return "nchw";
    case InputLayout::kNhwc:
      return "nhwc";
    case InputLayout::kFromShape:
      break;
  }
  return "";
}

InputLayout parse_input_layout(const std::string& name, const std::string& subject) {
  if (name == "nchw") return InputLayout::kNchw;
  if (name == "nhwc") return InputLayout::kNhwc;
  throw Error(ErrorCode::kUsage, subject + " '" + name + "': unknown (nchw or nhwc)");
}

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

void check_output_classes(const ModelInfo& info, int64_t outputs) {
  if (!info.labels.empty() && outputs != static_cast<int64_t>(info.labels.size())) {
    throw Error(ErrorCode::kModel,
                "model '" + info.path + "': outputs " + std::to_string(outputs) +
                    " classes but has " + std::to_string(info.labels.size()) +
                    " labels (from its metadata or --labels: one label per class)");
  }
  if (info.num_classes > 0 && outputs != info.num_classes) {
    throw Error(ErrorCode::kModel, "model '" + info.path + "': outputs " + std::to_string(outputs) +
                                       " classes but its metadata says num_classes " +
                                       std::to_string(info.num_classes));
  }
}

std::string ModelInfo::label(int64_t index) const {
  if (index >= 0 && index < static_cast<int64_t>(labels.size())) return labels[index];
  return "class " + std::to_string(index);
}

std::string ModelInfo::layer_path(const std::string& name) const {
  auto it = layer_aliases.find(name);
  return it == layer_aliases.end() ? name : it->second;
}

bool is_background_label(const std::string& label) {
  std::string l = label;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
  return l == "__background__" || l == "background";
}

int64_t ModelInfo::background_class() const {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (is_background_label(labels[i])) return static_cast<int64_t>(i);
  }
  return -1;
}

namespace {

// "task", and a detector's "layout".
void read_task(const MetadataReader& r, const json& j, ModelInfo& info) {
  const std::string task = r.string(j, "task", "task");
  if (task == "segment") {
    info.task = Task::kSegment;
  } else if (task == "detect") {
    info.task = Task::kDetect;
  } else if (!task.empty() && task != "classify") {
    r.fail("task", "'" + task + "' is not classify, segment or detect");
  }
  const std::string layout = r.string(j, "layout", "layout");
  if (info.task == Task::kDetect) {
    if (layout != "yolov8" && layout != "yolov5") {
      r.fail("layout", "'" + layout + "': a detector's must be yolov8 or yolov5");
    }
    info.layout = parse_layout(layout, "layout");
  }
  if (const json* nms = r.find(j, "nms_iou")) {
    if (info.task != Task::kDetect) r.fail("nms_iou", "applies to detectors (task detect)");
    if (!nms->is_number() || !(nms->get<double>() > 0 && nms->get<double>() <= 1)) {
      r.fail("nms_iou", "must be a number in (0, 1]");
    }
    info.nms_iou = nms->get<double>();
  }
  if (const json* two = r.find(j, "proposals")) {
    if (!two->is_boolean()) r.fail("proposals", "must be true or false");
    if (info.task != Task::kDetect) r.fail("proposals", "applies to detectors (task detect)");
    info.proposals = two->get<bool>();
  }
  if (const json* multi = r.find(j, "multi_label")) {
    if (!multi->is_boolean()) r.fail("multi_label", "must be true or false");
    if (info.task != Task::kDetect) r.fail("multi_label", "applies to detectors (task detect)");
    info.multi_label = multi->get<bool>();
  }
}

// "preprocess.letterbox": a detector's only; it replaces the crop.
void read_letterbox(const MetadataReader& r, const json& p, ModelInfo& info) {
  const json* letterbox = r.find(p, "letterbox");
  if (!letterbox) return;
  if (!letterbox->is_boolean()) r.fail("preprocess.letterbox", "must be true or false");
  info.preprocess.letterbox = letterbox->get<bool>();
  if (info.preprocess.letterbox && info.task != Task::kDetect) {
    r.fail("preprocess.letterbox", "applies to detectors (task detect)");
  }
  if (info.preprocess.letterbox) info.preprocess.crop = 0;
}

// "max_size": a torchvision detector's cap on the longer side (no crop, no letterbox).
void read_max_size(const MetadataReader& r, const json& p, ModelInfo& info) {
  Preprocessing& pre = info.preprocess;
  pre.max_size =
      static_cast<int>(r.integer(p, "max_size", "preprocess.max_size", 0, kMaxResize, 0));
  if (pre.max_size == 0) return;
  if (pre.max_size < pre.resize) {
    r.fail("preprocess.max_size", std::to_string(pre.max_size) + " is smaller than resize (" +
                                      std::to_string(pre.resize) + ")");
  }
  if (pre.crop != 0 || pre.letterbox) {
    r.fail("preprocess.max_size", "applies without crop and letterbox");
  }
}

}  // namespace

ModelInfo parse_model_info(const std::string& json_text, const std::string& path) {
  if (json_text.size() > kMaxMetadataBytes) {
    bad_metadata(path, "larger than " + std::to_string(kMaxMetadataBytes >> 20) + " MiB");
  }
  json j;
  try {
    j = parse_json<json>(json_text, "metadata", ErrorCode::kModel);
  } catch (const Error& e) {
    bad_metadata(path, std::string(e.what()).substr(std::string("metadata: ").size()));
  }
  if (!j.is_object()) bad_metadata(path, "not a JSON object");
  const MetadataReader r(j, path);
  ModelInfo info;
  info.path = path;
  info.has_metadata = true;
  const int64_t format = r.integer(j, "cnnviz_format", "cnnviz_format", INT64_MIN, INT64_MAX, 0);
  if (format != kMetadataFormat) {
    bad_metadata(path, "cnnviz_format " + std::to_string(format) + " is not supported (expected " +
                           std::to_string(kMetadataFormat) + ")");
  }
  info.name = r.string(j, "name", "name");
  info.arch = r.string(j, "arch", "arch");
  read_task(r, j, info);
  const json& w = r.object(j, "weights", "weights");
  const std::string kind = r.string(w, "kind", "weights.kind");
  info.weights_kind = kind == "pretrained" ? WeightsKind::kPretrained
                      : kind == "file"     ? WeightsKind::kFile
                      : kind == "random"   ? WeightsKind::kRandom
                                           : WeightsKind::kUnknown;
  info.weights_source = r.string(w, "source", "weights.source");
  info.labels = r.strings(j, "labels", "labels", kMaxClasses);
  info.num_classes = r.integer(j, "num_classes", "num_classes", 1, kMaxClasses, 0);
  if (info.num_classes > 0 && !info.labels.empty() &&
      info.num_classes != static_cast<int64_t>(info.labels.size())) {
    r.fail("num_classes", std::to_string(info.num_classes) +
                              " differs from the number of labels (" +
                              std::to_string(info.labels.size()) + ")");
  }
  const json& p = r.object(j, "preprocess", "preprocess");
  Preprocessing& pre = info.preprocess;
  pre.crop = static_cast<int>(r.integer(p, "crop", "preprocess.crop", 0, kMaxCrop, pre.crop));
  pre.resize = static_cast<int>(
      r.integer(p, "resize", "preprocess.resize", 1, kMaxResize, std::max(pre.resize, pre.crop)));
  if (pre.resize < pre.crop) {
    r.fail("preprocess.resize", std::to_string(pre.resize) + " is smaller than the crop (" +
                                    std::to_string(pre.crop) + "; needs crop <= resize)");
  }
  read_letterbox(r, p, info);
  read_max_size(r, p, info);
  pre.channels = static_cast<int>(r.integer(p, "channels", "preprocess.channels", 1, 3, 3));
  if (pre.channels == 2) r.fail("preprocess.channels", "must be 1 (grey) or 3 (RGB)");
  if (pre.channels == 1 && pre.letterbox) r.fail("preprocess.letterbox", "needs 3 channels");
  if (pre.channels == 1) {  // without mean and std: v / 255 as it is
    pre.mean = {0.0f, 0.0f, 0.0f};
    pre.std = {1.0f, 1.0f, 1.0f};
  }
  const size_t n = static_cast<size_t>(pre.channels);
  pre.mean = r.triple(p, "mean", "preprocess.mean", pre.mean, false, n);
  pre.std = r.triple(p, "std", "preprocess.std", pre.std, true, n);
  if (info.proposals && (pre.crop > 0 || pre.letterbox)) {
    r.fail("proposals", "needs one image per pass (no crop, no letterbox)");
  }
  info.feature_layers = r.strings(j, "feature_layers", "feature_layers", kMaxMetadataLayers);
  // "gradcam_layer" is the key's name in exports before it was renamed to
  // what it means (the default of every layer method): still read.
  info.default_layer = j.contains("default_layer") ? r.string(j, "default_layer", "default_layer")
                                                   : r.string(j, "gradcam_layer", "gradcam_layer");
  return info;
}

namespace {

// The output channels of the oneDNN convolution that computes `v`, from
// its weight; -1 when `v` comes from another node.
int64_t conv_channels(const torch::jit::Value* v) {
  const torch::jit::Node* conv = v->node();
  if (conv->kind().toQualString() != std::string("prim::mkldnn_convolution")) return -1;
  const torch::jit::Node* weight = conv->input(1)->node();
  if (!weight->hasAttribute(c10::attr::value)) return -1;
  return weight->t(c10::attr::value).size(0);
}

// PyTorch 1.13's oneDNN rewrite (optimize_for_inference) runs clamp,
// hardtanh (ReLU6), hardswish and hardsigmoid in place on a oneDNN tensor
// as if its buffer were dense. With a channel count that is not a multiple
// of 16 the tensor is blocked and padded, and most of the output comes out
// wrong (off by up to 6 on values of 6: MobileNetV3's 184- and 200-channel
// blocks, SSDlite, LR-ASPP). Each such node becomes the dense ATen
// operation between a to_dense and a to_mkldnn, which the convolutions
// around it keep; after a convolution of a multiple of 16 channels (no
// padding in any blocking) the node stays. False when a node's input has
// other uses, which saw its in-place change: then the model is not
// rewritten at all.
bool repair_onednn_clamps(torch::jit::Block* block) {
  static const std::map<std::string, c10::Symbol> dense_op = {
      {"prim::MKLDNNHardTanh_", c10::Symbol::fromQualString("aten::hardtanh")},
      {"prim::MKLDNNClamp_", c10::Symbol::fromQualString("aten::hardtanh")},
      {"prim::MKLDNNHardSwish_", c10::Symbol::fromQualString("aten::hardswish")},
      {"prim::MKLDNNHardSigmoid_", c10::Symbol::fromQualString("aten::hardsigmoid")}};
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    torch::jit::Node* n = *it++;
    for (torch::jit::Block* b : n->blocks()) {
      if (!repair_onednn_clamps(b)) return false;
    }
    auto op = dense_op.find(n->kind().toQualString());
    if (op == dense_op.end()) continue;
    if (n->inputs().size() != 1) return false;
    if (conv_channels(n->input()) % 16 == 0) continue;
    if (n->input()->uses().size() != 1) return false;
    torch::jit::Graph& g = *n->owningGraph();
    torch::jit::WithInsertPoint guard(n);
    std::vector<torch::jit::NamedValue> args = {g.insert(c10::aten::to_dense, {n->input()})};
    if (op->second == c10::Symbol::fromQualString("aten::hardtanh")) {
      for (const char* bound : {"min_val", "max_val"}) {
        const c10::Symbol attr = c10::Symbol::attr(bound);
        if (!n->hasAttribute(attr)) return false;
        args.emplace_back(g.insertConstant(n->f(attr)));
      }
    }
    torch::jit::Value* dense = g.insert(op->second, args);
    n->output()->replaceAllUsesWith(g.insert(c10::aten::to_mkldnn, {dense}));
    n->destroy();
  }
  return true;
}

// `module` frozen, and on the CPU also rewritten for inference (constants
// folded, batch norm folded into convolutions, oneDNN layouts), with the
// rewrite's faulty in-place activations repaired.
torch::jit::Module inference_copy(const torch::jit::Module& module, at::Device device) {
  torch::jit::Module frozen = torch::jit::freeze(module);
  if (!device.is_cpu()) return frozen;  // the oneDNN rewrites are for the CPU
  // It rewrites a frozen module's graph in place: a fresh copy on failure.
  torch::jit::Module fast = torch::jit::optimize_for_inference(frozen);
  if (!repair_onednn_clamps(fast.get_method("forward").graph()->block())) {
    return torch::jit::freeze(module);
  }
  return fast;
}

}  // namespace

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
        frozen = inference_copy(module, device);
        frozen_ok = true;
      } catch (const std::exception&) {
        frozen_ok = false;  // an exotic graph: the plain module still works
      }
    });
    return frozen_ok ? frozen : module;
  }
};

Model::Model(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

namespace {

// torch::jit::load, with torchvision's operators loaded first when the
// archive calls them (runtime.h, load_torchvision_ops).
torch::jit::Module load_module(const std::string& path, at::Device device,
                               torch::jit::ExtraFilesMap& extra) {
  for (int attempt = 0;; ++attempt) {
    std::string what;
    bool archive = true;  // the failure is about the archive, not its code
    try {
      return torch::jit::load(path, device, extra);
    } catch (const c10::Error& e) {
      what = e.what_without_backtrace();
    } catch (const std::exception& e) {  // the compiler's ErrorReport: an unknown operator
      what = e.what();
      archive = false;
    }
    // The first line that says something (an ErrorReport starts with a newline).
    const size_t begin = what.find_first_not_of(" \n");
    const std::string line = first_line(begin == std::string::npos ? what : what.substr(begin));
    if (what.find("torchvision::") == std::string::npos) {
      throw Error(ErrorCode::kModel,
                  "cannot load model '" + path +
                      "': " + (archive ? "not a TorchScript archive (" + line + ")" : line));
    }
    std::string tried;
    if (attempt > 0 || !load_torchvision_ops(&tried)) {
      throw Error(ErrorCode::kModel,
                  "cannot load model '" + path + "': it calls torchvision's operators (" + line +
                      "), and torchvision's library did not load (" +
                      (tried.empty() ? std::string("it lacks them") : tried) +
                      "): install python3-torchvision, or set CNNVIZ_TORCHVISION_OPS to its "
                      "_C*.so");
    }
  }
}

// An ONNX model without cnnviz's metadata takes the size its input declares:
// a fixed H x W square is the crop, resized from 8/7 of it (as 224 from 256).
void apply_input_shape(const std::vector<int64_t>& shape, ModelInfo& info) {
  if (shape.size() != 4) return;
  if (shape[1] == 1) info.preprocess.channels = 1;
  if (shape[2] > 0 && shape[2] == shape[3] && shape[2] <= kMaxCrop) {
    info.preprocess.crop = static_cast<int>(shape[2]);
    info.preprocess.resize = static_cast<int>(std::lround(shape[2] * 8.0 / 7.0));
  }
}

}  // namespace

Model Model::load(const std::string& path, at::Device device, const LoadOptions& options) {
  // Only regular files: a FIFO or a device (/dev/zero behind a link) would
  // block or never end.
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) throw Error(ErrorCode::kModel, "model file '" + path + "': not found");
  if (fs::is_directory(st)) {
    throw Error(ErrorCode::kModel, "model file '" + path + "': is a directory");
  }
  if (!fs::is_regular_file(st)) {
    throw Error(ErrorCode::kModel, "model file '" + path + "': not a regular file");
  }
  auto impl = std::make_shared<Impl>();
  torch::jit::ExtraFilesMap extra{{kMetadataFile, ""}};
  std::vector<int64_t> onnx_input;
  std::map<std::string, std::string> structural, aliases;
  if (is_onnx_path(path)) {
    OnnxModel onnx = import_onnx(path, {options.onnx_values, options.input_layout});
    aliases = std::move(onnx.value_layers);
    impl->module = *onnx.module;
    impl->module.to(device);
    extra[kMetadataFile] = onnx.metadata;
    onnx_input = onnx.input_shape;
    structural = std::move(onnx.structural_stages);
  } else {
    if (options.input_layout == InputLayout::kNhwc) {
      throw Error(ErrorCode::kUsage, "model file '" + path +
                                         "': a channels-last input (nhwc) is for ONNX models; "
                                         "a TorchScript model takes NCHW");
    }
    impl->module = load_module(path, device, extra);
  }
  impl->device = device;
  impl->module.eval();
  const std::string& meta = extra[kMetadataFile];
  if (meta.empty()) {
    impl->info.path = path;
    apply_input_shape(onnx_input, impl->info);
  } else {
    impl->info = parse_model_info(meta, path);
  }
  if (impl->info.name.empty()) impl->info.name = fs::path(path).stem().string();
  impl->info.layer_aliases = std::move(aliases);
  if (!structural.empty()) {
    // Layers a metadata names are the original network's modules, which a
    // graph without scopes does not have: its own stages replace them.
    impl->info.feature_layers.clear();
    impl->info.default_layer.clear();
    impl->info.structural_stages = std::move(structural);
  }
  return Model(std::move(impl));
}

ModelInfo read_model_info(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    throw Error(ErrorCode::kModel, "model file '" + path + "': not found or not a regular file");
  }
  ModelInfo info;
  info.path = path;
  if (is_onnx_path(path)) {
    const OnnxModel onnx = inspect_onnx(path);
    if (!onnx.metadata.empty())
      info = parse_model_info(onnx.metadata, path);
    else
      apply_input_shape(onnx.input_shape, info);
    if (info.name.empty()) info.name = fs::path(path).stem().string();
    return info;
  }
  try {
    // The archive's directory only: the weights stay on disk.
    caffe2::serialize::PyTorchStreamReader reader(path);
    const std::string record = std::string("extra/") + kMetadataFile;
    if (reader.hasRecord(record)) {
      // (LibTorch 1.13's reader has no size query: torch::jit::load reads
      // extra files whole too; parse_model_info checks the size.)
      auto [data, n] = reader.getRecord(record);
      info = parse_model_info(std::string(static_cast<const char*>(data.get()), n), path);
    }
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kModel, "cannot read model '" + path + "': not a TorchScript archive (" +
                                       first_line(e.what_without_backtrace()) + ")");
  }
  if (info.name.empty()) info.name = fs::path(path).stem().string();
  return info;
}

const ModelInfo& Model::info() const { return impl_->info; }

ModelInfo& Model::mutable_info() { return impl_->info; }

at::Device Model::device() const { return impl_->device; }

torch::jit::Module& Model::module() const { return impl_->module; }

at::Tensor Model::logits(const at::Tensor& batch) const {
  if (impl_->info.task == Task::kDetect) refuse_detector(impl_->info.path);
  at::Tensor result = logits_of(forward(batch), impl_->info.path).to(at::kCPU, at::kFloat);
  check_output_classes(impl_->info, result.size(1));
  return result;
}

at::Tensor Model::raw_predictions(const at::Tensor& batch, const at::Tensor& proposals) const {
  return raw_predictions_of(forward(batch, proposals), impl_->info.path).to(at::kCPU, at::kFloat);
}

at::Tensor Model::pixel_logits(const at::Tensor& batch) const {
  if (impl_->info.task == Task::kDetect) refuse_detector(impl_->info.path);
  at::Tensor result = pixel_logits_of(forward(batch), impl_->info.path).to(at::kCPU, at::kFloat);
  check_output_classes(impl_->info, result.size(1));
  return result;
}

c10::IValue Model::forward(const at::Tensor& batch, const at::Tensor& proposals) const {
  c10::InferenceMode no_autograd;
  simulate_out_of_memory(batch.size(0));
  c10::IValue out;
  try {
    std::vector<c10::IValue> inputs{batch.to(impl_->device)};
    if (impl_->info.proposals) {
      inputs.emplace_back(proposals.defined() ? c10::IValue(proposals.to(impl_->device))
                                              : c10::IValue());
    }
    out = impl_->inference_module().forward(std::move(inputs));
  } catch (const c10::OutOfMemoryError& e) {
    throw OutOfMemory("model '" + impl_->info.path + "': out of memory on " + impl_->device.str() +
                      " for a batch of " + std::to_string(batch.size(0)));
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kRuntime, "model '" + impl_->info.path + "': forward pass failed (" +
                                         first_line(e.what_without_backtrace()) + ")");
  } catch (const std::exception& e) {  // torch::jit::JITException and friends
    throw Error(ErrorCode::kRuntime, "model '" + impl_->info.path + "': forward pass failed (" +
                                         torch_error_summary(e.what()) + ")");
  }
  return out;
}

}  // namespace cnnviz
