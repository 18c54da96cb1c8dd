// The ONNX importer's operator table: how each ONNX node becomes TorchScript
// (src/core/onnx_import.cpp builds the modules around it).
#ifndef CNNVIZ_CORE_ONNX_OPS_H_
#define CNNVIZ_CORE_ONNX_OPS_H_

#include <ATen/core/Tensor.h>
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace cnnviz::onnx_import {

// One node, as its operator's emitter sees it: the TorchScript expressions
// of its inputs, what is known of them, and the lines it writes.
struct NodeCode {
  const onnx::NodeProto* node = nullptr;
  int opset = 0;
  std::vector<std::string> in_expr;            // "" where an input is absent
  std::vector<const at::Tensor*> in_const;     // the value of a constant input
  std::vector<std::vector<int64_t>> in_shape;  // from shape inference; -1: unknown dim
  std::vector<bool> in_shape_known;
  std::vector<int> in_type;           // ONNX element type; 0: unknown
  std::vector<std::string> out_name;  // "" where an output is unused
  std::string tmp;                    // a name free for a temporary
  std::vector<std::string> lines;     // written
  std::set<std::string> helpers;      // helper methods the lines call

  size_t inputs() const { return in_expr.size(); }
  bool has(size_t i) const { return i < in_expr.size() && !in_expr[i].empty(); }
  const std::string& in(size_t i) const;  // throws for a missing required input
  // The rank of input i, or -1 when neither a constant nor shape inference
  // says.
  int rank(size_t i) const;
  // Whether input i is known to be floating point.
  bool is_float(size_t i) const;
  // A constant integer input's values (nullopt when it is not constant).
  std::optional<std::vector<int64_t>> const_ints(size_t i) const;
  // A List[int] expression of input i: a literal when constant.
  std::string ints(size_t i);
  // A float expression of a scalar input: a literal when constant.
  std::string scalar(size_t i);

  const onnx::AttributeProto* attr(const std::string& name) const;
  int64_t attr_int(const std::string& name, int64_t fallback) const;
  double attr_float(const std::string& name, double fallback) const;
  std::string attr_string(const std::string& name, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& name) const;

  // Writes `out_name[k] = expr` (nothing when the output is unused).
  void set(const std::string& expr, size_t k = 0);
  void line(const std::string& text) { lines.push_back(text); }
  // A helper method's call ("self._name("), recorded as used.
  std::string helper(const std::string& name);
  // Throws Error(kUnsupported) naming the node and `what`.
  [[noreturn]] void unsupported(const std::string& what) const;
};

using Emitter = void (*)(NodeCode&);

// The emitter of each supported operator of the default domain.
const std::map<std::string, Emitter>& emitters();

// The TorchScript source of helper method `name` (a "def" with self).
const std::string& helper_source(const std::string& name);

// Literals.
std::string float_literal(double v);
std::string ints_literal(const std::vector<int64_t>& v);
// The ScalarType number TorchScript takes as a dtype, for an ONNX
// TensorProto data type; -1 when LibTorch has none.
int scalar_type_of(int onnx_type);

}  // namespace cnnviz::onnx_import

#endif  // CNNVIZ_CORE_ONNX_OPS_H_
