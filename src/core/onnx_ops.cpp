// The ONNX operators the importer supports, each as the TorchScript that
// computes it with ONNX's semantics (https://onnx.ai/onnx/operators/, opsets
// 9-17). Operations the engine instruments are written as the ATen
// operators it looks for: convolutions as aten::conv2d, Gemm as aten::linear,
// BatchNormalization as aten::batch_norm, Clip(0, 6) as ReLU6's hardtanh.
#include "onnx_ops.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "cnnviz/core/error.h"

namespace cnnviz::onnx_import {

namespace {

using Map = std::map<std::string, Emitter>;

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? sep : "") + parts[i];
  return s;
}

std::string bool_literal(bool b) { return b ? "True" : "False"; }

// The spatial dimensions of a convolution or pooling node.
size_t spatial_dims(const NodeCode& e) {
  const std::vector<int64_t> kernel = e.attr_ints("kernel_shape");
  if (!kernel.empty()) return kernel.size();
  for (size_t i : {size_t{1}, size_t{0}}) {
    if (e.has(i) && e.rank(i) > 2) return static_cast<size_t>(e.rank(i) - 2);
  }
  e.unsupported("a convolution or pooling of unknown rank");
}

std::vector<int64_t> ints_or(const NodeCode& e, const std::string& name, size_t n, int64_t v) {
  std::vector<int64_t> got = e.attr_ints(name);
  if (got.empty()) got.assign(n, v);
  if (got.size() != n) e.unsupported("attribute " + name + " of the wrong length");
  return got;
}

// ONNX pads [begin..., end...] for `n` spatial dims, with auto_pad resolved
// against the input's known size (`kernel` dilated).
std::vector<int64_t> resolve_pads(const NodeCode& e, size_t n, const std::vector<int64_t>& kernel,
                                  const std::vector<int64_t>& strides,
                                  const std::vector<int64_t>& dilations) {
  const std::string mode = e.attr_string("auto_pad", "NOTSET");
  if (mode == "NOTSET") return ints_or(e, "pads", 2 * n, 0);
  if (mode == "VALID") return std::vector<int64_t>(2 * n, 0);
  if (mode != "SAME_UPPER" && mode != "SAME_LOWER") e.unsupported("auto_pad " + mode);
  std::vector<int64_t> pads(2 * n, 0);
  const std::vector<int64_t>& shape = e.in_shape[0];
  for (size_t a = 0; a < n; ++a) {
    const int64_t in = e.in_shape_known[0] && shape.size() == n + 2 ? shape[a + 2] : -1;
    const int64_t span = (kernel[a] - 1) * dilations[a] + 1;
    int64_t total;
    if (in >= 0) {
      const int64_t out = (in + strides[a] - 1) / strides[a];
      total = std::max<int64_t>((out - 1) * strides[a] + span - in, 0);
    } else if (strides[a] == 1) {
      total = span - 1;
    } else {
      e.unsupported("auto_pad " + mode + " with a stride over an input of unknown size");
    }
    pads[a] = mode == "SAME_UPPER" ? total / 2 : total - total / 2;
    pads[a + n] = total - pads[a];
  }
  return pads;
}

bool symmetric(const std::vector<int64_t>& pads) {
  const size_t n = pads.size() / 2;
  for (size_t a = 0; a < n; ++a) {
    if (pads[a] != pads[a + n]) return false;
  }
  return true;
}

// ONNX's pads as constant_pad_nd's (the last dimension first).
std::vector<int64_t> torch_pads(const std::vector<int64_t>& pads) {
  const size_t n = pads.size() / 2;
  std::vector<int64_t> out;
  for (size_t k = n; k-- > 0;) {
    out.push_back(pads[k]);
    out.push_back(pads[k + n]);
  }
  return out;
}

void emit_conv(NodeCode& e) {
  const size_t n = spatial_dims(e);
  if (n < 1 || n > 3) e.unsupported(std::to_string(n) + "-D convolution");
  std::vector<int64_t> kernel = e.attr_ints("kernel_shape");
  if (kernel.empty() && e.in_const[1]) {
    for (size_t a = 0; a < n; ++a)
      kernel.push_back(e.in_const[1]->size(static_cast<int64_t>(a) + 2));
  }
  const std::vector<int64_t> strides = ints_or(e, "strides", n, 1);
  const std::vector<int64_t> dilations = ints_or(e, "dilations", n, 1);
  if (kernel.size() != n && e.attr_string("auto_pad", "NOTSET").rfind("SAME", 0) == 0) {
    e.unsupported("auto_pad SAME with a kernel of unknown size");
  }
  std::vector<int64_t> pads = resolve_pads(e, n, kernel, strides, dilations);
  std::string x = e.in(0);
  if (!symmetric(pads)) {
    x = "torch.constant_pad_nd(" + x + ", " + ints_literal(torch_pads(pads)) + ", 0.0)";
    pads.assign(2 * n, 0);
  }
  pads.resize(n);
  e.set("torch.conv" + std::to_string(n) + "d(" + x + ", " + e.in(1) + ", " +
        (e.has(2) ? e.in(2) : "None") + ", " + ints_literal(strides) + ", " + ints_literal(pads) +
        ", " + ints_literal(dilations) + ", " + std::to_string(e.attr_int("group", 1)) + ")");
}

void emit_conv_transpose(NodeCode& e) {
  const size_t n = spatial_dims(e);
  if (n < 1 || n > 3) e.unsupported(std::to_string(n) + "-D transposed convolution");
  if (e.attr("output_shape")) e.unsupported("attribute output_shape");
  if (e.attr_string("auto_pad", "NOTSET") != "NOTSET") e.unsupported("auto_pad");
  std::vector<int64_t> pads = ints_or(e, "pads", 2 * n, 0);
  if (!symmetric(pads)) e.unsupported("asymmetric pads");
  pads.resize(n);
  e.set("torch.conv_transpose" + std::to_string(n) + "d(" + e.in(0) + ", " + e.in(1) + ", " +
        (e.has(2) ? e.in(2) : "None") + ", " + ints_literal(ints_or(e, "strides", n, 1)) + ", " +
        ints_literal(pads) + ", " + ints_literal(ints_or(e, "output_padding", n, 0)) + ", " +
        std::to_string(e.attr_int("group", 1)) + ", " +
        ints_literal(ints_or(e, "dilations", n, 1)) + ")");
}

// MaxPool and AveragePool: padding PyTorch cannot express (asymmetric, or
// more than half the kernel) is applied first, with `fill`.
struct Pool {
  size_t n;
  std::vector<int64_t> kernel, strides, dilations, pads;
  std::string x;
  bool prepadded = false;
};

Pool pool_of(NodeCode& e, const std::string& fill) {
  Pool p;
  p.n = spatial_dims(e);
  if (p.n < 1 || p.n > 3) e.unsupported(std::to_string(p.n) + "-D pooling");
  p.kernel = ints_or(e, "kernel_shape", p.n, 1);
  p.strides = ints_or(e, "strides", p.n, 1);
  p.dilations = ints_or(e, "dilations", p.n, 1);
  p.pads = resolve_pads(e, p.n, p.kernel, p.strides, p.dilations);
  p.x = e.in(0);
  bool direct = symmetric(p.pads);
  for (size_t a = 0; a < p.n; ++a) direct = direct && 2 * p.pads[a] <= p.kernel[a];
  if (!direct) {
    p.x = "torch.constant_pad_nd(" + p.x + ", " + ints_literal(torch_pads(p.pads)) + ", " + fill +
          ")";
    p.pads.assign(2 * p.n, 0);
    p.prepadded = true;
  }
  p.pads.resize(p.n);
  return p;
}

