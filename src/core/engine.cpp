#include "cnnviz/core/engine.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/alias_analysis.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <limits>
#include <optional>
#include <set>
#include <unordered_map>

#include "cnnviz/core/error.h"
#include "cnnviz/core/text.h"
#include "cnnviz/core/feature_map.h"
#include "cnnviz/core/onnx.h"
#include "cnnviz/core/runtime.h"
#include "logits.h"
#include "ops.h"

namespace cnnviz {

namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;
using torch::jit::WithInsertPoint;

// Activations that have no guided/deconvnet definition here; they are
// reported, and their backward stays the true gradient.
const std::set<std::string>& unguided_kinds() {
  static const std::set<std::string> kinds = {
      "aten::hardtanh",    "aten::hardtanh_",   "aten::silu",        "aten::silu_",
      "aten::gelu",        "aten::elu",         "aten::elu_",        "aten::selu",
      "aten::celu",        "aten::leaky_relu",  "aten::leaky_relu_", "aten::prelu",
      "aten::mish",        "aten::softplus",    "aten::hardswish",   "aten::hardswish_",
      "aten::hardsigmoid", "aten::hardsigmoid_"};
  return kinds;
}

// nn.ReLU6 is hardtanh(x, 0., 6.) in TorchScript.
bool is_relu6_hardtanh(Node* n) {
  if (n->kind() != c10::aten::hardtanh && n->kind() != c10::aten::hardtanh_) return false;
  if (n->inputs().size() < 3) return false;
  std::optional<c10::IValue> lo = torch::jit::toIValue(n->input(1));
  std::optional<c10::IValue> hi = torch::jit::toIValue(n->input(2));
  return lo && hi && lo->isDouble() && hi->isDouble() && lo->toDouble() == 0.0 &&
         hi->toDouble() == 6.0;
}

void collect(torch::jit::Block* block, std::vector<Node*>& out) {
  for (Node* n : block->nodes()) {
    out.push_back(n);
    for (torch::jit::Block* b : n->blocks()) collect(b, out);
  }
}

std::vector<Node*> all_nodes(Graph& g) {
  std::vector<Node*> nodes;
  collect(g.block(), nodes);
  return nodes;
}

// The module path of a value that is `self` or reached from it by GetAttr of
// submodules; nullopt for anything else.
std::optional<std::string> module_path(Value* v, Value* self) {
  if (v == self) return std::string();
  Node* n = v->node();
  auto cls = v->type()->cast<c10::ClassType>();
  if (n->kind() != c10::prim::GetAttr || !cls || !cls->is_module()) return std::nullopt;
  std::optional<std::string> parent = module_path(n->input(0), self);
  if (!parent) return std::nullopt;
  const std::string& name = n->s(c10::attr::name);
  return parent->empty() ? name : *parent + "." + name;
}

// The last global average pooling of the graph (the classifier head's):
// adaptive_avg_pool2d to 1x1, or mean over dims {2,3}.
Node* find_global_pool(Graph& g) {
  Node* found = nullptr;
  for (Node* n : all_nodes(g)) {
    if (n->kind() == c10::aten::adaptive_avg_pool2d) {
      std::optional<c10::IValue> size = torch::jit::toIValue(n->input(1));
      if (size && size->isIntList()) {
        std::vector<int64_t> v = size->toIntVector();
        if (std::all_of(v.begin(), v.end(), [](int64_t d) { return d == 1; })) found = n;
      }
    } else if (n->kind() == c10::aten::mean && n->inputs().size() >= 2) {
      std::optional<c10::IValue> dims = torch::jit::toIValue(n->input(1));
      if (dims && dims->isIntList()) {
        std::vector<int64_t> v = dims->toIntVector();
        std::sort(v.begin(), v.end());
        if (v == std::vector<int64_t>{2, 3} || v == std::vector<int64_t>{-2, -1}) found = n;
      }
    }
  }
  return found;
}

c10::Symbol fused_attention() {
  static const c10::Symbol s = c10::Symbol::fromQualString("aten::_native_multi_head_attention");
  return s;
}

struct Instrumented {
  std::shared_ptr<Graph> graph;
  std::unique_ptr<torch::jit::GraphFunction> function;
  std::vector<std::string> slot_paths;  // slot -> module path
  std::vector<std::string> slot_types;  // slot -> class name
  GraphReport report;
  // Each attention (kAttentionLayers): its module, and the slots of its
  // weights and of its module's first input.
  struct Attention {
    std::string path;
    size_t weights_slot = 0, input_slot = 0;
  };
  std::vector<Attention> attention;

