// Loading a TorchScript classifier and the metadata that travels with it.
//
// A model is a TorchScript archive (torch.jit.save) whose extra file
// "cnnviz.json" describes it: architecture, ImageNet labels, preprocessing and
// feature layers (written by scripts/export_models.py; described in docs/models.md).
// A TorchScript file without that extra file still loads, with ImageNet
// preprocessing defaults and labels "class N"; ModelInfo::has_metadata tells.
#ifndef CNNVIZ_CORE_MODEL_H_
#define CNNVIZ_CORE_MODEL_H_

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace torch::jit {
struct Module;
}
namespace c10 {
struct IValue;
}

namespace cnnviz {

// How an image becomes the network's input: the shorter side is resized to
// `resize` (bilinear, antialiased, as PIL/torchvision), the centre
// `crop` x `crop` square is kept (crop 0: no crop, the whole resized image,
// for models that take any input size), and each channel c becomes
// (v / 255 - mean[c]) / std[c]. A 1-channel model gets the image's luma,
// L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 (ITU-R 601 weights 0.299,
// 0.587, 0.114 in PIL's fixed point: PIL's convert("L"), torchvision's
// Grayscale), before resizing; only mean[0] and std[0] are used.
struct Preprocessing {
  int resize = 224;
  int crop = 224;  // 0: none
  int channels = 3;  // 3: RGB; 1: grey
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
  // A detector's letterbox (io/preprocess.h): the longer side resized to
  // `resize`, centred on a resize x resize grey canvas; no crop.
  bool letterbox = false;
  // A torchvision detector's resize (0: none): the scale is the smaller of
  // resize / shorter side and max_size / longer side, and each side becomes
  // floor(side * scale), with torchvision's GeneralizedRCNNTransform's
  // float32 arithmetic (io/preprocess.cpp); no crop.
  int max_size = 0;

  // The side of the input a square image becomes: the crop, or the resize
  // when there is no crop (what describing layers and synthesizing images use).
  int square_side() const { return crop > 0 ? crop : resize; }
};

enum class WeightsKind { kPretrained, kFile, kRandom, kUnknown };

// What the model computes: class logits per image [N,K] (classify), class
// scores per pixel [N,K,H,W] (segment), or raw dense box predictions in a
// DetectLayout (detect), as metadata "task" says.
enum class Task { kClassify, kSegment, kDetect };

// "classify", "segment" or "detect", as in cnnviz.json.
const char* task_name(Task task);

// How a detector's raw output lays out its predictions for A anchors and C
// classes (core/detections.h decodes them):
//   kYolov8  [N, 4+C, A]: cx, cy, w, h in input pixels, then C class scores
//   kYolov5  [N, A, 5+C]: cx, cy, w, h, objectness, then C class scores
enum class DetectLayout { kNone, kYolov8, kYolov5 };

// "yolov8", "yolov5" (kNone: ""), as in cnnviz.json and --layout.
const char* layout_name(DetectLayout layout);
// Throws Error(kUsage) naming `subject` and the choices for another name.
DetectLayout parse_layout(const std::string& name, const std::string& subject);

// How a model's image input is laid out: NCHW, NHWC (an ONNX model from
// Keras; permuted inside the model, which then takes NCHW like any other),
// or found from an ONNX model's input shape (docs/models.md).
enum class InputLayout { kFromShape, kNchw, kNhwc };

// "nchw", "nhwc" (kFromShape: ""), as --layout takes them.
const char* input_layout_name(InputLayout layout);
// Throws Error(kUsage) naming `subject` and the choices for another name.
InputLayout parse_input_layout(const std::string& name, const std::string& subject);

// What Model::load takes besides the file.
struct LoadOptions {
  // For an ONNX model: each of these that names a value of its graph becomes
  // a layer (ModelInfo::layer_aliases); other names are left alone.
  std::vector<std::string> onnx_values;
  // kNhwc is for ONNX models only: a TorchScript model takes NCHW.
  InputLayout input_layout = InputLayout::kFromShape;
};

// "pretrained", "file", "random" or "unknown", as in cnnviz.json and manifests.
const char* weights_kind_name(WeightsKind kind);

struct ModelInfo {
  std::string path;  // the file it was loaded from
  std::string name;  // metadata "name", else the file's stem
  std::string arch;  // e.g. "vgg16"; empty when unknown
  Task task = Task::kClassify;
  DetectLayout layout = DetectLayout::kNone;  // a detector's (task kDetect)
  // A detector's decoding defaults (metadata "nms_iou", "multi_label"): its
  // own non-maximum suppression IoU (0: cnnviz's), and whether every class
  // of an anchor above the threshold is a candidate (torchvision's one-stage
  // detectors) rather than its best class only (YOLO's).
  double nms_iou = 0;
  bool multi_label = false;
  // A two-stage detector (metadata "proposals"): forward(x, proposals=None)
  // returns (predictions, proposals), scoring the given proposals, or its
  // own from x's first image; every pass of an image scores the first's.
  bool proposals = false;
  WeightsKind weights_kind = WeightsKind::kUnknown;
  std::string weights_source;       // "IMAGENET1K_V1", a .pth path, "seed 0"
  std::vector<std::string> labels;  // one per class; empty without metadata
  int64_t num_classes = 0;          // the metadata's num_classes; 0 when not given
  Preprocessing preprocess;
  std::vector<std::string> feature_layers;  // module paths, forward order
  std::string default_layer;                // default layer of every layer method
  // An ONNX model without module scopes in its node names: its stages, found
  // from the graph's structure (module path -> how; OnnxModel).
  std::map<std::string, std::string> structural_stages;
  // An ONNX model's values loaded as layers (Model::load's `onnx_values`):
  // value name -> module path. --layer takes either.
  std::map<std::string, std::string> layer_aliases;
  bool has_metadata = false;