void emit_max_pool(NodeCode& e) {
  if (e.out_name.size() > 1 && !e.out_name[1].empty()) e.unsupported("the Indices output");
  const Pool p = pool_of(e, "float('-inf')");
  const std::string args = ", " + ints_literal(p.kernel) + ", " + ints_literal(p.strides) + ", " +
                           ints_literal(p.pads) + ", " + ints_literal(p.dilations) + ", " +
                           bool_literal(e.attr_int("ceil_mode", 0) != 0) + ")";
  const std::string f = "torch.max_pool" + std::to_string(p.n) + "d(";
  if (e.is_float(0)) {
    e.set(f + p.x + args);
    return;
  }
  // ATen pools floating-point tensors only; integers go through float64.
  e.set(f + p.x + args + " if " + e.in(0) + ".is_floating_point() else " + f + p.x +
        ".to(dtype=7)" + args + ".to(dtype=" + e.in(0) + ".dtype)");
}

void emit_average_pool(NodeCode& e) {
  Pool p = pool_of(e, "0.0");
  for (int64_t d : p.dilations) {
    if (d != 1) e.unsupported("dilations");
  }
  const std::string f = "torch.avg_pool" + std::to_string(p.n) + "d(";
  const std::string args = ", " + ints_literal(p.kernel) + ", " + ints_literal(p.strides) + ", " +
                           ints_literal(p.pads) + ", " +
                           bool_literal(e.attr_int("ceil_mode", 0) != 0) + ", ";
  const bool include = e.attr_int("count_include_pad", 0) != 0;
  if (!p.prepadded || include) {
    e.set(f + p.x + args + bool_literal(include || p.prepadded) + ")");
    return;
  }
  // Pads outside the window count: divide by the pooled count of real cells.
  const std::string ones =
      "torch.constant_pad_nd(torch.ones_like(" + e.in(0) + "), " +
      ints_literal(torch_pads(resolve_pads(e, p.n, p.kernel, p.strides, p.dilations))) + ", 0.0)";
  e.set(f + p.x + args + "True) / " + f + ones + args + "True)");
}

void emit_global_pool(NodeCode& e, const std::string& reduce) {
  if (reduce == "mean" && e.rank(0) == 4) {
    e.set("torch.adaptive_avg_pool2d(" + e.in(0) + ", [1, 1])");
    return;
  }
  e.set("torch." + reduce + "(" + e.in(0) + ", " + e.helper("spatial") + e.in(0) + "), True)");
}

void emit_batch_norm(NodeCode& e) {
  for (size_t k = 1; k < e.out_name.size(); ++k) {
    if (!e.out_name[k].empty()) e.unsupported("training-mode outputs");
  }
  if (e.attr_int("training_mode", 0) != 0) e.unsupported("training_mode");
  e.set("torch.batch_norm(" + e.in(0) + ", " + e.in(1) + ", " + e.in(2) + ", " + e.in(3) + ", " +
        e.in(4) + ", False, 0.1, " + float_literal(e.attr_float("epsilon", 1e-5)) + ", True)");
}

void emit_gemm(NodeCode& e) {
  const double alpha = e.attr_float("alpha", 1), beta = e.attr_float("beta", 1);
  const bool ta = e.attr_int("transA", 0) != 0, tb = e.attr_int("transB", 0) != 0;
  const bool bias_vector = !e.has(2) || e.rank(2) == 1;
  if (!ta && tb && alpha == 1 && beta == 1 && bias_vector) {
    e.set("torch.linear(" + e.in(0) + ", " + e.in(1) + ", " + (e.has(2) ? e.in(2) : "None") + ")");
    return;
  }
  std::string prod =
      "torch.matmul(" + e.in(0) + (ta ? ".t()" : "") + ", " + e.in(1) + (tb ? ".t()" : "") + ")";
  if (alpha != 1) prod = float_literal(alpha) + " * " + prod;
  if (e.has(2)) prod += " + " + (beta != 1 ? float_literal(beta) + " * " : "") + e.in(2);
  e.set(prod);
}

// Elementwise operators of one input: ONNX name, TorchScript of "X".
void add_unary(Map& m) {
  static const std::map<std::string, std::string> table = {
      {"Abs", "torch.abs(X)"},
      {"Acos", "torch.acos(X)"},
      {"Acosh", "torch.acosh(X)"},
      {"Asin", "torch.asin(X)"},
      {"Asinh", "torch.asinh(X)"},
      {"Atan", "torch.atan(X)"},
      {"Atanh", "torch.atanh(X)"},
      {"Ceil", "torch.ceil(X)"},
      {"Cos", "torch.cos(X)"},
      {"Cosh", "torch.cosh(X)"},
      {"Erf", "torch.erf(X)"},
      {"Exp", "torch.exp(X)"},
      {"Floor", "torch.floor(X)"},
      {"HardSwish", "torch.hardswish(X)"},
      {"Identity", "X"},
      {"IsNaN", "torch.isnan(X)"},
      {"Log", "torch.log(X)"},
      {"Neg", "torch.neg(X)"},
      {"Not", "torch.logical_not(X)"},
      {"Reciprocal", "torch.reciprocal(X)"},
      {"Relu", "torch.relu(X)"},
      {"Round", "torch.round(X)"},
      {"Sigmoid", "torch.sigmoid(X)"},
      {"Sign", "torch.sign(X)"},
      {"Sin", "torch.sin(X)"},
      {"Sinh", "torch.sinh(X)"},
      {"Softplus", "torch.log(torch.exp(X) + 1.0)"},
      {"Softsign", "X / (torch.abs(X) + 1.0)"},
      {"Sqrt", "torch.sqrt(X)"},
      {"Tan", "torch.tan(X)"},
      {"Tanh", "torch.tanh(X)"},
  };
  for (const auto& [name, code] : table) {
    (void)code;
    m[name] = [](NodeCode& e) {
      std::string s = table.at(e.node->op_type());
      for (size_t at; (at = s.find('X')) != std::string::npos;) s.replace(at, 1, e.in(0));
      e.set(s);
    };
  }
}