  std::optional<size_t> slot(const std::string& path) const {
    auto it = std::find(slot_paths.begin(), slot_paths.end(), path);
    if (it == slot_paths.end()) return std::nullopt;
    return static_cast<size_t>(it - slot_paths.begin());
  }
};

// Whether `v` is an attention's weights: a softmax's output, through taps,
// dropout and the branches of an `if`.
bool is_softmax_output(Value* v, int depth = 0) {
  if (depth > 6) return false;
  Node* n = v->node();
  const std::string kind = n->kind().toQualString();
  if (kind == "aten::softmax") return true;
  if (kind == "cnnviz::tap" || kind == "aten::dropout") return is_softmax_output(n->input(0), depth + 1);
  if (n->kind() == c10::prim::If) {
    for (torch::jit::Block* b : n->blocks()) {
      if (is_softmax_output(b->outputs().at(v->offset()), depth + 1)) return true;
    }
  }
  return false;
}

// Whether `v` carries tensor data (a tensor, an optional one, a list of
// them), not a size or a flag read from one.
bool carries_tensor(Value* v) {
  const c10::TypePtr& t = v->type();
  if (t->isSubtypeOf(*c10::TensorType::get())) return true;
  if (auto list = t->cast<c10::ListType>()) return list->getElementType()->isSubtypeOf(*c10::TensorType::get());
  if (auto opt = t->cast<c10::OptionalType>()) return opt->getElementType()->isSubtypeOf(*c10::TensorType::get());
  return false;
}

// Every value that depends on the graph's input (not only on the module's
// parameters and constants), through blocks too.
std::set<Value*> computed_from_input(Graph& g) {
  std::set<Value*> out = {g.inputs().at(1)};
  const std::vector<Node*> nodes = all_nodes(g);
  for (size_t before = 0; before != out.size();) {
    before = out.size();
    for (Node* n : nodes) {
      bool computed = std::any_of(n->inputs().begin(), n->inputs().end(),
                                  [&](Value* v) { return out.count(v) > 0 && carries_tensor(v); });
      if (n->kind() == c10::prim::If) {
        for (torch::jit::Block* b : n->blocks()) {
          for (size_t i = 0; i < b->outputs().size() && i < n->outputs().size(); ++i) {
            if (out.count(b->outputs()[i])) out.insert(n->output(i));
          }
        }
        continue;
      }
      if (computed) out.insert(n->outputs().begin(), n->outputs().end());
    }
  }
  return out;
}

// The transformer's operations with AttnLRP's rules (ops.h): every
// layer_norm and gelu, and every product of two tensors computed from the
// input (`from_input`; a product with a parameter is a linear map, which the
// plain gradient already treats as LRP-0).
void rewrite_transformer_ops_for_lrp(Graph& g, GraphReport& report) {
  const std::set<Value*> from_input = computed_from_input(g);
  const c10::Symbol layer_norm = c10::Symbol::fromQualString("cnnviz::lrp_layer_norm");
  const c10::Symbol gelu = c10::Symbol::fromQualString("cnnviz::lrp_gelu");
  const c10::Symbol matmul = c10::Symbol::fromQualString("cnnviz::lrp_matmul");
  for (Node* n : all_nodes(g)) {
    std::vector<Value*> inputs;
    c10::Symbol kind;
    WithInsertPoint guard(n);
    if (n->kind() == c10::aten::layer_norm && n->inputs().size() == 6) {
      kind = layer_norm;
      inputs = {n->input(0), n->input(1), n->input(2), n->input(3), n->input(4)};
    } else if (n->kind() == c10::aten::gelu && n->inputs().size() == 2) {
      kind = gelu;
      inputs = {n->input(0), n->input(1)};
    } else if ((n->kind() == c10::aten::bmm || n->kind() == c10::aten::matmul) &&
               n->inputs().size() == 2 && from_input.count(n->input(0)) &&
               from_input.count(n->input(1))) {
      kind = matmul;
      inputs = {n->input(0), n->input(1), g.insertConstant(is_softmax_output(n->input(0)))};
    } else {
      continue;
    }
    Node* op = g.insertNode(g.create(kind, inputs, 1));
    op->output()->setType(n->output()->type());
    n->output()->replaceAllUsesWith(op->output());
    n->destroy();
    ++report.lrp_transformer_ops;
  }
}

// LRP's layers: every aten::conv2d (integer padding) and aten::linear
// becomes cnnviz::lrp_conv2d / lrp_linear; a convolution whose only use is an
// aten::batch_norm absorbs it (the rules see the folded layer). `first` marks
// the layers that the input reaches through no other such layer. Operations
// left without a rule are counted in report.unguided.
void rewrite_for_lrp(Graph& g, GraphReport& report) {
  const c10::Symbol conv = c10::Symbol::fromQualString("cnnviz::lrp_conv2d");
  const c10::Symbol linear = c10::Symbol::fromQualString("cnnviz::lrp_linear");
  std::set<Value*> from_input = {g.inputs().at(1)};
  std::set<Node*> gone;
  const std::vector<Node*> nodes = all_nodes(g);
  for (Node* n : nodes) {
    if (gone.count(n)) continue;
    const bool is_conv = n->kind() == c10::aten::conv2d && n->inputs().size() == 7 &&
                         n->input(4)->type()->isSubtypeOf(*c10::ListType::ofInts());
    const bool is_linear = n->kind() == c10::aten::linear && n->inputs().size() == 3;
    if (!is_conv && !is_linear) {
      // Through tensors only: a size read from the input (ViT's reshape to
      // the batch's n) does not make a parameter an input layer's operand.
      for (Value* v : n->inputs()) {
        if (from_input.count(v) && carries_tensor(v)) {
          for (Value* o : n->outputs()) from_input.insert(o);
          break;
        }
      }
      continue;
    }
    const bool first = from_input.count(n->input(0)) > 0;
    Node* replaced = n;  // the node whose output the new one takes over
    std::vector<Value*> inputs(n->inputs().begin(), n->inputs().end());
    if (is_conv) {
      // BatchNorm2d's own checks read the output's shape before the batch
      // norm runs: its rank (`input.dim()`, the convolution's input's rank)
      // and, in training mode only, its size (the fused layer refuses
      // training mode). They read the input instead, so that the batch norm
      // is the output's one use and the convolution can move to it.
      const std::vector<torch::jit::Use> uses = n->output()->uses();
      for (const torch::jit::Use& use : uses) {
        if (use.user->kind() == c10::aten::dim || use.user->kind() == c10::aten::size) {
          use.user->replaceInput(use.offset, n->input(0));
        }
      }
      Node* bn = nullptr;
      if (n->output()->uses().size() == 1) {
        const torch::jit::Use& use = n->output()->uses()[0];
        if (use.user->kind() == c10::aten::batch_norm && use.offset == 0 &&
            use.user->inputs().size() == 9) {
          bn = use.user;
        }
      }
      if (bn) {
        for (size_t i : {1, 2, 3, 4, 7, 5}) inputs.push_back(bn->input(i));
        replaced = bn;
        ++report.folded_batch_norms;
      } else {
        WithInsertPoint guard(n);
        Value* none = g.insertConstant(c10::IValue());
        inputs.insert(inputs.end(),
                      {none, none, none, none, g.insertConstant(0.0), g.insertConstant(false)});
      }
    }
    WithInsertPoint guard(replaced);
    inputs.push_back(g.insertConstant(first));
    Node* layer = g.insertNode(g.create(is_conv ? conv : linear, inputs, 1));
    layer->output()->setType(replaced->output()->type());
    replaced->output()->replaceAllUsesWith(layer->output());
    if (replaced != n) {
      replaced->destroy();
      gone.insert(replaced);
    }
    n->destroy();
    ++report.lrp_layers;
  }
  rewrite_transformer_ops_for_lrp(g, report);
  // What has no rule: the plain gradient passes it.
  static const std::set<std::string> no_rule = {
      "aten::batch_norm", "aten::group_norm",    "aten::instance_norm", "aten::addmm",
      "aten::baddbmm",    "aten::_convolution", "aten::conv2d",        "aten::conv1d",
      "aten::sigmoid",    "aten::tanh",          "aten::silu",          "aten::scaled_dot_product_attention"};
  for (Node* n : all_nodes(g)) {
    if (no_rule.count(n->kind().toQualString())) ++report.unguided[n->kind().toQualString()];
  }
}

// Inlines every module and function call, depth first, tapping the wanted
// modules first: the copy is per call site, so modules sharing a TorchScript
// type (equal Sequential blocks, say) are still told apart by their paths.
// It also notes, for each softmax and each fused attention, the innermost
// module whose forward computes it, and each module's first tensor argument
// (for attention).
class Inliner {
 public:
  Inliner(Instrumented& out, const std::function<bool(const std::string&)>& want_tap)
      : out_(out), want_tap_(want_tap), g_(*out.graph), self_(g_.inputs().at(0)) {}

  void run() {
    first_input_[""] = g_.inputs().at(1);
    torch::jit::Block* b = g_.block();
    range(b->nodes().front(), b->return_node(), "");
  }
  const std::unordered_map<Node*, std::string>& attention_owner() const { return attention_owner_; }
  const std::unordered_map<std::string, Value*>& first_input() const { return first_input_; }

 private:
  void range(Node* first, Node* end, const std::string& owner) {
    std::vector<Node*> nodes;
    for (Node* n = first; n != end; n = n->next()) nodes.push_back(n);
    for (Node* n : nodes) visit(n, owner);
  }

  void visit(Node* n, const std::string& owner) {
    if (n->kind() == c10::prim::CallMethod) {
      call_method(n, owner);
    } else if (n->kind() == c10::prim::CallFunction) {
      auto type = n->input(0)->type()->cast<c10::FunctionType>();
      torch::jit::GraphFunction* fn = type ? torch::jit::tryToGraphFunction(*type->function())
                                           : nullptr;
      if (!fn) return;
      n->removeInput(0);
      Node* before = n->prev();
      Node* after = n->next();
      torch::jit::inlineCallTo(n, fn, false);
      range(before->next(), after, owner);
    } else {
      for (torch::jit::Block* b : n->blocks()) range(b->nodes().front(), b->return_node(), owner);
      if (n->kind() == c10::aten::softmax || n->kind() == fused_attention()) {
        attention_owner_[n] = owner;
      }
    }
  }