  // The label of class `index`, or "class <index>" when there is none.
  std::string label(int64_t index) const;
  // The module path of layer `name`: its layer_aliases entry (an ONNX value
  // name), else `name` itself.
  std::string layer_path(const std::string& name) const;
  // A segmenter's background class: the first labelled "background" or
  // "__background__" (any case); -1 when none is.
  int64_t background_class() const;
};

// Whether `label` names a segmenter's background ("background",
// "__background__", any case).
bool is_background_label(const std::string& label);

// Throws Error(kModel) when a model whose forward pass gives `outputs`
// classes has another number of labels, or another num_classes in its
// metadata. Every forward pass checks it (Model::logits, Engine::run).
void check_output_classes(const ModelInfo& info, int64_t outputs);

// Parses the JSON text of "cnnviz.json" (at most kMaxMetadataBytes, nested
// at most kMaxJsonDepth deep). Every field is checked for its type and range
// (limits.h: crop, resize, classes, string lengths); throws Error(kModel)
// naming `path` and the field otherwise.
ModelInfo parse_model_info(const std::string& json_text, const std::string& path);

// The metadata of the model file at `path` (ModelInfo::has_metadata false
// when it has none), read from the archive's directory without loading the
// module or its weights. Throws Error(kModel) for a file that is not a
// TorchScript archive or whose metadata is invalid.
ModelInfo read_model_info(const std::string& path);

// A loaded classifier. Copies share the same underlying module.
class Model {
 public:
  // Loads `path` onto `device` in eval mode. Throws Error(kModel) with a
  // one-line message when the file is missing, is a directory, is not a
  // TorchScript archive, or carries invalid metadata; Error(kUsage) for
  // InputLayout::kNhwc with a TorchScript model or an input that is not 4-D.
  static Model load(const std::string& path, at::Device device = at::Device(at::kCPU),
                    const LoadOptions& options = {});

  const ModelInfo& info() const;
  at::Device device() const;
  // For overrides from the command line (labels, preprocessing); call it
  // before the first Engine or logits() call.
  ModelInfo& mutable_info();

  // batch: [N,3,H,W] float32, normalized as info().preprocess says, on any
  // device. Returns [N,num_classes] float32 logits (pre-softmax) on the CPU,
  // computed on the model's device without autograd. Throws OutOfMemory when
  // the device runs out of memory. Throws Error(kRuntime) when the network rejects the input or
  // returns something other than a 2-D tensor; Error(kModel) when the number
  // of classes differs from the number of labels.
  at::Tensor logits(const at::Tensor& batch) const;

  // For a segmenter: [N,num_classes,H,W] float32 class scores per pixel on
  // the CPU (pixel_logits_of in src/core/logits.h), computed as logits() is,
  // with the same errors.
  at::Tensor pixel_logits(const at::Tensor& batch) const;

  // For a detector: its raw predictions (the output tensor, or the first
  // element of a tuple or list, as YOLO exports return), float32 on the CPU,
  // computed as logits() is; core/detections.h decodes them. Throws
  // Error(kModel) when the output holds no tensor. A two-stage detector
  // (ModelInfo::proposals) scores `proposals` when given (every row of
  // `batch` a copy of one image), else its own from the batch's first image.
  at::Tensor raw_predictions(const at::Tensor& batch,
                             const at::Tensor& proposals = at::Tensor()) const;

  // The underlying module, for graph capture by the visualization methods.
  torch::jit::Module& module() const;

 private:
  // The module's output for `batch` (and a two-stage detector's `proposals`,
  // None when undefined), without autograd (OutOfMemory and Error(kRuntime)
  // as logits() says).
  c10::IValue forward(const at::Tensor& batch, const at::Tensor& proposals = at::Tensor()) const;
  struct Impl;
  explicit Model(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_MODEL_H_
