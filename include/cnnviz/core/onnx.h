// ONNX models as TorchScript modules.
//
// An ONNX model (opsets 7-17) is parsed with ONNX's own protobuf classes and
// checker, and rebuilt as a scripted module: its weights become parameters,
// each node becomes the ATen operations with the same semantics (the table
// in src/core/onnx_ops.cpp, listed in docs/models.md), and the module scopes
// that exporters keep in node names ("/features/features.3/Concat") become
// submodules, so that the engine finds stages, ReLUs, convolutions and
// linear layers in it as in any TorchScript model. See docs/models.md.
#ifndef CNNVIZ_CORE_ONNX_H_
#define CNNVIZ_CORE_ONNX_H_

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cnnviz/core/model.h"

namespace torch::jit {
struct Module;
}

namespace cnnviz {

// The largest ONNX file read (its weights inline), and the most external
// data in all; the most nodes in a graph.
constexpr size_t kMaxOnnxBytes = size_t{2} << 30;
constexpr size_t kMaxOnnxExternalBytes = size_t{16} << 30;
constexpr size_t kMaxOnnxNodes = 200000;
// The opsets of the default domain that the importer knows.
constexpr int kMinOnnxOpset = 7;
constexpr int kMaxOnnxOpset = 17;
// The metadata_props key whose value is cnnviz.json's text (docs/models.md).
constexpr const char* kOnnxMetadataKey = "cnnviz.json";

// Whether `path` names an ONNX model (its extension is ".onnx", any case).
bool is_onnx_path(const std::string& path);

struct OnnxModel {
  std::shared_ptr<torch::jit::Module> module;  // in eval mode, on the CPU
  std::string metadata;                        // kOnnxMetadataKey's value, or ""
  std::vector<std::string> inputs, outputs;    // the graph's names
  int opset = 0;
  // The first input's shape (-1: dynamic), as NCHW; empty when unknown. An
  // NHWC image input (nhwc) is permuted inside the module, so that the
  // module takes NCHW like every other.
  std::vector<int64_t> input_shape;
  bool nhwc = false;
  // For a graph whose node names carry no module scopes, the stages found
  // from its structure (submodules "stage1", "stage2", ...), each with how
  // it was found ("residual merge (Add)", "last at 56 x 56 (then 28 x 28)").
  std::map<std::string, std::string> structural_stages;
  // The values asked for as layers (import_onnx's `values`) -> their module
  // paths.
  std::map<std::string, std::string> value_layers;
};

// What import_onnx takes besides the file.
struct OnnxImportOptions {
  // Each of these value names that a node computes becomes a module of its
  // own, so that it can be a layer (OnnxModel::value_layers).
  std::vector<std::string> values;
  // The first input's layout; kFromShape: NHWC when its shape is
  // [N, H, W, 1 or 3] with H and W at least 8 or dynamic.
  InputLayout layout = InputLayout::kFromShape;
};

// Reads and imports the ONNX model at `path`. Throws Error(kModel), one line
// naming the file and the problem, for a file that does not parse, fails
// ONNX's checker, has an opset outside [kMinOnnxOpset, kMaxOnnxOpset], an
// initializer whose data does not match its shape, external data outside the
// model's folder, a cycle, or exceeds the limits above; Error(kUnsupported)
// naming the node for an operator, attribute value or data type the importer
// does not support; Error(kUsage) for InputLayout::kNhwc on an input whose
// declared shape is not 4-D.
OnnxModel import_onnx(const std::string& path, const OnnxImportOptions& options = {});

// The same for a model already in memory (`bytes`); `path` names it in
// errors and is the folder external data is looked up in.
OnnxModel import_onnx_bytes(const std::string& bytes, const std::string& path);

// What the model at `path` declares (metadata, inputs, outputs, opset),
// read without checking or importing its graph (module stays null); throws
// as import_onnx for a file that does not parse.
OnnxModel inspect_onnx(const std::string& path);

// The operators of the default domain that the importer supports, sorted.
const std::vector<std::string>& onnx_supported_ops();

// A serialized onnx.TensorProto (a backend test's input_0.pb) as a tensor.
// Throws Error(kModel) naming `path` when it does not parse or its data does
// not match its shape.
at::Tensor read_onnx_tensor(const std::string& path);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_ONNX_H_