  void call_method(Node* n, const std::string& owner) {
    auto cls = n->input(0)->type()->cast<c10::ClassType>();
    if (!cls) return;
    const std::string method = n->s(c10::attr::name);
    std::optional<std::string> path = module_path(n->input(0), self_);
    // Overloaded forwards (DenseNet's dense layers) compile to forward__N.
    const bool is_forward = method == "forward" || method.rfind("forward__", 0) == 0;
    if (is_forward && path && !path->empty() && want_tap_(*path) && n->outputs().size() == 1 &&
        n->output()->type()->isSubtypeOf(*c10::TensorType::get())) {
      std::optional<size_t> slot = out_.slot(*path);
      if (!slot) {
        slot = out_.slot_paths.size();
        out_.slot_paths.push_back(*path);
        out_.slot_types.push_back(cls->name() ? cls->name()->name() : "?");
      }
      WithInsertPoint guard(n->next());
      Value* tapped = g_.insert(c10::Symbol::fromQualString("cnnviz::tap"),
                                {n->output(), static_cast<int64_t>(*slot), true});
      n->output()->replaceAllUsesWith(tapped);
      tapped->node()->replaceInput(0, n->output());
    }
    const std::string inner = path && is_forward ? *path : owner;
    if (path && is_forward && n->inputs().size() > 1 &&
        n->input(1)->type()->isSubtypeOf(*c10::TensorType::get())) {
      first_input_[inner] = n->input(1);
    }
    Node* before = n->prev();
    Node* after = n->next();
    // false: the callee's own graph, whose module calls are still visible (the
    // "optimized" graph would be inlined already, module boundaries lost).
    torch::jit::inlineCallTo(n, &torch::jit::toGraphFunction(cls->getMethod(method)), false);
    range(before->next(), after, inner);
  }

  Instrumented& out_;
  const std::function<bool(const std::string&)>& want_tap_;
  Graph& g_;
  Value* self_;
  std::unordered_map<Node*, std::string> attention_owner_;
  std::unordered_map<std::string, Value*> first_input_;
};

// nn.MultiheadAttention's fused inference path (one operator, with no
// backward, that forms the weights only when asked) is taken only when its
// checks pass at run time. Cuts off the branch that holds `fused`, leaving
// the explicit computation.
void cut_fused_branch(Graph& g, Node* fused) {
  Node* branch = fused->owningBlock()->owningNode();
  if (!branch || branch->kind() != c10::prim::If) return;
  const bool in_then = branch->blocks().at(0) == fused->owningBlock();
  WithInsertPoint guard(branch);
  branch->replaceInput(0, g.insertConstant(!in_then));
}

void take_explicit_attention(Graph& g) {
  for (Node* n : all_nodes(g)) {
    if (n->kind() == fused_attention()) cut_fused_branch(g, n);
  }
}

// The argument positions of _native_multi_head_attention's flags.
constexpr size_t kNeedWeights = 10, kAverageWeights = 11;

std::optional<bool> constant_bool(Value* v) {
  std::optional<c10::IValue> iv = torch::jit::toIValue(v);
  if (!iv || !iv->isBool()) return std::nullopt;
  return iv->toBool();
}

// Without backward passes, the fused path may stay: where the model asks it
// for no weights, it is asked for them per head (what the model reads of its
// output is unchanged; the weights, which it did not ask for, go to the
// tap). Where it asks for weights averaged over the heads, the branch is
// cut off as with backward passes. Returns the fused attentions that form
// per-head weights, as their second output.
std::set<Node*> ask_fused_for_weights(Graph& g) {
  std::set<Node*> asked;
  for (Node* n : all_nodes(g)) {
    if (n->kind() != fused_attention() || n->inputs().size() <= kAverageWeights) continue;
    const std::optional<bool> need = constant_bool(n->input(kNeedWeights));
    const std::optional<bool> average = constant_bool(n->input(kAverageWeights));
    if (need == false) {
      WithInsertPoint guard(n);
      n->replaceInput(kNeedWeights, g.insertConstant(true));
      n->replaceInput(kAverageWeights, g.insertConstant(false));
      asked.insert(n);
    } else if (need == true && average == false) {
      asked.insert(n);
    } else {
      cut_fused_branch(g, n);
    }
  }
  return asked;
}

// Whether softmax `n` is an attention's: its result (through dropout, in
// training) is the first operand of a product with the values.
bool weighs_values(Node* n) {
  std::vector<Value*> frontier = {n->output()};
  for (size_t depth = 0; depth < 3 && !frontier.empty(); ++depth) {
    std::vector<Value*> next;
    for (Value* v : frontier) {
      for (const torch::jit::Use& use : v->uses()) {
        const c10::Symbol k = use.user->kind();
        if ((k == c10::aten::bmm || k == c10::aten::matmul) && use.offset == 0) return true;
        if (k == c10::aten::dropout || k == c10::prim::If || k == c10::prim::Return) {
          for (Value* o : use.user->outputs()) next.push_back(o);
        }
        if (k == c10::prim::Return) {  // a block's output: the If node's
          Node* owner = use.user->owningBlock()->owningNode();
          if (owner) next.push_back(owner->output(use.offset));
        }
      }
    }
    frontier = std::move(next);
  }
  return false;
}

// Taps each attention's weights (a softmax's, or a fused attention's in
// `fused`) and its module's first input. Attentions of one module share its
// slots: the branches of an `if` (nn.MultiheadAttention has two ways to the
// same attention) run one at a time, and a module that attends twice in one
// pass is seen running twice.
void tap_attention(Instrumented& out, const Inliner& inliner, const std::set<Node*>& fused) {
  Graph& g = *out.graph;
  const c10::Symbol tap = c10::Symbol::fromQualString("cnnviz::tap");
  std::set<std::string> input_tapped;
  for (Node* n : all_nodes(g)) {
    const bool is_fused = fused.count(n) > 0;
    if (!is_fused && (n->kind() != c10::aten::softmax || !weighs_values(n))) continue;
    auto owner = inliner.attention_owner().find(n);
    if (owner == inliner.attention_owner().end()) continue;
    const std::string path = owner->second.empty() ? "(model)" : owner->second;
    auto known = std::find_if(out.attention.begin(), out.attention.end(),
                              [&](const Instrumented::Attention& a) { return a.path == path; });
    if (known == out.attention.end()) {
      Instrumented::Attention a;
      a.path = path;
      const std::string name = std::string(kAttentionLayers) + " " + path;
      a.weights_slot = out.slot_paths.size();
      out.slot_paths.push_back(name);
      out.slot_types.push_back("softmax");
      a.input_slot = out.slot_paths.size();
      out.slot_paths.push_back(name + " input");
      out.slot_types.push_back("input");
      out.attention.push_back(a);
      known = out.attention.end() - 1;
    }
    {
      Value* weights = is_fused ? n->output(1) : n->output();
      WithInsertPoint guard(n->next());
      Value* tapped = g.insert(tap, {weights, static_cast<int64_t>(known->weights_slot), true});
      weights->replaceAllUsesWith(tapped);
      tapped->node()->replaceInput(0, weights);
    }
    auto input = inliner.first_input().find(owner->second);
    if (input != inliner.first_input().end() && input_tapped.insert(path).second) {
      // Right after the input is formed, so that every later reader reads the tap.
      Value* v = input->second;
      WithInsertPoint guard(v->node()->kind() == c10::prim::Param ? g.block()->nodes().front()
                                                                   : v->node()->next());
      Value* tapped = g.insert(tap, {v, static_cast<int64_t>(known->input_slot), true});
      v->replaceAllUsesAfterNodeWith(tapped->node(), tapped);
    }
  }
}

// With `attention`: the attentions are tapped, read from the fused path
// where there is no backward (`backward` false), else from the explicit one.
void inline_and_tap(Instrumented& out, const std::function<bool(const std::string&)>& want_tap,
                    bool attention, bool backward) {
  Inliner inliner(out, want_tap);
  inliner.run();
  torch::jit::Inline(*out.graph);  // anything left (calls with no graph of their own)
  if (attention && backward) take_explicit_attention(*out.graph);
  // Fold `if inplace:` branches of functional activations and the like.
  torch::jit::ConstantPropagation(out.graph);
  std::set<Node*> fused;
  if (attention && !backward) fused = ask_fused_for_weights(*out.graph);
  torch::jit::EliminateDeadCode(out.graph);
  if (attention) tap_attention(out, inliner, fused);
}

// A tap on the input of the classifier's global average pooling (CAM).
void tap_global_pool(Instrumented& out) {
  Graph& g = *out.graph;
  Node* pool = find_global_pool(g);
  if (!pool) return;
  WithInsertPoint guard(pool);
  const size_t slot = out.slot_paths.size();
  out.slot_paths.push_back(kGlobalPoolInput);
  out.slot_types.push_back(pool->kind().toUnqualString());
  Value* tapped = g.insert(c10::Symbol::fromQualString("cnnviz::tap"),
                           {pool->input(0), static_cast<int64_t>(slot), true});
  pool->replaceInput(0, tapped);
}

// Max-pooling with a backward that follows the mode (DeepLIFT's rule).
void rewrite_max_pools(Graph& g, GraphReport& report) {
  const c10::Symbol max_pool = c10::Symbol::fromQualString("cnnviz::max_pool2d");
  for (Node* n : all_nodes(g)) {
    if (n->kind() != c10::aten::max_pool2d || n->inputs().size() != 6) continue;
    WithInsertPoint guard(n);
    Node* pool = g.insertNode(g.create(max_pool, n->inputs(), 1));
    pool->output()->setType(n->output()->type());
    n->output()->replaceAllUsesWith(pool->output());
    n->destroy();
    ++report.max_pools;
  }
}

// Every ReLU and ReLU6 becomes cnnviz's, whose backward follows the pass's
// mode; other activations are counted as unguided.
void rewrite_activations(Graph& g, GraphReport& report) {
  const c10::Symbol relu = c10::Symbol::fromQualString("cnnviz::relu");
  const c10::Symbol relu6 = c10::Symbol::fromQualString("cnnviz::relu6");
  const c10::Symbol relu6_in_place = c10::Symbol::fromQualString("aten::relu6_");
  for (Node* n : all_nodes(g)) {
    const bool is_relu = n->kind() == c10::aten::relu || n->kind() == c10::aten::relu_;
    const bool is_relu6 =
        n->kind() == c10::aten::relu6 || n->kind() == relu6_in_place || is_relu6_hardtanh(n);
    if (is_relu || is_relu6) {
      const bool in_place = n->kind() == c10::aten::relu_ || n->kind() == relu6_in_place ||
                            n->kind() == c10::aten::hardtanh_;
      WithInsertPoint guard(n);
      Value* r = g.insert(is_relu ? relu : relu6, {n->input(0)});
      // Later readers of an in-place activation's input expect the new value.
      if (in_place) n->input(0)->replaceAllUsesAfterNodeWith(n, r);
      n->output()->replaceAllUsesWith(r);
      n->destroy();
      ++(is_relu ? report.guided_relus : report.guided_relu6s);
    } else if (unguided_kinds().count(n->kind().toQualString())) {
      ++report.unguided[n->kind().toQualString()];
    }
  }
}

// A tap copies the layer's output only where the graph writes in place to
// it, to an alias of it, or to what the tap returns (or a view of that):
// the JIT's alias analysis answers, conservatively. Elsewhere the copy
// would cost a pass over every tapped activation (3.7 GB for VGG16's 31
// stages at batch 32) for nothing.
void drop_needless_tap_copies(Instrumented& out) {
  Graph& g = *out.graph;
  const c10::Symbol tap = c10::Symbol::fromQualString("cnnviz::tap");
  torch::jit::AliasDb aliases(out.graph);
  for (Node* n : all_nodes(g)) {
    if (n->kind() != tap) continue;
    if (aliases.hasWriters(n->input(0)) || aliases.hasWriters(n->output())) {
      ++out.report.copied_taps;
      continue;
    }
    WithInsertPoint guard(n);
    n->replaceInput(2, g.insertConstant(false));
  }
}

Instrumented instrument(const torch::jit::Module& module,
                        const std::function<bool(const std::string&)>& want_tap, bool lrp = false,
                        bool attention = false, bool backward = true) {
  ops::ensure_registered();
  Instrumented out;
  out.graph = module.get_method("forward").graph()->copy();
  inline_and_tap(out, want_tap, attention, backward);
  if (want_tap(kGlobalPoolInput)) tap_global_pool(out);
  if (lrp) rewrite_for_lrp(*out.graph, out.report);
  rewrite_max_pools(*out.graph, out.report);
  rewrite_activations(*out.graph, out.report);
  drop_needless_tap_copies(out);
  // For debugging the instrumentation: CNNVIZ_DUMP_GRAPH=1 prints the graph.
  if (const char* dump = std::getenv("CNNVIZ_DUMP_GRAPH"); dump && *dump == '1') {
    std::cerr << *out.graph;
  }
  out.function = std::make_unique<torch::jit::GraphFunction>(
      "cnnviz_instrumented_forward", out.graph, nullptr, torch::jit::ExecutorExecutionMode::SIMPLE);
  return out;
}

// The proposals a two-stage detector's forward returns second.
at::Tensor proposals_of(const c10::IValue& out, const std::string& path) {
  if (out.isTuple() && out.toTupleRef().elements().size() == 2 &&
      out.toTupleRef().elements()[1].isTensor()) {
    return out.toTupleRef().elements()[1].toTensor().detach();
  }
  throw Error(ErrorCode::kModel, "model '" + path + "': its metadata says it takes proposals, "
                                 "but its forward does not return (predictions, proposals)");
}

// A two-stage detector (`proposals` true) also takes the proposals its
// second stage scores: `fixed`, or None for its own from the first image.
c10::IValue call(const Instrumented& inst, const torch::jit::Module& module, const at::Tensor& x,
                 const std::string& path, bool proposals = false,
                 const at::Tensor& fixed = at::Tensor()) {
  simulate_out_of_memory(x.size(0));
  try {
    if (proposals) {
      return (*inst.function)(
          {module._ivalue(), x, fixed.defined() ? c10::IValue(fixed) : c10::IValue()});
    }
    return (*inst.function)({module._ivalue(), x});
  } catch (const c10::OutOfMemoryError& e) {
    throw OutOfMemory("model '" + path + "': out of memory on " + x.device().str() +
                      " for a batch of " + std::to_string(x.size(0)));
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kRuntime, "model '" + path + "': forward pass failed (" +
                                         first_line(e.what_without_backtrace()) + ")");
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kRuntime, "model '" + path + "': forward pass failed (" +
                                         torch_error_summary(e.what()) + ")");
  }
}