// Elementwise operators of two inputs, broadcast as NumPy (as ATen does).
void add_binary(Map& m) {
  static const std::map<std::string, std::string> table = {
      {"Add", "torch.add(A, B)"},
      {"Sub", "torch.sub(A, B)"},
      {"Mul", "torch.mul(A, B)"},
      {"Div",
       "torch.div(A, B) if A.is_floating_point() else torch.div(A, B, rounding_mode='trunc')"},
      {"Pow", "torch.pow(A, B).to(A.dtype)"},
      {"Equal", "torch.eq(A, B)"},
      {"Greater", "torch.gt(A, B)"},
      {"GreaterOrEqual", "torch.ge(A, B)"},
      {"Less", "torch.lt(A, B)"},
      {"LessOrEqual", "torch.le(A, B)"},
      {"And", "torch.logical_and(A, B)"},
      {"Or", "torch.logical_or(A, B)"},
      {"Xor", "torch.logical_xor(A, B)"},
      {"MatMul", "torch.matmul(A, B)"},
      {"PRelu", "torch.where(A < 0, A * B, A)"},
  };
  for (const auto& [name, code] : table) {
    (void)code;
    m[name] = [](NodeCode& e) {
      std::string s = table.at(e.node->op_type());
      for (size_t at; (at = s.find_first_of("AB")) != std::string::npos;) {
        s.replace(at, 1, e.in(s[at] == 'A' ? 0 : 1));
      }
      e.set(s);
    };
  }
  m["Mod"] = [](NodeCode& e) {
    e.set(std::string(e.attr_int("fmod", 0) ? "torch.fmod(" : "torch.remainder(") + e.in(0) + ", " +
          e.in(1) + ")");
  };
}

// Sum, Mean, Max, Min over any number of inputs.
void add_variadic(Map& m) {
  m["Sum"] = m["Mean"] = m["Max"] = m["Min"] = [](NodeCode& e) {
    const std::string op = e.node->op_type();
    const std::string f = op == "Max"   ? "torch.maximum("
                          : op == "Min" ? "torch.minimum("
                                        : "torch.add(";
    std::string acc = e.in(0);
    for (size_t i = 1; i < e.inputs(); ++i) acc = f + acc + ", " + e.in(i) + ")";
    if (op == "Mean") acc = "torch.div(" + acc + ", " + std::to_string(e.inputs()) + ".0)";
    e.set(acc);
  };
}

void add_activations(Map& m) {
  m["LeakyRelu"] = [](NodeCode& e) {
    e.set("torch.leaky_relu(" + e.in(0) + ", " + float_literal(e.attr_float("alpha", 0.01)) + ")");
  };
  m["Elu"] = [](NodeCode& e) {
    const std::string a = float_literal(e.attr_float("alpha", 1));
    e.set("torch.where(" + e.in(0) + " > 0, " + e.in(0) + ", " + a + " * (torch.exp(" + e.in(0) +
          ") - 1.0))");
  };
  m["Celu"] = [](NodeCode& e) {
    const std::string a = float_literal(e.attr_float("alpha", 1));
    e.set("torch.relu(" + e.in(0) + ") + torch.clamp(" + a + " * (torch.exp(" + e.in(0) + " / " +
          a + ") - 1.0), None, 0.0)");
  };
  m["Selu"] = [](NodeCode& e) {
    const std::string a = float_literal(e.attr_float("alpha", 1.67326319217681884765625));
    const std::string g = float_literal(e.attr_float("gamma", 1.05070102214813232421875));
    e.set(g + " * torch.where(" + e.in(0) + " > 0, " + e.in(0) + ", " + a + " * (torch.exp(" +
          e.in(0) + ") - 1.0))");
  };
  m["ThresholdedRelu"] = [](NodeCode& e) {
    e.set("torch.where(" + e.in(0) + " > " + float_literal(e.attr_float("alpha", 1)) + ", " +
          e.in(0) + ", torch.zeros_like(" + e.in(0) + "))");
  };
  m["HardSigmoid"] = [](NodeCode& e) {
    const double a = e.attr_float("alpha", 0.2), b = e.attr_float("beta", 0.5);
    e.set("torch.clamp(" + float_literal(a) + " * " + e.in(0) + " + " + float_literal(b) +
          ", 0.0, 1.0)");
  };
  m["Clip"] = [](NodeCode& e) {
    std::string lo = "None", hi = "None";
    std::optional<double> lo_v, hi_v;
    if (e.opset < 11) {
      if (e.attr("min")) lo_v = e.attr_float("min", 0);
      if (e.attr("max")) hi_v = e.attr_float("max", 0);
      if (lo_v) lo = float_literal(*lo_v);
      if (hi_v) hi = float_literal(*hi_v);
    } else {
      for (size_t i : {size_t{1}, size_t{2}}) {
        if (!e.has(i)) continue;
        std::string& s = i == 1 ? lo : hi;
        if (e.in_const[i] && e.in_const[i]->numel() == 1 && e.in_const[i]->is_floating_point()) {
          (i == 1 ? lo_v : hi_v) = e.in_const[i]->item<double>();
          s = float_literal(*(i == 1 ? lo_v : hi_v));
        } else {
          s = e.in(i);
        }
      }
    }
    if (lo_v && hi_v && *lo_v == 0 && *hi_v == 6) {  // ReLU6: the engine guides it
      e.set("torch.hardtanh(" + e.in(0) + ", 0.0, 6.0)");
    } else if (lo_v && *lo_v == 0 && hi == "None") {
      e.set("torch.relu(" + e.in(0) + ")");
    } else if (lo == "None" && hi == "None") {
      e.set(e.in(0));
    } else {
      e.set("torch.clamp(" + e.in(0) + ", " + lo + ", " + hi + ")");
    }
  };
}

void emit_softmax(NodeCode& e, bool log) {
  const std::string f = log ? "torch.log_softmax(" : "torch.softmax(";
  if (e.opset >= 13) {
    e.set(f + e.in(0) + ", " + std::to_string(e.attr_int("axis", -1)) + ")");
  } else {
    e.set(e.helper("softmax_flat") + e.in(0) + ", " + std::to_string(e.attr_int("axis", 1)) + ", " +
          bool_literal(log) + ")");
  }
}

// The axes of a reduction: the attribute, or (ReduceSum from opset 13) the
// second input; empty: all, unless noop_with_empty_axes.
void emit_reduce(NodeCode& e) {
  const std::string op = e.node->op_type();
  const std::string keep = bool_literal(e.attr_int("keepdims", 1) != 0);
  std::string axes;
  bool empty = false;
  if (op == "ReduceSum" && e.opset >= 13) {
    if (e.has(1)) {
      axes = e.ints(1);
      empty = e.const_ints(1) && e.const_ints(1)->empty();
    } else {
      empty = true;
    }
  } else {
    const std::vector<int64_t> a = e.attr_ints("axes");
    axes = ints_literal(a);
    empty = a.empty();
  }
  if (empty && e.attr_int("noop_with_empty_axes", 0) != 0) {
    e.set(e.in(0));
    return;
  }
  const std::string x = e.in(0);
  if (op == "ReduceSum" && e.opset >= 13 && e.has(1) && !e.const_ints(1)) {  // known when run
    e.set(e.helper("reduce_sum") + x + ", " + axes + ", " + keep + ", " +
          bool_literal(e.attr_int("noop_with_empty_axes", 0) != 0) + ")");
    return;
  }
  const std::string dims = empty ? e.helper("all_dims") + x + ")" : axes;
  std::string s;
  if (op == "ReduceMean") s = "torch.mean(" + x + ", " + dims + ", " + keep + ")";
  if (op == "ReduceSum") s = "torch.sum(" + x + ", " + dims + ", " + keep + ")";
  if (op == "ReduceMax") s = "torch.amax(" + x + ", " + dims + ", " + keep + ")";
  if (op == "ReduceMin") s = "torch.amin(" + x + ", " + dims + ", " + keep + ")";
  if (op == "ReduceProd") s = e.helper("prod") + x + ", " + dims + ", " + keep + ")";
  if (op == "ReduceL1") s = "torch.sum(torch.abs(" + x + "), " + dims + ", " + keep + ")";
  if (op == "ReduceL2")
    s = "torch.sqrt(torch.sum(" + x + " * " + x + ", " + dims + ", " + keep + "))";
  if (op == "ReduceSumSquare") s = "torch.sum(" + x + " * " + x + ", " + dims + ", " + keep + ")";
  if (op == "ReduceLogSum") s = "torch.log(torch.sum(" + x + ", " + dims + ", " + keep + "))";
  if (op == "ReduceLogSumExp") s = "torch.logsumexp(" + x + ", " + dims + ", " + keep + ")";
  e.set(s);
}