// The taps and ReLU modes are process-wide, so passes cannot overlap.
constexpr const char* kBusy =
    "engine: another capture pass is still alive in this process (destroy it first)";


}  // namespace

std::vector<std::string> near_matches(const std::string& name,
                                      const std::vector<std::string>& candidates, size_t max) {
  std::vector<std::pair<size_t, std::string>> scored;
  for (const std::string& c : candidates) {
    size_t prefix = 0;
    while (prefix < c.size() && prefix < name.size() && c[prefix] == name[prefix]) ++prefix;
    // Edit distance first; a long shared prefix breaks ties.
    scored.emplace_back(edit_distance(name, c) * 1000 + (1000 - std::min<size_t>(prefix, 999)), c);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> best;
  for (size_t i = 0; i < scored.size() && i < max; ++i) best.push_back(scored[i].second);
  return best;
}

struct Engine::Impl {
  Impl(const Model& m, const std::vector<std::string>& l, std::optional<Unit> u, bool with_lrp,
       bool with_backward)
      : model(m), layers(l), unit(std::move(u)), lrp(with_lrp), backward(with_backward) {}
  Model model;
  Instrumented inst;
  std::vector<std::string> layers;
  std::vector<size_t> slots;  // per layer
  std::optional<Unit> unit;
  int64_t unit_slot = -1;
  bool lrp = false;
  bool backward = true;  // passes record the autograd graph for backward passes
  bool keep_outputs = false, stop = false, grad = true;
};

struct Pass::Impl {
  std::unique_lock<std::mutex> lock;  // not held by nested passes
  const Engine::Impl* engine = nullptr;
  ops::TapRecorder recorder;
  ops::TapRecorder* outer = nullptr;  // the enclosing pass's recorder, if nested
  at::Tensor input;                   // requires grad
  at::Tensor logits;                  // attached to the autograd graph
  at::Tensor logits_detached;
  at::Tensor explained;  // what backward differentiates: the logits, or the unit's value
  at::Tensor explained_detached;
  at::Tensor region;  // a segmenter's: the pixels its targets count (Engine::run)
  at::Tensor labels;  // a segmenter's: each pixel's class, -1 outside the region
  DetectSettings detect;                             // a detector's
  std::vector<std::vector<Detection>> detections;    // a detector's, per image
  DetectionGroups groups;                            // a detector's targets, per image
  at::Tensor proposals;  // a two-stage detector's (ModelInfo::proposals), from the first pass
  bool detector = false;
  bool paired = false;
  bool stopped = false;  // the forward pass ended at the last kept layer

  ~Impl() { ops::set_recorder(outer); }
};

namespace {

// The value of `v` when it is `self` or a chain of GetAttr from it (a
// parameter, a submodule); nullopt otherwise.
std::optional<c10::IValue> attribute_value(Value* v, Value* self, const c10::IValue& module) {
  if (v == self) return module;
  Node* n = v->node();
  if (n->kind() != c10::prim::GetAttr) return std::nullopt;
  std::optional<c10::IValue> parent = attribute_value(n->input(0), self, module);
  if (!parent || !parent->isObject()) return std::nullopt;
  return parent->toObject()->getAttr(n->s(c10::attr::name));
}

// The constant value of `v`, also through what F.max_pool2d's `if stride is
// None` leaves when it is not folded: an If on `x is None` of a constant x,
// and unchecked_cast. (The resnet50 export's pooling has that If too; the
// squeezenet1_1 one's made toIValue return the `None` branch's [].)
std::optional<c10::IValue> constant_value(Value* v) {
  Node* n = v->node();
  // Before toIValue, which reads an If as its first branch's constant.
  if (n->kind() != c10::prim::If && n->kind() != c10::prim::unchecked_cast) {
    return torch::jit::toIValue(v);
  }
  if (n->kind() == c10::prim::unchecked_cast) return constant_value(n->input(0));
  if (n->kind() == c10::prim::If && n->blocks().size() == 2) {
    Node* c = n->input(0)->node();
    std::optional<bool> cond;
    if (std::optional<c10::IValue> b = torch::jit::toIValue(n->input(0)); b && b->isBool()) {
      cond = b->toBool();
    } else if ((c->kind() == c10::aten::__is__ || c->kind() == c10::aten::__isnot__) &&
               c->inputs().size() == 2) {
      std::optional<c10::IValue> a = constant_value(c->input(0));
      std::optional<c10::IValue> b = constant_value(c->input(1));
      if (a && b && (a->isNone() || b->isNone())) {
        const bool same = a->isNone() && b->isNone();
        cond = c->kind() == c10::aten::__is__ ? same : !same;
      }
    }
    if (!cond) return std::nullopt;
    return constant_value(n->blocks()[*cond ? 0 : 1]->outputs().at(v->offset()));
  }
  return std::nullopt;
}

std::vector<int64_t> int_list(Value* v, size_t dims, int64_t fallback) {
  std::optional<c10::IValue> iv = constant_value(v);

  std::vector<int64_t> out;
  if (iv && iv->isIntList()) out = iv->toIntVector();
  if (iv && iv->isInt()) out = {iv->toInt()};
  if (out.empty()) out = {fallback};
  if (out.size() == 1) out.resize(dims, out[0]);
  return out;
}

// One layer of sliding windows applied to `in`: kernel, stride, padding and
// dilation along rows and columns.
ReceptiveField slide(const ReceptiveField& in, const std::vector<int64_t>& kernel,
                     const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                     const std::vector<int64_t>& dilation) {
  ReceptiveField out = in;
  if (in.global) return out;
  for (int a = 0; a < 2; ++a) {
    out.size[a] = in.size[a] + (kernel[a] - 1) * dilation[a] * in.stride[a];
    out.start[a] = in.start[a] - padding[a] * in.stride[a];
    out.stride[a] = in.stride[a] * stride[a];
  }
  return out;
}

ReceptiveField merge_fields(const std::vector<ReceptiveField>& fields) {
  ReceptiveField out = fields.at(0);
  for (const ReceptiveField& f : fields) {
    if (f.global) return f;
    for (int a = 0; a < 2; ++a) {
      const int64_t end = std::max(out.start[a] + out.size[a], f.start[a] + f.size[a]);
      out.start[a] = std::min(out.start[a], f.start[a]);
      out.size[a] = end - out.start[a];
      out.stride[a] = std::max(out.stride[a], f.stride[a]);
    }
  }
  return out;
}

// Operations that keep every position to itself (elementwise, per-position
// normalizations in eval mode, concatenation along channels, the engine's own
// operators).
const std::set<std::string>& positionwise_kinds() {
  static const std::set<std::string> kinds = {
      "aten::relu",          "aten::relu_",       "cnnviz::relu",        "cnnviz::relu6",
      "cnnviz::tap",         "aten::relu6",       "aten::hardtanh",      "aten::hardtanh_",
      "aten::batch_norm",    "aten::add",         "aten::add_",          "aten::sub",
      "aten::mul",           "aten::mul_",        "aten::div",           "aten::cat",
      "aten::sigmoid",       "aten::sigmoid_",    "aten::silu",          "aten::silu_",
      "aten::hardswish",     "aten::hardswish_",  "aten::hardsigmoid",   "aten::hardsigmoid_",
      "aten::gelu",          "aten::dropout",     "aten::dropout_",      "aten::feature_dropout",
      "aten::contiguous",    "aten::clone",       "aten::clamp",         "aten::clamp_",
      "aten::leaky_relu",    "aten::leaky_relu_", "aten::elu",           "aten::tanh",
      "aten::detach",        "aten::to",          "aten::neg",           "aten::abs",
      "aten::mish",          "aten::softplus",    "aten::alpha_dropout", "prim::ListConstruct",
      "prim::TupleConstruct"};
  return kinds;
}

void propagate(torch::jit::Block* block, Value* self, const c10::IValue& module,
               std::unordered_map<Value*, ReceptiveField>& fields) {
  for (Node* n : block->nodes()) {
    for (torch::jit::Block* b : n->blocks()) propagate(b, self, module, fields);
    std::vector<ReceptiveField> in;
    for (Value* v : n->inputs()) {
      auto it = fields.find(v);
      if (it != fields.end()) in.push_back(it->second);
    }
    if (n->kind() == c10::prim::If) {
      for (size_t o = 0; o < n->outputs().size(); ++o) {
        std::vector<ReceptiveField> branches;
        for (torch::jit::Block* b : n->blocks()) {
          auto it = fields.find(b->outputs().at(o));
          if (it != fields.end()) branches.push_back(it->second);
        }
        if (!branches.empty()) fields[n->output(o)] = merge_fields(branches);
      }
      continue;
    }
    if (in.empty()) continue;
    const std::string kind = n->kind().toQualString();
    ReceptiveField out;
    const bool conv = kind == "aten::_convolution" || kind == "aten::conv2d";
    const bool max_pool = kind == "aten::max_pool2d" || kind == "cnnviz::max_pool2d";
    if (conv && n->inputs().size() >= 6) {
      std::optional<c10::IValue> w = attribute_value(n->input(1), self, module);
      std::optional<c10::IValue> pad = torch::jit::toIValue(n->input(4));
      if (!w || !w->isTensor() || w->toTensor().dim() != 4) {
        out.global = true;
      } else {
        const at::Tensor weight = w->toTensor();
        const std::vector<int64_t> kernel = {weight.size(2), weight.size(3)};
        const std::vector<int64_t> stride = int_list(n->input(3), 2, 1);
        const std::vector<int64_t> dilation = int_list(n->input(5), 2, 1);
        std::vector<int64_t> padding;
        if (pad && pad->isString()) {  // "same" or "valid"
          for (int a = 0; a < 2; ++a) {
            padding.push_back(pad->toStringRef() == "same" ? dilation[a] * (kernel[a] - 1) / 2 : 0);
          }
        } else {
          padding = int_list(n->input(4), 2, 0);
        }
        const bool transposed = kind == "aten::_convolution" && torch::jit::toIValue(n->input(6)) &&
                                torch::jit::toIValue(n->input(6))->toBool();
        if (transposed) {
          out.global = true;
        } else {
          out = slide(in[0], kernel, stride, padding, dilation);
        }
      }
    } else if ((max_pool || kind == "aten::avg_pool2d") && n->inputs().size() >= 4) {
      const std::vector<int64_t> kernel = int_list(n->input(1), 2, 1);
      std::vector<int64_t> stride = int_list(n->input(2), 2, 0);
      if (stride[0] == 0) stride = kernel;  // an empty stride is the kernel
      const std::vector<int64_t> padding = int_list(n->input(3), 2, 0);
      const std::vector<int64_t> dilation = max_pool && n->inputs().size() >= 5
                                                ? int_list(n->input(4), 2, 1)
                                                : std::vector<int64_t>{1, 1};
      out = slide(in[0], kernel, stride, padding, dilation);
    } else if (positionwise_kinds().count(kind)) {
      out = merge_fields(in);
    } else {
      out.global = true;  // adaptive pooling, means, reshapes, attention: everything
    }
    // Tensors, and the lists that carry them to a concatenation (not lists
    // of sizes: the shape of a map does not mix its positions).
    const bool pack = kind == "prim::ListConstruct" || kind == "prim::TupleConstruct";
    for (Value* o : n->outputs()) {
      if (pack || o->type()->isSubtypeOf(*c10::TensorType::get())) fields[o] = out;
    }
  }
}

}  // namespace

// The field holds for any input size: where a stride does not divide the
// input, the last rows or columns that no window reaches stay inside the
// clipped field of the last position (squeezenet1_1 never reads the last row
// of a 224-pixel input).
ReceptiveField receptive_field(const Model& model, const std::string& layer) {
  Instrumented inst = instrument(model.module(), [&](const std::string& p) { return p == layer; });
  if (!inst.slot(layer)) {
    throw Error(ErrorCode::kUnsupported, "layer '" + layer + "' not found in model '" +
                                             model.info().name + "' (`cnnviz layers -m " +
                                             model.info().name + "` lists them all)");
  }
  Graph& g = *inst.graph;
  std::unordered_map<Value*, ReceptiveField> fields;
  fields[g.inputs().at(1)] = ReceptiveField{};
  propagate(g.block(), g.inputs().at(0), model.module()._ivalue(), fields);
  const c10::Symbol tap = c10::Symbol::fromQualString("cnnviz::tap");
  for (Node* n : all_nodes(g)) {
    if (n->kind() != tap) continue;
    auto it = fields.find(n->output());
    if (it != fields.end()) return it->second;
  }
  ReceptiveField rf;
  rf.global = true;
  return rf;
}

PixelBox receptive_box(const ReceptiveField& rf, int64_t y, int64_t x, int64_t height,
                       int64_t width) {
  if (rf.global) return {0, 0, height, width};
  const int64_t pos[2] = {y, x}, limit[2] = {height, width};
  int64_t lo[2], hi[2];
  for (int a = 0; a < 2; ++a) {
    const int64_t first = rf.start[a] + pos[a] * rf.stride[a];
    lo[a] = std::clamp<int64_t>(first, 0, limit[a]);
    hi[a] = std::clamp<int64_t>(first + rf.size[a], 0, limit[a]);
  }
  return {lo[0], lo[1], hi[0], hi[1]};
}

Engine::Engine(const Model& model, const std::vector<std::string>& layers, std::optional<Unit> unit,
               bool lrp, bool backward)
    : impl_(std::make_unique<Impl>(model, layers, std::move(unit), lrp, backward)) {
  std::set<std::string> wanted(layers.begin(), layers.end());
  std::vector<std::string> located = layers;  // the layers, then the unit's
  if (impl_->unit) {
    wanted.insert(impl_->unit->layer);
    located.push_back(impl_->unit->layer);
  }
  impl_->inst = instrument(
      model.module(), [&](const std::string& p) { return wanted.count(p) > 0; }, lrp,
      wanted.count(kAttentionLayers) > 0, backward);
  for (size_t i = 0; i < located.size(); ++i) {
    const std::string& layer = located[i];
    std::optional<size_t> slot = impl_->inst.slot(layer);
    if (layer == kAttentionLayers) {
      if (impl_->inst.attention.empty()) {
        throw Error(ErrorCode::kUnsupported,
                    "model '" + model.info().name +
                        "' has no attention (no softmax whose result weighs values)");
      }
      slot = impl_->inst.attention.front().weights_slot;
    }
    if (!slot && layer == kGlobalPoolInput) {
      throw Error(ErrorCode::kUnsupported,
                  "model '" + model.info().name +
                      "' has no global average pooling before its classifier (CAM needs one; "
                      "Grad-CAM works on any model)");
    }
    if (!slot) {
      Instrumented all = instrument(model.module(), [](const std::string&) { return true; });
      std::string hint;
      for (const std::string& m : near_matches(layer, all.slot_paths)) {
        hint += (hint.empty() ? "" : ", ") + m;
      }
      const std::string subject = i < layers.size() ? "layer '" + layer + "'"
                                                    : "--unit '" + impl_->unit->spec() + "': layer";
      const std::string onnx =
          is_onnx_path(model.info().path) ? ", and any value name of its graph is one too" : "";
      throw Error(ErrorCode::kUnsupported, subject + " not found in model '" + model.info().name +
                                               "' (nearest: " + hint + "; `cnnviz layers -m " +
                                               model.info().name + "` lists them all" + onnx +
                                               ")");
    }
    if (i < layers.size()) {
      impl_->slots.push_back(*slot);
    } else {
      impl_->unit_slot = static_cast<int64_t>(*slot);
    }
  }
  // Gradients flow to the input only: the weights are constants here.
  for (at::Tensor p : model.module().parameters()) p.set_requires_grad(false);
}

Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;

const GraphReport& Engine::report() const { return impl_->inst.report; }
const std::vector<std::string>& Engine::layers() const { return impl_->layers; }
const std::optional<Unit>& Engine::unit() const { return impl_->unit; }

void Engine::keep_outputs(bool stop, bool grad) {
  if (impl_->unit) throw Error(ErrorCode::kRuntime, "engine: keep_outputs with a --unit engine");
  impl_->keep_outputs = true;
  impl_->stop = stop;
  impl_->grad = grad;
}

Engine::Description Engine::describe(const Model& model) {
  Instrumented inst = instrument(model.module(), [](const std::string&) { return true; });
  const int crop = model.info().preprocess.square_side();
  std::unique_lock<std::mutex> lock(ops::lock(), std::try_to_lock);
  if (!lock.owns_lock()) throw Error(ErrorCode::kRuntime, kBusy);
  ops::TapRecorder recorder;
  recorder.reset(inst.slot_paths.size());
  ops::set_recorder(&recorder);
  try {
    c10::InferenceMode no_grad;
    call(inst, model.module(),
         at::zeros({1, model.info().preprocess.channels, crop, crop}, model.device()),
         model.info().path, model.info().proposals);
  } catch (...) {
    ops::set_recorder(nullptr);
    throw;
  }
  ops::set_recorder(nullptr);
  Description d;
  d.report = inst.report;
  for (size_t s = 0; s < inst.slot_paths.size(); ++s) {
    LayerInfo info{inst.slot_paths[s], inst.slot_types[s], {}, recorder.forward_calls[s]};
    if (recorder.activations[s].defined()) {
      info.shape = recorder.activations[s].sizes().vec();
    }
    d.layers.push_back(std::move(info));
  }
  // Forward order: by first call; layers that never ran go last.
  std::vector<size_t> order(d.layers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto rank = [&](size_t i) {
    return recorder.first_call[i] < 0 ? INT32_MAX : recorder.first_call[i];
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return rank(a) < rank(b); });
  std::vector<LayerInfo> sorted;
  for (size_t i : order) sorted.push_back(std::move(d.layers[i]));
  d.layers = std::move(sorted);
  return d;
}

Pass Engine::run(const at::Tensor& batch, bool paired, const at::Tensor& region,
                 const DetectSettings& detect) const {
  if (paired && batch.size(0) % 2 != 0) {
    throw Error(ErrorCode::kRuntime, "engine: a paired pass needs an even batch");
  }
  if (impl_->model.info().proposals && batch.size(0) > (paired ? 2 : 1)) {
    throw Error(ErrorCode::kRuntime, "engine: a two-stage detector takes one image per pass");
  }
  auto p = std::make_unique<Pass::Impl>();
  p->lock = std::unique_lock<std::mutex>(ops::lock(), std::try_to_lock);
  if (!p->lock.owns_lock()) throw Error(ErrorCode::kRuntime, kBusy);
  p->region = region;
  p->detect = detect;
  Pass::start(*p, *impl_, batch, paired);
  return Pass(std::move(p));
}

const Model& Engine::model() const { return impl_->model; }

void Pass::start(Impl& p, const Engine::Impl& engine, const at::Tensor& batch, bool paired) {
  p.engine = &engine;
  p.paired = paired;
  p.recorder.reset(engine.inst.slot_paths.size());
  if (engine.unit_slot >= 0) p.recorder.keep[static_cast<size_t>(engine.unit_slot)] = 1;
  if (engine.keep_outputs) {
    for (size_t slot : engine.slots) p.recorder.keep[slot] = 1;
    if (engine.stop) {
      p.recorder.stop_after = static_cast<int>(
          std::count(p.recorder.keep.begin(), p.recorder.keep.end(), static_cast<char>(1)));
    }
  }
  ops::set_recorder(&p.recorder);
  ops::set_relu_mode(ops::ReluMode::kPlain);
  // Reading activations only: inference mode, where the operators run their
  // plain kernels (no autograd bookkeeping), as Model::logits does.
  std::optional<c10::InferenceMode> inference;
  if (!engine.grad) inference.emplace();
  // Without backward passes: no autograd graph either, in plain tensors.
  const bool graph = engine.grad && engine.backward;
  torch::AutoGradMode grad(graph);
  p.input = graph ? batch.detach().to(engine.model.device()).clone().requires_grad_(true)
                  : batch.to(engine.model.device());
  ops::set_paired(paired);
  c10::IValue out;
  try {
    out = call(engine.inst, engine.model.module(), p.input, engine.model.info().path,
               engine.model.info().proposals, p.proposals);
  } catch (...) {
    ops::set_paired(false);
    if (!p.recorder.stopped) throw;
    p.stopped = true;
  }
  ops::set_paired(false);
  if (p.stopped) return;
  const ModelInfo& info = engine.model.info();
  if (info.task == Task::kDetect) {
    score_detections(p, engine, out);
    return;
  }
  if (info.task == Task::kSegment) {
    const at::Tensor pixels = pixel_logits_of(out, info.path);
    check_output_classes(info, pixels.size(1));
    if (!p.labels.defined()) {
      // A paired pass's references are scored over the inputs' labels.
      const int64_t n = p.paired ? pixels.size(0) / 2 : pixels.size(0);
      p.labels = pixel_labels(pixels.slice(0, 0, n), p.region);
      if (p.paired) p.labels = at::cat({p.labels, p.labels});
    }
    p.logits = class_scores(pixels, p.labels);
    p.logits_detached = log_area_shares(p.labels, pixels.size(1));
    p.explained = engine.unit ? unit_value(p, engine) : p.logits;
    p.explained_detached = p.explained.detach().to(at::kCPU);
    return;
  }
  p.logits = logits_of(out, info.path);
  p.logits_detached = p.logits.detach().to(at::kCPU);
  check_output_classes(info, p.logits.size(1));
  p.explained = engine.unit ? unit_value(p, engine) : p.logits;
  p.explained_detached = engine.unit ? p.explained.detach().to(at::kCPU) : p.logits_detached;
}

void Pass::score_detections(Impl& p, const Engine::Impl& engine, const c10::IValue& out) {
  const ModelInfo& info = engine.model.info();
  if (info.proposals && !p.proposals.defined()) p.proposals = proposals_of(out, info.path);
  const at::Tensor rows = prediction_rows(raw_predictions_of(out, info.path), info.layout,
                                          known_classes(info), info.path);
  if (!p.detector) {
    // A paired pass's references are scored at the inputs' detections.
    const int64_t n = p.paired ? rows.size(0) / 2 : rows.size(0);
    p.detections = decode_rows(rows.slice(0, 0, n), p.detect);
    p.groups = cnnviz::detection_groups(p.detections, p.detect);
    if (p.paired) {  // copies first: a vector cannot insert its own elements
      const std::vector<std::vector<Detection>> detections = p.detections;
      const DetectionGroups groups = p.groups;
      p.detections.insert(p.detections.end(), detections.begin(), detections.end());
      p.groups.insert(p.groups.end(), groups.begin(), groups.end());
    }
    p.detector = true;
  }
  p.logits = detection_scores(rows, p.detections, p.groups, 0.0);
  p.logits_detached = detection_scores(rows.detach(), p.detections, p.groups,
                                       -std::numeric_limits<double>::infinity())
                          .to(at::kCPU, at::kFloat);
  p.explained = engine.unit ? unit_value(p, engine) : p.logits;
  p.explained_detached = p.explained.detach().to(at::kCPU);
}

at::Tensor Pass::unit_value(Impl& p, const Engine::Impl& engine) {
  const Unit& u = *engine.unit;
  const size_t slot = static_cast<size_t>(engine.unit_slot);
  const int calls = p.recorder.forward_calls[slot];
  if (calls != 1 || !p.recorder.kept[slot].defined()) {
    throw Error(ErrorCode::kUnsupported, "--unit '" + u.spec() + "': layer '" + u.layer +
                                             "' runs " + std::to_string(calls) +
                                             " times in one forward pass (pick a layer that "
                                             "runs once)");
  }
  const at::Tensor map = to_feature_map(p.recorder.kept[slot], u.layer, engine.model.info().name);
  const int64_t c = map.size(1), h = map.size(2), w = map.size(3);
  check_unit_range(u, c, h, w);
  const at::Tensor channel = map.select(1, u.channel);  // [N,h,w]
  at::Tensor v = u.neuron() ? channel.select(1, u.y).select(1, u.x) : channel.mean({1, 2});
  return v.unsqueeze(1);
}

Pass Pass::nested(const at::Tensor& batch, const std::vector<int64_t>& rows) const {
  if (static_cast<int64_t>(rows.size()) != batch.size(0)) {
    throw Error(ErrorCode::kRuntime, "engine: a nested pass needs one image row per input");
  }
  auto p = std::make_unique<Pass::Impl>();
  p->outer = &impl_->recorder;
  if (impl_->labels.defined()) {
    p->labels = impl_->labels.index_select(
        0, at::tensor(rows, at::kLong).to(impl_->labels.device()));
  }
  p->proposals = impl_->proposals;  // a two-stage detector's: its one image's
  if (impl_->detector) {
    for (int64_t r : rows) {
      p->detections.push_back(impl_->detections.at(static_cast<size_t>(r)));
      p->groups.push_back(impl_->groups.at(static_cast<size_t>(r)));
    }
    p->detector = true;
  }
  start(*p, *impl_->engine, batch, false);
  return Pass(std::move(p));
}

Pass::Pass(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pass::~Pass() = default;
Pass::Pass(Pass&&) noexcept = default;

const at::Tensor& Pass::logits() const { return impl_->logits_detached; }
const at::Tensor& Pass::explained() const { return impl_->explained_detached; }
const at::Tensor& Pass::input() const { return impl_->input; }
const at::Tensor& Pass::proposals() const { return impl_->proposals; }
const at::Tensor& Pass::labels() const { return impl_->labels; }
const std::vector<std::vector<Detection>>& Pass::detections() const { return impl_->detections; }
const DetectionGroups& Pass::detection_groups() const { return impl_->groups; }

const at::Tensor& Pass::output(size_t i) const {
  if (!impl_->engine->keep_outputs) {
    throw Error(ErrorCode::kRuntime, "engine: output() needs an engine with keep_outputs");
  }
  const size_t slot = impl_->engine->slots.at(i);
  const int calls = impl_->recorder.forward_calls[slot];
  if (calls != 1 || !impl_->recorder.kept[slot].defined()) {
    throw Error(ErrorCode::kUnsupported,
                "layer '" + impl_->engine->layers[i] + "' runs " + std::to_string(calls) +
                    " times in one forward pass (pick a layer that runs once)");
  }
  return impl_->recorder.kept[slot];
}

const at::Tensor& Pass::attached_logits() const { return impl_->logits; }

at::Tensor Pass::gradient_of(const at::Tensor& objective) {
  torch::AutoGradMode grad(true);
  for (at::Tensor& g : impl_->recorder.gradients) g = at::Tensor();
  ops::set_recorder(&impl_->recorder);
  ops::set_relu_mode(ops::ReluMode::kPlain);
  std::vector<at::Tensor> grads;
  try {
    grads = torch::autograd::grad({objective}, {impl_->input}, {}, /*retain_graph=*/false,
                                  /*create_graph=*/false, /*allow_unused=*/true);
  } catch (const c10::OutOfMemoryError&) {
    throw OutOfMemory("backward pass: out of memory on " + impl_->input.device().str() +
                      " for a batch of " + std::to_string(impl_->input.size(0)));
  }
  if (!grads[0].defined()) return at::zeros_like(impl_->input);
  return grads[0];
}

const at::Tensor& Pass::activation(size_t i) const {
  const size_t slot = impl_->engine->slots.at(i);
  const int calls = impl_->recorder.forward_calls[slot];
  if (calls != 1) {
    throw Error(ErrorCode::kUnsupported,
                "layer '" + impl_->engine->layers[i] + "' runs " + std::to_string(calls) +
                    " times in one forward pass (pick a layer that runs once)");
  }
  return impl_->recorder.activations[slot];
}

at::Tensor Pass::backward(const std::vector<int64_t>& classes, Backprop mode, const Score& score) {
  const int64_t n = impl_->logits.size(0);
  if (mode == Backprop::kRescale && !impl_->paired) {
    throw Error(ErrorCode::kRuntime, "engine: the rescale rule needs a paired pass");
  }
  if (!impl_->engine->backward) {
    throw Error(ErrorCode::kRuntime, "engine: backward() on an engine built without backward passes");
  }
  torch::AutoGradMode grad(true);
  // Checks the classes (and may throw) before any process-wide state changes.
  at::Tensor target = target_scores(impl_->explained, classes, score).sum();
  for (at::Tensor& g : impl_->recorder.gradients) g = at::Tensor();
  ops::set_recorder(&impl_->recorder);
  ops::set_relu_mode(mode == Backprop::kGuided    ? ops::ReluMode::kGuided
                     : mode == Backprop::kDeconv  ? ops::ReluMode::kDeconv
                     : mode == Backprop::kRescale ? ops::ReluMode::kRescale
                     : mode == Backprop::kLrp     ? ops::ReluMode::kLrp
                                                  : ops::ReluMode::kPlain);
  std::vector<at::Tensor> grads;
  try {
    grads = torch::autograd::grad({target}, {impl_->input}, {}, /*retain_graph=*/true,
                                  /*create_graph=*/false, /*allow_unused=*/true);
  } catch (const c10::OutOfMemoryError&) {
    ops::set_relu_mode(ops::ReluMode::kPlain);
    throw OutOfMemory("backward pass: out of memory on " + impl_->input.device().str() +
                      " for a batch of " + std::to_string(n));
  } catch (...) {
    ops::set_relu_mode(ops::ReluMode::kPlain);
    throw;
  }
  ops::set_relu_mode(ops::ReluMode::kPlain);
  if (!grads[0].defined()) return at::zeros_like(impl_->input);
  return grads[0];
}

at::Tensor Pass::relevance(const std::vector<int64_t>& classes, const LrpRules& rules,
                           const Score& score) {
  if (!impl_->engine->lrp) {
    throw Error(ErrorCode::kRuntime, "engine: relevance needs an engine built for LRP");
  }
  if (!impl_->engine->backward) {
    throw Error(ErrorCode::kRuntime, "engine: relevance() on an engine built without backward passes");
  }
  ops::LrpSettings settings;
  settings.first = static_cast<int>(rules.first);
  settings.conv = static_cast<int>(rules.conv);
  settings.linear = static_cast<int>(rules.linear);
  settings.epsilon = rules.epsilon;
  settings.gamma = rules.gamma;
  settings.alpha = rules.alpha;
  settings.beta = rules.beta;
  settings.low = rules.low;
  settings.high = rules.high;
  settings.conservative_attention = rules.conservative_attention;
  ops::set_lrp(settings);
  return backward(classes, Backprop::kLrp, score);
}

std::vector<AttentionRecord> Pass::attention() const {
  const Engine::Impl& e = *impl_->engine;
  if (std::find(e.layers.begin(), e.layers.end(), kAttentionLayers) == e.layers.end()) {
    throw Error(ErrorCode::kRuntime, "engine: attention() needs an engine with kAttentionLayers");
  }
  const ops::TapRecorder& r = impl_->recorder;
  std::vector<AttentionRecord> out;
  for (const Instrumented::Attention& a : e.inst.attention) {
    AttentionRecord rec;
    rec.path = a.path;
    rec.weights = r.activations[a.weights_slot];
    rec.gradient = r.gradients[a.weights_slot];
    rec.calls = r.forward_calls[a.weights_slot];
    if (r.activations[a.input_slot].defined()) {
      rec.input_shape = r.activations[a.input_slot].sizes().vec();
    }
    out.push_back(std::move(rec));
  }
  return out;
}

const at::Tensor& Pass::gradient(size_t i) const {
  const size_t slot = impl_->engine->slots.at(i);
  const at::Tensor& g = impl_->recorder.gradients[slot];
  if (!g.defined()) {
    throw Error(ErrorCode::kUnsupported,
                "layer '" + impl_->engine->layers[i] +
                    (impl_->engine->unit ? "' received no gradient (it does not affect --unit '" +
                                               impl_->engine->unit->spec() + "')"
                                         : std::string("' received no gradient (it does not "
                                                       "affect the logits)")));
  }
  return g;
}

}  // namespace cnnviz