void add_reductions(Map& m) {
  for (const char* op :
       {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"}) {
    m[op] = emit_reduce;
  }
  m["ArgMax"] = m["ArgMin"] = [](NodeCode& e) {
    const bool max = e.node->op_type() == "ArgMax";
    const std::string axis = std::to_string(e.attr_int("axis", 0));
    const std::string keep = bool_literal(e.attr_int("keepdims", 1) != 0);
    if (e.attr_int("select_last_index", 0) != 0) {
      e.set(e.helper("arg_last") + e.in(0) + ", " + axis + ", " + keep + ", " + bool_literal(max) +
            ")");
    } else {
      e.set(std::string(max ? "torch.argmax(" : "torch.argmin(") + e.in(0) + ", " + axis + ", " +
            keep + ")");
    }
  };
}

void add_normalizations(Map& m) {
  m["BatchNormalization"] = emit_batch_norm;
  m["InstanceNormalization"] = [](NodeCode& e) {
    e.set("torch.instance_norm(" + e.in(0) + ", " + e.in(1) + ", " + e.in(2) +
          ", None, None, True, 0.0, " + float_literal(e.attr_float("epsilon", 1e-5)) + ", False)");
  };
  m["LayerNormalization"] = [](NodeCode& e) {
    const bool stats = (e.out_name.size() > 1 && !e.out_name[1].empty()) ||
                       (e.out_name.size() > 2 && !e.out_name[2].empty());
    if (stats) {  // the mean and 1 / standard deviation over the normalized axes
      const std::string x = e.in(0), dims = e.tmp + "_dims";
      e.line(dims + " = " + e.helper("from_axis") + x + ", " +
             std::to_string(e.attr_int("axis", -1)) + ")");
      e.set("torch.mean(" + x + ", " + dims + ", True)", 1);
      e.set("torch.rsqrt(torch.var(" + x + ", " + dims + ", False, True) + " +
                float_literal(e.attr_float("epsilon", 1e-5)) + ")",
            2);
    }
    e.set("torch.layer_norm(" + e.in(0) + ", " + e.in(0) + ".shape[" + e.helper("axis") + e.in(0) +
          ", " + std::to_string(e.attr_int("axis", -1)) + "):], " + e.in(1) + ", " +
          (e.has(2) ? e.in(2) : "None") + ", " + float_literal(e.attr_float("epsilon", 1e-5)) +
          ")");
  };
  m["LpNormalization"] = [](NodeCode& e) {
    const int64_t p = e.attr_int("p", 2);
    if (p != 1 && p != 2) e.unsupported("p " + std::to_string(p));
    const std::string x = e.in(0), axis = std::to_string(e.attr_int("axis", -1));
    e.set(x + " / " +
          (p == 1 ? "torch.sum(torch.abs(" + x + "), [" + axis + "], True)"
                  : "torch.sqrt(torch.sum(" + x + " * " + x + ", [" + axis + "], True))"));
  };
  m["LRN"] = [](NodeCode& e) {
    e.set(e.helper("lrn") + e.in(0) + ", " + std::to_string(e.attr_int("size", 1)) + ", " +
          float_literal(e.attr_float("alpha", 1e-4)) + ", " +
          float_literal(e.attr_float("beta", 0.75)) + ", " +
          float_literal(e.attr_float("bias", 1)) + ")");
  };
}

// Axes from the attribute (before `input_from`) or the second input.
std::string axes_of(NodeCode& e, int input_from) {
  if (e.opset >= input_from) return e.has(1) ? e.ints(1) : "";
  const std::vector<int64_t> a = e.attr_ints("axes");
  return e.attr("axes") ? ints_literal(a) : "";
}

void add_shapes(Map& m) {
  m["Flatten"] = [](NodeCode& e) {
    e.set(e.helper("flatten") + e.in(0) + ", " + std::to_string(e.attr_int("axis", 1)) + ")");
  };
  m["Reshape"] = [](NodeCode& e) {
    e.set(e.helper("reshape") + e.in(0) + ", " + e.ints(1) + ", " +
          std::to_string(e.attr_int("allowzero", 0)) + ")");
  };
  m["Transpose"] = [](NodeCode& e) {
    const std::vector<int64_t> perm = e.attr_ints("perm");
    if (perm.empty()) {
      e.set(e.in(0) + ".permute(" + e.helper("reversed_dims") + e.in(0) + "))");
    } else {
      e.set(e.in(0) + ".permute(" + ints_literal(perm) + ")");
    }
  };
  m["Squeeze"] = [](NodeCode& e) {
    const std::string axes = axes_of(e, 13);
    e.set(axes.empty() ? "torch.squeeze(" + e.in(0) + ")"
                       : e.helper("squeeze") + e.in(0) + ", " + axes + ")");
  };
  m["Unsqueeze"] = [](NodeCode& e) {
    const std::string axes = axes_of(e, 13);
    if (axes.empty()) e.unsupported("Unsqueeze without axes");
    e.set(e.helper("unsqueeze") + e.in(0) + ", " + axes + ")");
  };
  m["Concat"] = [](NodeCode& e) {
    std::vector<std::string> parts;
    for (size_t i = 0; i < e.inputs(); ++i) {
      if (e.has(i)) parts.push_back(e.in(i));
    }
    e.set("torch.cat([" + join(parts, ", ") + "], " + std::to_string(e.attr_int("axis", 0)) + ")");
  };
  m["Shape"] = [](NodeCode& e) {
    std::string s = "torch._shape_as_tensor(" + e.in(0) + ")";
    if (e.attr("start") || e.attr("end")) {
      const std::string end = e.attr("end") ? std::to_string(e.attr_int("end", 0)) : std::string();
      s += "[" + std::to_string(e.attr_int("start", 0)) + ":" + end + "]";
    }
    e.set(s);
  };
  m["Size"] = [](NodeCode& e) { e.set("torch.tensor(" + e.in(0) + ".numel())"); };
  m["Expand"] = [](NodeCode& e) { e.set(e.helper("expand") + e.in(0) + ", " + e.ints(1) + ")"); };
  m["Tile"] = [](NodeCode& e) { e.set(e.in(0) + ".repeat(" + e.ints(1) + ")"); };
}

void add_indexing(Map& m) {
  m["Gather"] = [](NodeCode& e) {
    e.set(e.helper("gather") + e.in(0) + ", " + e.in(1) + ", " +
          std::to_string(e.attr_int("axis", 0)) + ")");
  };
  m["Slice"] = [](NodeCode& e) {
    if (e.opset < 10) {
      const std::vector<int64_t> starts = e.attr_ints("starts"), ends = e.attr_ints("ends");
      std::vector<int64_t> axes = e.attr_ints("axes");
      if (axes.empty()) {
        for (size_t a = 0; a < starts.size(); ++a) axes.push_back(static_cast<int64_t>(a));
      }
      e.set(e.helper("slice") + e.in(0) + ", " + ints_literal(starts) + ", " + ints_literal(ends) +
            ", " + ints_literal(axes) + ", " +
            ints_literal(std::vector<int64_t>(starts.size(), 1)) + ")");
      return;
    }
    const std::string starts = e.ints(1);
    const std::string axes = e.has(3) ? e.ints(3) : e.helper("count") + starts + ")";
    const std::string steps = e.has(4) ? e.ints(4) : e.helper("ones") + starts + ")";
    e.set(e.helper("slice") + e.in(0) + ", " + starts + ", " + e.ints(2) + ", " + axes + ", " +
          steps + ")");
  };
  m["Split"] = [](NodeCode& e) {
    const std::string axis = std::to_string(e.attr_int("axis", 0));
    std::string sizes;
    if (e.opset >= 13 && e.has(1)) sizes = e.ints(1);
    if (e.opset < 13 && e.attr("split")) sizes = ints_literal(e.attr_ints("split"));
    const std::string tmp = e.tmp;
    if (sizes.empty()) {
      e.line(tmp + " = torch.split(" + e.in(0) + ", " + e.helper("split_size") + e.in(0) + ", " +
             axis + ", " + std::to_string(e.out_name.size()) + "), " + axis + ")");
    } else {
      e.line(tmp + " = torch.split(" + e.in(0) + ", " + sizes + ", " + axis + ")");
    }
    for (size_t k = 0; k < e.out_name.size(); ++k) e.set(tmp + "[" + std::to_string(k) + "]", k);
  };
  m["Where"] = [](NodeCode& e) {
    e.set("torch.where(" + e.in(0) + ", " + e.in(1) + ", " + e.in(2) + ")");
  };
  m["Range"] = [](NodeCode& e) {
    e.set(e.helper("range") + e.in(0) + ", " + e.in(1) + ", " + e.in(2) + ")");
  };
  m["ScatterND"] = [](NodeCode& e) {
    const std::string reduction = e.attr_string("reduction", "none");
    if (reduction != "none") e.unsupported("reduction " + reduction);
    e.set(e.helper("scatter_nd") + e.in(0) + ", " + e.in(1) + ", " + e.in(2) + ")");
  };
  m["Einsum"] = [](NodeCode& e) {
    std::vector<std::string> parts;
    for (size_t i = 0; i < e.inputs(); ++i) parts.push_back(e.in(i));
    e.set("torch.einsum('" + e.attr_string("equation", "") + "', [" + join(parts, ", ") + "])");
  };
  m["DepthToSpace"] = [](NodeCode& e) {
    e.set(e.helper("depth_to_space") + e.in(0) + ", " + std::to_string(e.attr_int("blocksize", 1)) +
          ", " + bool_literal(e.attr_string("mode", "DCR") == "CRD") + ")");
  };
  m["SpaceToDepth"] = [](NodeCode& e) {
    e.set(e.helper("space_to_depth") + e.in(0) + ", " + std::to_string(e.attr_int("blocksize", 1)) +
          ")");
  };
}

// The first value of a tensor attribute's raw (little-endian) data.
double raw_scalar(const NodeCode& e, const onnx::TensorProto& v) {
  const std::string& raw = v.raw_data();
  auto read = [&](auto zero) {
    if (raw.size() < sizeof zero) e.unsupported("a value shorter than its type");
    std::memcpy(&zero, raw.data(), sizeof zero);
    return static_cast<double>(zero);
  };
  switch (v.data_type()) {
    case onnx::TensorProto::FLOAT:
      return read(float{});
    case onnx::TensorProto::DOUBLE:
      return read(double{});
    case onnx::TensorProto::INT64:
      return read(int64_t{});
    case onnx::TensorProto::INT32:
      return read(int32_t{});
    case onnx::TensorProto::INT16:
      return read(int16_t{});
    case onnx::TensorProto::INT8:
      return read(int8_t{});
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::BOOL:
      return read(uint8_t{});
    default:
      e.unsupported("a value of data type " + std::to_string(v.data_type()));
  }
}

void add_tensors(Map& m) {
  m["Cast"] = [](NodeCode& e) {
    const int t = scalar_type_of(static_cast<int>(e.attr_int("to", 0)));
    if (t < 0) e.unsupported("cast to data type " + std::to_string(e.attr_int("to", 0)));
    e.set(e.in(0) + ".to(dtype=" + std::to_string(t) + ")");
  };
  m["CastLike"] = [](NodeCode& e) { e.set(e.in(0) + ".to(dtype=" + e.in(1) + ".dtype)"); };
  m["ConstantOfShape"] = [](NodeCode& e) {
    std::string value = "0.0", dtype = "6";
    if (const onnx::AttributeProto* a = e.attr("value")) {
      const int t = scalar_type_of(a->t().data_type());
      if (t < 0) e.unsupported("value of data type " + std::to_string(a->t().data_type()));
      dtype = std::to_string(t);
      const onnx::TensorProto& v = a->t();
      double x = 0;
      if (v.float_data_size())
        x = v.float_data(0);
      else if (v.int64_data_size())
        x = static_cast<double>(v.int64_data(0));
      else if (v.int32_data_size())
        x = v.int32_data(0);
      else if (v.double_data_size())
        x = v.double_data(0);
      else if (!v.raw_data().empty())
        x = raw_scalar(e, v);
      value = float_literal(x);
    }
    e.set("torch.full(" + e.ints(0) + ", " + value + ", dtype=" + dtype + ")");
  };
  m["Dropout"] = [](NodeCode& e) {
    // Training mode draws random masks, unless the ratio is 0 (PyTorch
    // exports attention dropout with p = 0 in training mode).
    const bool no_ratio = e.has(1) && e.in_const[1] && e.in_const[1]->numel() == 1 &&
                          e.in_const[1]->item<double>() == 0;
    const std::optional<std::vector<int64_t>> training = e.const_ints(2);
    const bool eval = !e.has(2) || (training && training->size() == 1 && (*training)[0] == 0);
    if (!eval && !no_ratio) e.unsupported("training mode (random masks)");
    e.set(e.in(0));
    if (e.out_name.size() > 1) e.set("torch.ones_like(" + e.in(0) + ", dtype=11)", 1);
  };
  m["IsInf"] = [](NodeCode& e) {
    const bool neg = e.attr_int("detect_negative", 1) != 0,
               pos = e.attr_int("detect_positive", 1) != 0;
    const std::string x = e.in(0);
    e.set(pos && neg ? "torch.isinf(" + x + ")"
          : pos      ? "torch.isposinf(" + x + ")"
          : neg      ? "torch.isneginf(" + x + ")"
                     : "torch.zeros_like(" + x + ", dtype=11)");
  };
  m["Pad"] = [](NodeCode& e) {
    const std::string mode = e.attr_string("mode", "constant");
    if (mode != "constant" && mode != "reflect" && mode != "edge") e.unsupported("mode " + mode);
    std::string pads, value = "0.0";
    if (e.opset < 11) {
      pads = ints_literal(e.attr_ints("pads"));
      value = float_literal(e.attr_float("value", 0));
    } else {
      pads = e.ints(1);
      if (e.has(2)) value = e.scalar(2);
    }
    if (e.has(3)) e.unsupported("the axes input");
    e.set(e.helper("pad") + e.in(0) + ", " + pads + ", '" + mode + "', " + value + ")");
  };
}

// Resize (and Upsample) of an N, C, H, W tensor over H and W.
void emit_resize(NodeCode& e) {
  const std::string op = e.node->op_type();
  std::string mode = e.attr_string("mode", "nearest");
  std::string coords = "asymmetric";  // Upsample, and Resize before opset 11
  std::string scales = "None", sizes = "None";
  size_t scales_at = 1;
  if (op == "Resize" && e.opset >= 11) {
    coords = e.attr_string("coordinate_transformation_mode", "half_pixel");
    scales_at = 2;
    if (e.has(3)) sizes = e.ints(3);
    if (coords == "tf_crop_and_resize") e.unsupported("coordinate_transformation_mode " + coords);
  }
  if (op == "Upsample" && e.opset < 9) scales_at = 99;
  if (sizes == "None" && e.has(scales_at)) {
    if (const at::Tensor* s = e.in_const[scales_at]) {
      if (s->numel() > 0) {
        std::vector<std::string> v;
        for (int64_t i = 0; i < s->numel(); ++i)
          v.push_back(float_literal(s->to(at::kDouble)[i].item<double>()));
        scales = "[" + join(v, ", ") + "]";
      }
    } else {
      scales = e.helper("floats") + e.in(scales_at) + ")";
    }
  }
  if (scales == "None" && sizes == "None") e.unsupported("neither scales nor sizes");
  if (mode == "nearest") {
    const std::string nearest = e.attr_string("nearest_mode", "round_prefer_floor");
    if (coords != "asymmetric" || (op == "Resize" && e.opset >= 11 && nearest != "floor")) {
      e.unsupported("nearest mode with " + coords + " coordinates and " + nearest + " rounding");
    }
  } else if (mode == "linear" || mode == "cubic") {
    if (coords != "half_pixel" && coords != "pytorch_half_pixel" && coords != "align_corners") {
      e.unsupported(mode + " mode with " + coords + " coordinates");
    }
    if (mode == "cubic" &&
        (e.attr_float("cubic_coeff_a", -0.75) != -0.75 || e.attr_int("exclude_outside", 0) != 0)) {
      e.unsupported("cubic coefficients other than PyTorch's");
    }
  } else {
    e.unsupported("mode " + mode);
  }
  if (coords == "align_corners" && sizes == "None") {
    // ONNX divides by in * scale - 1, not by the floored output size - 1.
    e.unsupported("align_corners with scales rather than sizes");
  }
  if (mode == "linear" && coords == "pytorch_half_pixel") mode = "linear_pytorch";
  e.set(e.helper("resize") + e.in(0) + ", " + scales + ", " + sizes + ", '" + mode + "', " +
        bool_literal(coords == "align_corners") + ")");
}

Map make_table() {
  Map m;
  add_unary(m);
  add_binary(m);
  add_variadic(m);
  add_activations(m);
  add_reductions(m);
  add_normalizations(m);
  add_shapes(m);
  add_indexing(m);
  add_tensors(m);
  m["Conv"] = emit_conv;
  m["ConvTranspose"] = emit_conv_transpose;
  m["MaxPool"] = emit_max_pool;
  m["AveragePool"] = emit_average_pool;
  m["GlobalAveragePool"] = [](NodeCode& e) { emit_global_pool(e, "mean"); };
  m["GlobalMaxPool"] = [](NodeCode& e) { emit_global_pool(e, "amax"); };
  m["Gemm"] = emit_gemm;
  m["Softmax"] = [](NodeCode& e) { emit_softmax(e, false); };
  m["LogSoftmax"] = [](NodeCode& e) { emit_softmax(e, true); };
  m["Resize"] = m["Upsample"] = emit_resize;
  return m;
}

// Helper methods, part 1 of 5.
void add_helpers_1(std::map<std::string, std::string>& table) {
  table.insert({
      {"ints", R"(def _ints(self, t: Tensor) -> List[int]:
    r: List[int] = t.to(dtype=4).reshape([-1]).tolist()
    return r
)"},
      {"floats", R"(def _floats(self, t: Tensor) -> List[float]:
    r: List[float] = t.to(dtype=7).reshape([-1]).tolist()
    return r
)"},
      {"axis", R"(def _axis(self, x: Tensor, a: int) -> int:
    return a + x.dim() if a < 0 else a
)"},
      {"all_dims", R"(def _all_dims(self, x: Tensor) -> List[int]:
    return [d for d in range(x.dim())]
)"},
      {"spatial", R"(def _spatial(self, x: Tensor) -> List[int]:
    return [d for d in range(2, x.dim())]
)"},
      {"reversed_dims", R"(def _reversed_dims(self, x: Tensor) -> List[int]:
    return [x.dim() - 1 - d for d in range(x.dim())]
)"},
      {"count", R"(def _count(self, v: List[int]) -> List[int]:
    return [d for d in range(len(v))]
)"},
      {"ones", R"(def _ones(self, v: List[int]) -> List[int]:
    return [1 for d in v]
)"},
      {"reshape", R"(def _reshape(self, x: Tensor, s: List[int], allowzero: int) -> Tensor:
    out: List[int] = []
    for i in range(len(s)):
        if s[i] == 0 and allowzero == 0:
            out.append(x.size(i))
        else:
            out.append(s[i])
    return x.reshape(out)
)"},
      {"flatten", R"(def _flatten(self, x: Tensor, axis: int) -> Tensor:
    if axis < 0:
        axis += x.dim()
    lead = 1
    rest = 1
    for i in range(x.dim()):
        if i < axis:
            lead *= x.size(i)
        else:
            rest *= x.size(i)
    return x.reshape([lead, rest])
)"},
      {"unsqueeze", R"(def _unsqueeze(self, x: Tensor, axes: List[int]) -> Tensor:
    r = x.dim() + len(axes)
    at: List[int] = []
    for a in axes:
        at.append(a + r if a < 0 else a)
    at.sort()
    for a in at:
        x = x.unsqueeze(a)
    return x
)"},
      {"squeeze", R"(def _squeeze(self, x: Tensor, axes: List[int]) -> Tensor:
    at: List[int] = []
    for a in axes:
        at.append(a + x.dim() if a < 0 else a)
    at.sort(reverse=True)
    for a in at:
        x = x.squeeze(a)
    return x
)"},
  });
}

// Helper methods, part 2 of 5.
void add_helpers_2(std::map<std::string, std::string>& table) {
  table.insert({
      {"gather", R"(def _gather(self, x: Tensor, i: Tensor, axis: int) -> Tensor:
    if axis < 0:
        axis += x.dim()
    i = torch.where(i < 0, i + x.size(axis), i).to(dtype=4)
    shape = x.shape[:axis] + i.shape + x.shape[axis + 1:]
    return torch.index_select(x, axis, i.reshape([-1])).reshape(shape)
)"},
      {"slice",
       R"(def _slice(self, x: Tensor, starts: List[int], ends: List[int], axes: List[int], steps: List[int]) -> Tensor:
    for k in range(len(starts)):
        a = axes[k] + x.dim() if axes[k] < 0 else axes[k]
        n = x.size(a)
        st = steps[k]
        s = starts[k] + n if starts[k] < 0 else starts[k]
        e = ends[k] + n if ends[k] < 0 else ends[k]
        if st > 0:
            s = min(max(s, 0), n)
            e = min(max(e, 0), n)
            x = x.slice(a, s, max(e, s), st)
        else:
            s = min(max(s, -1), n - 1)
            e = min(max(e, -1), n - 1)
            count = (s - e + (-st) - 1) // (-st) if s > e else 0
            index = torch.arange(count, device=x.device) * st + s
            x = torch.index_select(x, a, index)
    return x
)"},
      {"expand", R"(def _expand(self, x: Tensor, s: List[int]) -> Tensor:
    r = max(x.dim(), len(s))
    out: List[int] = []
    for k in range(r):
        i = k - r + x.dim()
        j = k - r + len(s)
        a = x.size(i) if i >= 0 else 1
        b = s[j] if j >= 0 else 1
        out.append(a if b == 1 else b)
    return x.expand(out)
)"},
      {"from_axis", R"(def _from_axis(self, x: Tensor, a: int) -> List[int]:
    if a < 0:
        a += x.dim()
    return [d for d in range(a, x.dim())]
)"},
      {"reduce_sum",
       R"(def _reduce_sum(self, x: Tensor, axes: List[int], keep: bool, noop: bool) -> Tensor:
    if len(axes) == 0:
        if noop:
            return x
        axes = [d for d in range(x.dim())]
    return torch.sum(x, axes, keep)
)"},
      {"split_size", R"(def _split_size(self, x: Tensor, axis: int, parts: int) -> int:
    n = x.size(axis)
    return (n + parts - 1) // parts
)"},
  });
}

// Helper methods, part 3 of 5.
void add_helpers_3(std::map<std::string, std::string>& table) {
  table.insert({
      {"softmax_flat", R"(def _softmax_flat(self, x: Tensor, axis: int, log: bool) -> Tensor:
    if axis < 0:
        axis += x.dim()
    lead = 1
    rest = 1
    for i in range(x.dim()):
        if i < axis:
            lead *= x.size(i)
        else:
            rest *= x.size(i)
    y = x.reshape([lead, rest])
    y = torch.log_softmax(y, 1) if log else torch.softmax(y, 1)
    return y.reshape(x.shape)
)"},
      {"prod", R"(def _prod(self, x: Tensor, axes: List[int], keep: bool) -> Tensor:
    at: List[int] = []
    for a in axes:
        at.append(a + x.dim() if a < 0 else a)
    at.sort(reverse=True)
    for a in at:
        x = torch.prod(x, a, keep)
    return x
)"},
      {"arg_last",
       R"(def _arg_last(self, x: Tensor, axis: int, keep: bool, largest: bool) -> Tensor:
    if axis < 0:
        axis += x.dim()
    n = x.size(axis)
    f = torch.flip(x, [axis])
    i = torch.argmax(f, axis, keep) if largest else torch.argmin(f, axis, keep)
    return n - 1 - i
)"},
      {"lrn",
       R"(def _lrn(self, x: Tensor, size: int, alpha: float, beta: float, bias: float) -> Tensor:
    sq = (x * x).reshape([x.size(0), 1, x.size(1), -1])
    lo = (size - 1) // 2
    sq = torch.constant_pad_nd(sq, [0, 0, lo, size - 1 - lo], 0.0)
    s = torch.avg_pool2d(sq, [size, 1], [1, 1], [0, 0], False, True) * size
    return x / torch.pow(s.reshape(x.shape) * (alpha / size) + bias, beta)
)"},
  });
}

// Helper methods, part 4 of 5.
void add_helpers_4(std::map<std::string, std::string>& table) {
  table.insert({
      {"pad", R"(def _pad(self, x: Tensor, p: List[int], mode: str, value: float) -> Tensor:
    n = len(p) // 2
    q: List[int] = []
    for k in range(n - 1, -1, -1):
        q.append(p[k])
        q.append(p[k + n])
    if mode == 'constant':
        return torch.constant_pad_nd(x, q, value)
    while len(q) > 2 and q[-1] == 0 and q[-2] == 0:
        q = q[:-2]
    m = len(q) // 2
    lead = x.shape[:x.dim() - m]
    y = x.reshape([-1, 1] + x.shape[x.dim() - m:])
    if not x.is_floating_point():
        y = y.to(dtype=7)
    if mode == 'reflect':
        if m == 1:
            y = torch.reflection_pad1d(y, q)
        elif m == 2:
            y = torch.reflection_pad2d(y, q)
        else:
            y = torch.reflection_pad3d(y, q)
    else:
        if m == 1:
            y = torch.replication_pad1d(y, q)
        elif m == 2:
            y = torch.replication_pad2d(y, q)
        else:
            y = torch.replication_pad3d(y, q)
    return y.reshape(lead + y.shape[2:]).to(dtype=x.dtype)
)"},
      {"resize",
       R"(def _resize(self, x: Tensor, scales: Optional[List[float]], sizes: Optional[List[int]], mode: str, align: bool) -> Tensor:
    size: List[int] = []
    sh: Optional[float] = None
    sw: Optional[float] = None
    if sizes is not None:
        size = sizes[2:]
    elif scales is not None:
        size = [int(x.size(2) * scales[2]), int(x.size(3) * scales[3])]
        sh = scales[2]
        sw = scales[3]
    if mode == 'nearest':
        return torch.upsample_nearest2d(x, size, sh, sw)
    if mode == 'linear_pytorch' and (size[0] == 1 or size[1] == 1):
        # pytorch_half_pixel: a length-1 output samples coordinate 0. Linear
        # interpolation is separable: one axis, then the other.
        if size[0] == 1:
            x = x[:, :, 0:1, :]
        else:
            x = torch.upsample_bilinear2d(x, [size[0], x.size(3)], False, sh, 1.0)
        if size[1] == 1:
            return x[:, :, :, 0:1]
        return torch.upsample_bilinear2d(x, [x.size(2), size[1]], False, 1.0, sw)
    if mode == 'cubic':
        return torch.upsample_bicubic2d(x, size, align, None if align else sh, None if align else sw)
    return torch.upsample_bilinear2d(x, size, align, None if align else sh, None if align else sw)
)"},
  });
}

// Helper methods, part 5 of 5.
void add_helpers_5(std::map<std::string, std::string>& table) {
  table.insert({
      {"depth_to_space", R"(def _depth_to_space(self, x: Tensor, b: int, crd: bool) -> Tensor:
    n = x.size(0)
    c = x.size(1)
    h = x.size(2)
    w = x.size(3)
    if crd:
        y = x.reshape([n, c // (b * b), b, b, h, w]).permute([0, 1, 4, 2, 5, 3])
    else:
        y = x.reshape([n, b, b, c // (b * b), h, w]).permute([0, 3, 4, 1, 5, 2])
    return y.reshape([n, c // (b * b), h * b, w * b])
)"},
      {"space_to_depth", R"(def _space_to_depth(self, x: Tensor, b: int) -> Tensor:
    n = x.size(0)
    c = x.size(1)
    h = x.size(2)
    w = x.size(3)
    y = x.reshape([n, c, h // b, b, w // b, b]).permute([0, 3, 5, 1, 2, 4])
    return y.reshape([n, c * b * b, h // b, w // b])
)"},
      // ONNX's Range takes the type of its inputs; arange's end is exclusive too.
      {"range", R"(def _range(self, start: Tensor, limit: Tensor, delta: Tensor) -> Tensor:
    if start.is_floating_point():
        return torch.arange(float(start), float(limit), float(delta), dtype=start.dtype, device=start.device)
    return torch.arange(int(start), int(limit), int(delta), dtype=start.dtype, device=start.device)
)"},
      // Each index row picks a slice of data's first k dimensions: the rows
      // become positions in data seen as [-1] + its other dimensions, and
      // an out-of-place index_put writes the updates there (differentiable
      // in both data and updates).
      {"scatter_nd",
       R"(def _scatter_nd(self, data: Tensor, indices: Tensor, updates: Tensor) -> Tensor:
    k = indices.size(-1)
    idx = indices.reshape([-1, k])
    tail = data.shape[k:]
    lin = torch.zeros([idx.size(0)], dtype=4, device=data.device)
    for d in range(k):
        lin = lin * data.size(d) + torch.remainder(idx[:, d], data.size(d))
    flat = data.reshape([-1] + tail)
    at: List[Optional[Tensor]] = [lin]
    flat = flat.index_put(at, updates.reshape([idx.size(0)] + tail))
    return flat.reshape(data.shape)
)"},
  });
}

// Helper methods the emitted code calls, by name (each module gets those its
// nodes use).
const std::map<std::string, std::string>& helper_table() {
  static const std::map<std::string, std::string> table = [] {
    std::map<std::string, std::string> t;
    add_helpers_1(t);
    add_helpers_2(t);
    add_helpers_3(t);
    add_helpers_4(t);
    add_helpers_5(t);
    return t;
  }();
  return table;
}

}  // namespace

const std::map<std::string, Emitter>& emitters() {
  static const Map table = make_table();
  return table;
}

const std::string& NodeCode::in(size_t i) const {
  if (!has(i)) unsupported("a missing input " + std::to_string(i));
  return in_expr[i];
}

int NodeCode::rank(size_t i) const {
  if (i < in_const.size() && in_const[i]) return static_cast<int>(in_const[i]->dim());
  if (i < in_shape.size() && in_shape_known[i]) return static_cast<int>(in_shape[i].size());
  return -1;
}

bool NodeCode::is_float(size_t i) const {
  if (i < in_const.size() && in_const[i]) return in_const[i]->is_floating_point();
  if (i >= in_type.size()) return false;
  const int t = in_type[i];
  return t == onnx::TensorProto::FLOAT || t == onnx::TensorProto::DOUBLE ||
         t == onnx::TensorProto::FLOAT16 || t == onnx::TensorProto::BFLOAT16;
}

std::optional<std::vector<int64_t>> NodeCode::const_ints(size_t i) const {
  if (i >= in_const.size() || !in_const[i]) return std::nullopt;
  const at::Tensor& t = *in_const[i];
  if (t.is_floating_point() || t.dim() > 1) return std::nullopt;
  const at::Tensor l = t.to(at::kLong).contiguous().reshape({-1});
  return std::vector<int64_t>(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel());
}

std::string NodeCode::ints(size_t i) {
  if (std::optional<std::vector<int64_t>> v = const_ints(i)) return ints_literal(*v);
  return helper("ints") + in(i) + ")";
}

std::string NodeCode::scalar(size_t i) {
  if (i < in_const.size() && in_const[i] && in_const[i]->numel() == 1) {
    return float_literal(in_const[i]->to(at::kDouble).item<double>());
  }
  return "float(" + in(i) + ".item())";
}

const onnx::AttributeProto* NodeCode::attr(const std::string& name) const {
  for (const onnx::AttributeProto& a : node->attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

int64_t NodeCode::attr_int(const std::string& name, int64_t fallback) const {
  const onnx::AttributeProto* a = attr(name);
  return a ? a->i() : fallback;
}

double NodeCode::attr_float(const std::string& name, double fallback) const {
  const onnx::AttributeProto* a = attr(name);
  return a ? a->f() : fallback;
}

std::string NodeCode::attr_string(const std::string& name, const std::string& fallback) const {
  const onnx::AttributeProto* a = attr(name);
  return a ? a->s() : fallback;
}

std::vector<int64_t> NodeCode::attr_ints(const std::string& name) const {
  const onnx::AttributeProto* a = attr(name);
  if (!a) return {};
  return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}

const std::string& helper_source(const std::string& name) {
  auto it = helper_table().find(name);
  if (it == helper_table().end()) throw Error(ErrorCode::kRuntime, "no ONNX helper '" + name + "'");
  return it->second;
}

void NodeCode::set(const std::string& expr, size_t k) {
  if (k < out_name.size() && !out_name[k].empty()) lines.push_back(out_name[k] + " = " + expr);
}

std::string NodeCode::helper(const std::string& name) {
  helper_source(name);  // known
  helpers.insert(name);
  return "self._" + name + "(";
}

void NodeCode::unsupported(const std::string& what) const {
  const std::string subject = !node->name().empty() ? "node '" + node->name() + "'"
                              : node->output_size() > 0
                                  ? "the node making '" + node->output(0) + "'"
                                  : "a node";
  throw Error(ErrorCode::kUnsupported, subject + " (" + node->op_type() + "): unsupported " + what);
}

std::string float_literal(double v) {
  if (std::isnan(v)) return "float('nan')";
  if (std::isinf(v)) return v > 0 ? "float('inf')" : "float('-inf')";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  std::string s = buf;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string ints_literal(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

namespace {

// ONNX's data types that LibTorch has: the ScalarType each becomes.
const std::map<int, at::ScalarType>& type_table() {
  static const std::map<int, at::ScalarType> table = {
      {onnx::TensorProto::FLOAT, at::kFloat},   {onnx::TensorProto::UINT8, at::kByte},
      {onnx::TensorProto::INT8, at::kChar},     {onnx::TensorProto::INT16, at::kShort},
      {onnx::TensorProto::INT32, at::kInt},     {onnx::TensorProto::INT64, at::kLong},
      {onnx::TensorProto::BOOL, at::kBool},     {onnx::TensorProto::FLOAT16, at::kHalf},
      {onnx::TensorProto::DOUBLE, at::kDouble}, {onnx::TensorProto::BFLOAT16, at::kBFloat16}};
  return table;
}

}  // namespace

int scalar_type_of(int onnx_type) {
  auto it = type_table().find(onnx_type);
  return it == type_table().end() ? -1 : static_cast<int>(it->second);
}

}  // namespace cnnviz::onnx_import
