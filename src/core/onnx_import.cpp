// Reading an ONNX model and rebuilding it as a scripted module (onnx.h).
//
// The graph's nodes, in their (checked) topological order, are grouped by the
// module scopes in their names: a run of consecutive nodes whose names share
// "/features/features.3/" becomes the submodule "3" of the submodule
// "features", called with the values the run reads from outside and
// returning those read after it. Each node becomes TorchScript through the
// operator table (onnx_ops.cpp); constants used by a module's nodes become
// its parameters (floating point) or buffers.
#include <fcntl.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/script.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "cnnviz/core/error.h"
#include "cnnviz/core/feature_map.h"
#include "cnnviz/core/onnx.h"
#include "onnx_ops.h"

namespace cnnviz {

namespace fs = std::filesystem;
using onnx_import::NodeCode;

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what,
                       ErrorCode code = ErrorCode::kModel) {
  throw Error(code, "ONNX model '" + path + "': " + what);
}

// The file external data names: a relative path inside the model's folder
// (`dir`), links resolved; throws Error(kModel) for any other.
fs::path external_file(const std::string& location, const std::string& dir,
                       const std::string& subject) {
  const fs::path rel(location);
  bool inside = !location.empty() && rel.is_relative();
  for (const fs::path& part : rel) inside = inside && part != "..";
  std::error_code ec;
  const fs::path folder = fs::weakly_canonical(dir.empty() ? "." : dir, ec);
  const fs::path file = fs::weakly_canonical(folder / rel, ec);
  const std::string f = file.string(), d = folder.string() + "/";
  if (!inside || ec || f.compare(0, d.size(), d) != 0) {
    throw Error(ErrorCode::kModel,
                subject + ": external data '" + location + "' is outside the model's folder");
  }
  return file;
}

// The bytes of a tensor stored outside the model (data_location EXTERNAL):
// a file in the model's folder, never outside it.
std::string external_bytes(const onnx::TensorProto& t, const std::string& dir,
                           const std::string& subject, size_t& budget) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const onnx::StringStringEntryProto& kv : t.external_data()) {
    if (kv.key() == "location") location = kv.value();
    if (kv.key() == "offset") offset = std::stoll(kv.value());
    if (kv.key() == "length") length = std::stoll(kv.value());
  }
  const fs::path file = external_file(location, dir, subject);
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  if (!in)
    throw Error(ErrorCode::kModel, subject + ": cannot read external data '" + location + "'");
  const int64_t size = static_cast<int64_t>(in.tellg());
  if (length < 0) length = size - offset;
  if (offset < 0 || length < 0 || offset > size || length > size - offset) {
    throw Error(ErrorCode::kModel,
                subject + ": external data '" + location + "': offset and length outside the file");
  }
  if (static_cast<size_t>(length) > budget) {
    throw Error(ErrorCode::kModel, subject + ": external data over the limit of " +
                                       std::to_string(kMaxOnnxExternalBytes) + " bytes");
  }
  budget -= static_cast<size_t>(length);
  std::string bytes(static_cast<size_t>(length), '\0');
  in.seekg(offset);
  in.read(bytes.data(), length);
  return bytes;
}

// A TensorProto's typed field as a tensor of `n` values.
at::Tensor typed_field(const onnx::TensorProto& t, int64_t n, at::ScalarType type,
                       const std::string& subject) {
  auto check = [&](int64_t have) {
    if (have != n) {
      throw Error(ErrorCode::kModel, subject + ": " + std::to_string(have) +
                                         " values for a shape of " + std::to_string(n));
    }
  };
  const auto opts = at::TensorOptions();
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
      check(t.float_data_size());
      return at::tensor(std::vector<float>(t.float_data().begin(), t.float_data().end()), opts);
    case onnx::TensorProto::DOUBLE:
      check(t.double_data_size());
      return at::tensor(std::vector<double>(t.double_data().begin(), t.double_data().end()), opts);
    case onnx::TensorProto::INT64:
      check(t.int64_data_size());
      return at::tensor(std::vector<int64_t>(t.int64_data().begin(), t.int64_data().end()), opts);
    default: {
      check(t.int32_data_size());
      at::Tensor v = at::tensor(std::vector<int32_t>(t.int32_data().begin(), t.int32_data().end()));
      if (type == at::kHalf || type == at::kBFloat16) {  // the bits, in the low 16
        return v.to(at::kShort).view(type);
      }
      return v.to(type);
    }
  }
}

// A TensorProto as a CPU tensor; `dir` is the model's folder. Raw data moves
// into the tensor instead of being copied (it is most of a model's bytes).
at::Tensor tensor_of(onnx::TensorProto& t, const std::string& dir, const std::string& subject,
                     size_t& budget) {
  const int type = onnx_import::scalar_type_of(t.data_type());
  if (type < 0) {
    throw Error(ErrorCode::kUnsupported,
                subject + ": unsupported data type " + std::to_string(t.data_type()));
  }
  std::vector<int64_t> dims;
  int64_t n = 1;
  for (int64_t d : t.dims()) {
    if (d < 0 || (d > 0 && n > (int64_t{1} << 40) / d)) {
      throw Error(ErrorCode::kModel, subject + ": bad shape");
    }
    dims.push_back(d);
    n *= d;
  }
  const auto scalar = static_cast<at::ScalarType>(type);
  at::Tensor out;
  const bool external = t.data_location() == onnx::TensorProto::EXTERNAL;
  if (external || t.has_raw_data()) {
    auto bytes = std::make_unique<std::string>(external ? external_bytes(t, dir, subject, budget)
                                                        : std::string());
    if (!external) bytes.reset(t.release_raw_data());
    const size_t want = static_cast<size_t>(n) * at::elementSize(scalar);
    if (bytes->size() != want) {
      throw Error(ErrorCode::kModel, subject + ": " + std::to_string(bytes->size()) +
                                         " bytes of data for a shape needing " +
                                         std::to_string(want));
    }
    // A string's heap buffer is aligned for any scalar type (malloc's alignment).
    std::string* owner = bytes.release();
    out = at::from_blob(
        owner->data(), {n}, [owner](void*) { delete owner; }, at::TensorOptions().dtype(scalar));
  } else {
    out = typed_field(t, n, scalar, subject);
  }
  return out.reshape(dims);
}

void check_size(size_t size, const std::string& path) {
  if (size > kMaxOnnxBytes) {
    fail(path, "over the limit of " + std::to_string(kMaxOnnxBytes) + " bytes");
  }
}

// The whole file, within kMaxOnnxBytes, mapped read-only: the parse reads it
// straight from the page cache.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) fail(path, "not found or not a regular file");
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
      if (fd >= 0) ::close(fd);
      fail(path, "cannot be read");
    }
    size_ = static_cast<size_t>(st.st_size);
    void* p = size_ > 0 && size_ <= kMaxOnnxBytes
                  ? ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)
                  : nullptr;
    ::close(fd);
    check_size(size_, path);
    if (p == MAP_FAILED) fail(path, "cannot be read");
    data_ = static_cast<const char*>(p);
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
};

onnx::ModelProto parse(const char* data, size_t size, const std::string& path) {
  check_size(size, path);
  onnx::ModelProto m;
  google::protobuf::io::ArrayInputStream raw(data, static_cast<int>(size));
  google::protobuf::io::CodedInputStream coded(&raw);
  coded.SetTotalBytesLimit(static_cast<int>(std::min<size_t>(size + 1, INT32_MAX)));
  coded.SetRecursionLimit(64);
  if (!m.ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage()) {
    fail(path, "not an ONNX model (the protobuf does not parse)");
  }
  if (!m.has_graph() || m.ir_version() <= 0) fail(path, "not an ONNX model (no graph)");
  return m;
}

onnx::ModelProto parse_file(const std::string& path) {
  const MappedFile file(path);
  return parse(file.data(), file.size(), path);
}

int default_opset(const onnx::ModelProto& m, const std::string& path) {
  int opset = 0;
  for (const onnx::OperatorSetIdProto& o : m.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = static_cast<int>(o.version());
  }
  if (opset == 0) fail(path, "imports no opset of ONNX's default domain", ErrorCode::kUnsupported);
  if (opset < kMinOnnxOpset || opset > kMaxOnnxOpset) {
    fail(path,
         "opset " + std::to_string(opset) + " is outside the supported " +
             std::to_string(kMinOnnxOpset) + "-" + std::to_string(kMaxOnnxOpset),
         opset < kMinOnnxOpset ? ErrorCode::kUnsupported : ErrorCode::kModel);
  }
  return opset;
}

void check(onnx::ModelProto& m, const std::string& path) {
  if (static_cast<size_t>(m.graph().node_size()) > kMaxOnnxNodes) {
    fail(path, "over the limit of " + std::to_string(kMaxOnnxNodes) + " nodes");
  }
  // External data is checked here first, then by the checker relative to the
  // model's folder (its plain check_model looks in the working directory).
  const std::string dir = fs::path(path).parent_path().string();
  bool external = false;
  for (const onnx::TensorProto& t : m.graph().initializer()) {
    if (t.data_location() != onnx::TensorProto::EXTERNAL) continue;
    external = true;
    for (const onnx::StringStringEntryProto& kv : t.external_data()) {
      if (kv.key() == "location") {
        external_file(kv.value(), dir, "ONNX model '" + path + "': initializer '" + t.name() + "'");
      }
    }
  }
  try {
    if (external) {
      onnx::checker::CheckerContext ctx;
      ctx.set_ir_version(static_cast<int>(m.ir_version()));
      std::unordered_map<std::string, int> opsets;
      for (const onnx::OperatorSetIdProto& o : m.opset_import()) {
        opsets[o.domain()] = static_cast<int>(o.version());
      }
      ctx.set_opset_imports(opsets);
      ctx.set_model_dir(dir.empty() ? "." : dir);
      onnx::checker::LexicalScopeContext scope;
      onnx::checker::check_graph(m.graph(), ctx, scope);
    } else {
      onnx::checker::check_model(m);
    }
  } catch (const std::exception& e) {
    fail(path, "fails ONNX's checker (" + first_line(e.what()) + ")");
  }
  try {  // shapes help the importer; a model whose inference fails still loads
    onnx::shape_inference::InferShapes(m);
  } catch (const std::exception&) {
  }
}

// The module scopes of a node's name: "/features/features.3/Concat" is in
// {"features", "features.3"}.
std::vector<std::string> scope_of(const std::string& name) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (true) {
    const size_t slash = name.find('/', at);
    if (slash == std::string::npos) break;
    if (slash > at) parts.push_back(name.substr(at, slash - at));
    at = slash + 1;
  }
  return parts;
}

std::string quoted_name(std::string s) {
  for (char& c : s) {
    if (c == '"' || c == '\\' || c == '.' || static_cast<unsigned char>(c) < 0x20) c = '_';
  }
  return s;
}

// Nodes that exporters write for one ATen operation, fused back into it:
// the last node's outputs become `fn(args...)` ("" args: None).
struct Fused {
  std::string fn;
  std::vector<std::string> args;
};

// The whole graph, as the module builder reads it.
struct Graph {
  std::string path, dir;
  int opset = 0;
  std::vector<const onnx::NodeProto*> nodes;  // without Constant nodes
  std::vector<std::vector<std::string>> scopes;
  std::map<std::string, at::Tensor> consts;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<std::string, int> types;  // ONNX element types
  // Activations exporters decompose (fuse_activations): the last node of
  // each -> (the TorchScript function, its input).
  std::map<size_t, Fused> fused;
  std::map<std::string, std::string> ident;
  std::map<std::string, std::vector<size_t>> users;
  std::set<std::string> outputs;
  std::string nhwc_input;  // a channels-last image input, permuted from NCHW
  // Stages found from the structure (a graph whose node names carry no
  // scopes): stage name -> how it was found.
  std::map<std::string, std::string> stages;
  // Values asked for as layers: the scope key of each one's own module ->
  // the value; and, once built, each value -> its module path.
  std::map<std::string, std::string> exposed, value_layers;
  std::shared_ptr<torch::jit::CompilationUnit> cu = std::make_shared<torch::jit::CompilationUnit>();
};

std::string ident_of(Graph& g, const std::string& name) {
  auto it = g.ident.find(name);
  if (it != g.ident.end()) return it->second;
  return g.ident[name] = "v" + std::to_string(g.ident.size());
}

void read_shapes(Graph& g, const google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>& infos) {
  for (const onnx::ValueInfoProto& v : infos) {
    if (!v.type().has_tensor_type()) continue;
    g.types[v.name()] = v.type().tensor_type().elem_type();
    if (!v.type().tensor_type().has_shape()) continue;
    std::vector<int64_t> dims;
    for (const auto& d : v.type().tensor_type().shape().dim()) {
      dims.push_back(d.has_dim_value() ? d.dim_value() : -1);
    }
    g.shapes[v.name()] = dims;
  }
}

// The values node i reads (a fused SiLU: its x only).
std::vector<std::string> inputs_of(const Graph& g, size_t i) {
  auto f = g.fused.find(i);
  if (f != g.fused.end()) return f->second.args;
  return {g.nodes[i]->input().begin(), g.nodes[i]->input().end()};
}

// The node that makes each value.
std::map<std::string, size_t> producers(const Graph& g) {
  std::map<std::string, size_t> made;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const std::string& o : g.nodes[i]->output()) made[o] = i;
  }
  return made;
}

// Whether `name` is a one-element constant equal to `v` (within 1e-6).
bool const_is(const Graph& g, const std::string& name, double v) {
  auto c = g.consts.find(name);
  return c != g.consts.end() && c->second.numel() == 1 &&
         std::abs(c->second.to(at::kDouble).item<double>() - v) < 1e-6;
}

// The single-use producer of input `k` of node `i` when it is an `op` node.
std::optional<size_t> feeder(const Graph& g, const std::map<std::string, size_t>& made,
                             const std::map<std::string, int>& uses, size_t i, int k,
                             const std::string& op) {
  const onnx::NodeProto& n = *g.nodes[i];
  if (k >= n.input_size()) return std::nullopt;
  auto p = made.find(n.input(k));
  if (p == made.end() || uses.at(n.input(k)) != 1 || g.nodes[p->second]->op_type() != op) {
    return std::nullopt;
  }
  return p->second;
}

// SiLU, written by exporters as Mul(x, Sigmoid(x)): the nodes it spans
// (Sigmoid, Mul) and x, when node i is its Mul.
std::optional<std::pair<std::vector<size_t>, std::string>> silu_at(
    const Graph& g, const std::map<std::string, size_t>& made,
    const std::map<std::string, int>& uses, size_t i) {
  const onnx::NodeProto& n = *g.nodes[i];
  if (n.op_type() != "Mul" || n.input_size() != 2) return std::nullopt;
  for (int k = 0; k < 2; ++k) {
    const std::optional<size_t> s = feeder(g, made, uses, i, k, "Sigmoid");
    if (s && g.nodes[*s]->input(0) == n.input(1 - k)) {
      return std::make_pair(std::vector<size_t>{*s, i}, n.input(1 - k));
    }
  }
  return std::nullopt;
}

// GELU, written as Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5) by
// PyTorch's exporter, when node i is its last Mul.
std::optional<std::pair<std::vector<size_t>, std::string>> gelu_at(
    const Graph& g, const std::map<std::string, size_t>& made,
    const std::map<std::string, int>& uses, size_t i) {
  const onnx::NodeProto& half = *g.nodes[i];
  if (half.op_type() != "Mul" || half.input_size() != 2 || !const_is(g, half.input(1), 0.5)) {
    return std::nullopt;
  }
  const std::optional<size_t> prod = feeder(g, made, uses, i, 0, "Mul");
  if (!prod) return std::nullopt;
  for (int k = 0; k < 2; ++k) {
    const std::optional<size_t> add = feeder(g, made, uses, *prod, 1 - k, "Add");
    if (!add || !const_is(g, g.nodes[*add]->input(1), 1)) continue;
    const std::optional<size_t> erf = feeder(g, made, uses, *add, 0, "Erf");
    if (!erf) continue;
    const std::optional<size_t> div = feeder(g, made, uses, *erf, 0, "Div");
    const std::string& x = g.nodes[*prod]->input(k);
    if (div && g.nodes[*div]->input(0) == x &&
        const_is(g, g.nodes[*div]->input(1), std::sqrt(2.0))) {
      return std::make_pair(std::vector<size_t>{*div, *erf, *add, *prod, i}, x);
    }
  }
  return std::nullopt;
}

// nn.Linear on more than two dimensions, written as MatMul(x, W^T) and
// Add(., b) with constant W^T and b: aten::linear again, which LRP's rules
// recognize. When node i is the Add (or a MatMul without one).
std::optional<std::pair<std::vector<size_t>, Fused>> linear_at(
    Graph& g, const std::map<std::string, size_t>& made, const std::map<std::string, int>& uses,
    size_t i) {
  const onnx::NodeProto& n = *g.nodes[i];
  auto weight_of = [&](const onnx::NodeProto& mm) -> std::string {
    if (mm.op_type() != "MatMul" || mm.input_size() != 2) return "";
    auto w = g.consts.find(mm.input(1));
    if (w == g.consts.end() || w->second.dim() != 2 || !w->second.is_floating_point()) return "";
    const std::string t = mm.input(1) + "/transposed";
    if (!g.consts.count(t)) g.consts[t] = w->second.t().contiguous();
    return t;
  };
  if (n.op_type() == "MatMul" && !weight_of(n).empty()) {
    // Alone unless an Add of a bias is its one use (that Add fuses it).
    bool biased = false;
    if (uses.at(n.output(0)) == 1) {
      for (size_t j = i + 1; j < g.nodes.size() && !biased; ++j) {
        const onnx::NodeProto& a = *g.nodes[j];
        if (a.op_type() != "Add" || a.input_size() != 2) continue;
        for (int k = 0; k < 2; ++k) {
          auto b = g.consts.find(a.input(1 - k));
          biased =
              biased || (a.input(k) == n.output(0) && b != g.consts.end() && b->second.dim() == 1);
        }
      }
    }
    if (!biased) {
      return std::make_pair(std::vector<size_t>{i},
                            Fused{"torch.linear", {n.input(0), weight_of(n), ""}});
    }
  }
  if (n.op_type() == "Add" && n.input_size() == 2) {
    for (int k = 0; k < 2; ++k) {
      const std::optional<size_t> mm = feeder(g, made, uses, i, k, "MatMul");
      auto b = g.consts.find(n.input(1 - k));
      if (!mm || b == g.consts.end() || b->second.dim() != 1) continue;
      const std::string w = weight_of(*g.nodes[*mm]);
      if (w.empty() || g.consts.at(w).size(0) != b->second.size(0)) continue;
      return std::make_pair(std::vector<size_t>{*mm, i},
                            Fused{"torch.linear", {g.nodes[*mm]->input(0), w, n.input(1 - k)}});
    }
  }
  return std::nullopt;
}

// Activations that exporters decompose become their ATen operator again
// (aten::silu, aten::gelu), which the engine knows: AttnLRP's GELU rule,
// and the report of what guided backprop cannot guide.
void fuse_activations(Graph& g) {
  std::map<std::string, int> uses;
  for (const onnx::NodeProto* n : g.nodes) {
    for (const std::string& in : n->input()) ++uses[in];
  }
  for (const std::string& o : g.outputs) ++uses[o];
  const std::map<std::string, size_t> made = producers(g);
  std::set<size_t> gone;
  std::map<size_t, Fused> fused;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& [fn, match] :
         {std::make_pair("torch.silu", &silu_at), std::make_pair("torch.gelu", &gelu_at)}) {
      const auto m = match(g, made, uses, i);
      if (!m) continue;
      gone.insert(m->first.begin(), m->first.end() - 1);
      fused[i] = {fn, {m->second}};
      break;
    }
    if (const auto l = linear_at(g, made, uses, i)) {
      gone.insert(l->first.begin(), l->first.end() - 1);
      fused[i] = l->second;
    }
  }
  std::vector<const onnx::NodeProto*> kept;
  g.fused.clear();
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (gone.count(i)) continue;
    if (fused.count(i)) g.fused[kept.size()] = fused[i];
    kept.push_back(g.nodes[i]);
  }
  g.nodes = kept;
}

// A Constant node's value.
at::Tensor constant_value(onnx::NodeProto& n, Graph& g, size_t& budget) {
  if (n.attribute_size() != 1) fail(g.path, "Constant node '" + n.name() + "' without one value");
  onnx::AttributeProto& a = *n.mutable_attribute(0);
  if (a.name() == "value")
    return tensor_of(*a.mutable_t(), g.dir, "Constant '" + n.name() + "'", budget);
  if (a.name() == "value_float") return at::scalar_tensor(a.f(), at::kFloat);
  if (a.name() == "value_int") return at::scalar_tensor(a.i(), at::kLong);
  if (a.name() == "value_floats")
    return at::tensor(std::vector<float>(a.floats().begin(), a.floats().end()));
  if (a.name() == "value_ints")
    return at::tensor(std::vector<int64_t>(a.ints().begin(), a.ints().end()));
  fail(g.path, "Constant node '" + n.name() + "': unsupported " + a.name(),
       ErrorCode::kUnsupported);
}

// The spatial size (dims 2 and 3) of a value known to be 4-D with static
// height and width; nullopt otherwise.
std::optional<std::pair<int64_t, int64_t>> spatial_size(const Graph& g, const std::string& v) {
  auto it = g.shapes.find(v);
  if (it == g.shapes.end() || it->second.size() != 4 || it->second[2] <= 0 || it->second[3] <= 0 ||
      it->second[2] * it->second[3] == 1) {
    return std::nullopt;
  }
  return std::make_pair(it->second[2], it->second[3]);
}

// Whether node i adds two or more computed maps of its own 4-D shape (a
// residual merge).
bool is_residual_merge(const Graph& g, size_t i) {
  const std::string& op = g.nodes[i]->op_type();
  if ((op != "Add" && op != "Sum") || g.fused.count(i) || g.nodes[i]->input_size() < 2)
    return false;
  auto out = g.shapes.find(g.nodes[i]->output(0));
  if (out == g.shapes.end() || out->second.size() != 4) return false;
  for (const std::string& in : g.nodes[i]->input()) {
    auto s = g.shapes.find(in);
    if (g.consts.count(in) || s == g.shapes.end() || s->second != out->second) return false;
  }
  return true;
}

// Whether node i applies an activation to its one computed input only.
bool is_activation(const Graph& g, size_t i) {
  static const std::set<std::string> ops = {
      "Relu",      "Clip",    "LeakyRelu", "Elu",   "Selu",     "Celu",     "HardSigmoid",
      "HardSwish", "Sigmoid", "Tanh",      "PRelu", "Softplus", "Softsign", "ThresholdedRelu"};
  if (g.fused.count(i)) return true;  // SiLU, GELU
  return ops.count(g.nodes[i]->op_type()) > 0;
}

std::string size_text(const std::pair<int64_t, int64_t>& s) {
  return std::to_string(s.first) + " x " + std::to_string(s.second);
}

// Whether each node computes from constants only (exporters' Identity of a
// shared initializer, a Transpose of a weight).
std::vector<bool> constant_nodes(const Graph& g) {
  std::set<std::string> known;
  for (const auto& [name, t] : g.consts) known.insert(name);
  std::vector<bool> out(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    out[i] = std::all_of(g.nodes[i]->input().begin(), g.nodes[i]->input().end(),
                         [&](const std::string& v) { return v.empty() || known.count(v); });
    if (out[i]) known.insert(g.nodes[i]->output().begin(), g.nodes[i]->output().end());
  }
  return out;
}

// Moves the nodes that compute from constants only to the front (still in
// an order that computes each value before its use), so that they stay out
// of the stages found from the structure.
void hoist_constant_nodes(Graph& g) {
  const std::vector<bool> constant = constant_nodes(g);
  std::vector<const onnx::NodeProto*> nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (constant[i]) nodes.push_back(g.nodes[i]);
  }
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!constant[i]) nodes.push_back(g.nodes[i]);
  }
  g.nodes = nodes;
}

// For a graph whose node names carry no scopes: stages from its structure.
// A stage ends at a residual merge (with the activation right after it) or
// at the last node before the spatial size changes; each stage's nodes
// become the submodule "stageK". The nodes after the last stage stay in
// the root (the head).
void structural_scopes(Graph& g) {
  const size_t n = g.nodes.size();
  std::vector<std::optional<std::pair<int64_t, int64_t>>> size(n);
  for (size_t i = 0; i < n; ++i) size[i] = spatial_size(g, g.nodes[i]->output(0));
  const std::vector<bool> constant = constant_nodes(g);
  size_t first = 0;
  while (first < n && constant[first]) ++first;  // hoisted: they stay in the root
  for (size_t i = first; i < n; ++i) {
    std::string how;
    size_t end = i;
    if (is_residual_merge(g, i)) {
      how = "residual merge (" + g.nodes[i]->op_type() + ")";
      const std::string& merged = g.nodes[i]->output(0);
      if (i + 1 < n && is_activation(g, i + 1) && inputs_of(g, i + 1).front() == merged &&
          g.users[merged].size() == 1) {
        end = i + 1;
        how += " and its " + g.nodes[end]->op_type();
      }
    } else if (size[i]) {
      size_t j = i + 1;
      while (j < n && !size[j]) ++j;
      const bool last_node = i + 1 == n;
      if (!last_node && (j == n || size[j] != size[i])) {
        how = "last at " + size_text(*size[i]) +
              (j == n ? " (the last map)" : " (then " + size_text(*size[j]) + ")");
      }
    }
    if (how.empty()) continue;
    const std::string stage = "stage" + std::to_string(g.stages.size() + 1);
    for (size_t k = first; k <= end; ++k) g.scopes[k] = {stage};
    g.stages[stage] = how;
    first = end + 1;
    i = end;
  }
}

// Each of `values` that a node computes gets a module of its own (the node
// alone, inside its scope), so that it can be a layer; a value of a
// multi-node fusion (inside a GELU) or an input has none.
void expose_values(Graph& g, const std::vector<std::string>& values) {
  for (const std::string& v : values) {
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const auto& outs = g.nodes[i]->output();
      if (std::find(outs.begin(), outs.end(), v) == outs.end()) continue;
      std::string key = "value_";
      for (char c : v) key += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      while (g.exposed.count(key)) key += "_";
      g.exposed[key] = v;
      g.scopes[i].push_back(key);
      break;
    }
  }
}

// The graph to build; the tensors' data moves out of `m`.
Graph read_graph(onnx::ModelProto& m, const std::string& path, int opset,
                 const std::vector<std::string>& values) {
  Graph g;
  g.path = path;
  g.dir = fs::path(path).parent_path().string();
  g.opset = opset;
  onnx::GraphProto& graph = *m.mutable_graph();
  size_t budget = kMaxOnnxExternalBytes;
  for (onnx::TensorProto& t : *graph.mutable_initializer()) {
    g.consts[t.name()] =
        tensor_of(t, g.dir, "ONNX model '" + path + "': initializer '" + t.name() + "'", budget);
  }
  read_shapes(g, graph.input());
  read_shapes(g, graph.value_info());
  read_shapes(g, graph.output());
  for (onnx::NodeProto& n : *graph.mutable_node()) {
    if (!n.domain().empty() && n.domain() != "ai.onnx") {
      fail(path, "node '" + n.name() + "': unsupported operator " + n.domain() + "." + n.op_type(),
           ErrorCode::kUnsupported);
    }
    if (n.op_type() == "Constant") {
      g.consts[n.output(0)] = constant_value(n, g, budget);
      continue;
    }
    if (!onnx_import::emitters().count(n.op_type())) {
      fail(path, "node '" + n.name() + "': unsupported operator " + n.op_type(),
           ErrorCode::kUnsupported);
    }
    g.nodes.push_back(&n);
  }
  for (const onnx::ValueInfoProto& o : graph.output()) g.outputs.insert(o.name());
  const bool scoped = std::any_of(g.nodes.begin(), g.nodes.end(), [](const onnx::NodeProto* n) {
    return !scope_of(n->name()).empty();
  });
  if (!scoped) hoist_constant_nodes(g);
  fuse_activations(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const std::string& in : inputs_of(g, i)) g.users[in].push_back(i);
    g.scopes.push_back(scope_of(g.nodes[i]->name()));
  }
  if (!scoped) structural_scopes(g);
  expose_values(g, values);
  return g;
}

// One module being built: its lines, the constants it holds, its helpers.
struct ModuleCode {
  torch::jit::Module module;
  std::string path;  // its module path in the model ("" for the root)
  std::vector<std::string> lines;
  std::map<std::string, std::string> const_attr;  // value name -> attribute
  std::set<std::string> helpers, names;
};

std::string value_expr(Graph& g, ModuleCode& mc, const std::string& name) {
  if (!g.consts.count(name)) return ident_of(g, name);
  auto it = mc.const_attr.find(name);
  if (it != mc.const_attr.end()) return "self." + it->second;
  const std::string attr = "c" + std::to_string(mc.const_attr.size());
  mc.const_attr[name] = attr;
  const at::Tensor& t = g.consts.at(name);
  if (t.is_floating_point()) {
    mc.module.register_parameter(attr, t, /*is_buffer=*/false);
  } else {
    mc.module.register_buffer(attr, t);
  }
  return "self." + attr;
}

void emit_node(Graph& g, ModuleCode& mc, size_t i) {
  const onnx::NodeProto& n = *g.nodes[i];
  NodeCode e;
  e.node = &n;
  e.opset = g.opset;
  e.tmp = "t" + std::to_string(i);
  for (const std::string& in : inputs_of(g, i)) {
    auto c = g.consts.find(in);
    e.in_const.push_back(c != g.consts.end() ? &c->second : nullptr);
    auto s = g.shapes.find(in);
    e.in_shape_known.push_back(s != g.shapes.end());
    e.in_shape.push_back(s != g.shapes.end() ? s->second : std::vector<int64_t>());
    e.in_expr.push_back(in.empty() ? "" : value_expr(g, mc, in));
    auto t = g.types.find(in);
    e.in_type.push_back(t != g.types.end() ? t->second : 0);
  }
  for (const std::string& out : n.output()) {
    const bool used = !out.empty() && (g.users.count(out) || g.outputs.count(out));
    e.out_name.push_back(used ? ident_of(g, out) : "");
  }
  auto f = g.fused.find(i);
  if (f != g.fused.end()) {
    std::string call = f->second.fn + "(";
    for (size_t k = 0; k < f->second.args.size(); ++k) {
      const std::string& a = f->second.args[k];
      call += (k ? ", " : "") + (a.empty() ? std::string("None") : value_expr(g, mc, a));
    }
    e.set(call + ")");
  } else {
    onnx_import::emitters().at(n.op_type())(e);
  }
  mc.lines.insert(mc.lines.end(), e.lines.begin(), e.lines.end());
  mc.helpers.insert(e.helpers.begin(), e.helpers.end());
}

torch::jit::Module build(Graph& g, const std::vector<size_t>& ids, size_t depth,
                         const std::vector<std::string>& args,
                         const std::vector<std::string>& results, const std::string& prefix,
                         const std::string& path);

// The values a run of nodes reads from before it, and those read after it.
std::pair<std::vector<std::string>, std::vector<std::string>> run_boundary(
    const Graph& g, const std::vector<size_t>& run) {
  const std::set<size_t> inside(run.begin(), run.end());
  std::set<std::string> made, seen;
  std::vector<std::string> in, out;
  for (size_t i : run) {
    for (const std::string& v : inputs_of(g, i)) {
      if (v.empty() || g.consts.count(v) || made.count(v) || !seen.insert(v).second) continue;
      in.push_back(v);
    }
    for (const std::string& v : g.nodes[i]->output()) {
      if (v.empty()) continue;
      made.insert(v);
      bool later = g.outputs.count(v) > 0;
      auto u = g.users.find(v);
      if (u != g.users.end()) {
        for (size_t j : u->second) later = later || !inside.count(j);
      }
      if (later) out.push_back(v);
    }
  }
  return {in, out};
}

// Emits a run of nodes of one scope as a call of a new submodule.
// Where a run's module goes: the module that holds it, the expression that
// reaches that holder from `self`, and its path. A name with dots left (an
// item of a ModuleList, "backbone.0": the list itself is never called, so
// it has no scope of its own) puts the item inside a container module named
// after the list, as in the TorchScript model.
struct Place {
  torch::jit::Module holder;
  std::string access, path, name;
};

Place place_of(Graph& g, ModuleCode& mc, std::string name) {
  Place p{mc.module, "self", mc.path, ""};
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.')) {
    const std::string part = quoted_name(name.substr(0, dot));
    name = name.substr(dot + 1);
    if (!p.holder.hasattr(part)) {
      p.holder.register_module(part, torch::jit::Module("__torch__.onnx.Container", g.cu, true));
    } else if (!p.holder.attr(part).isModule()) {
      return place_of(g, mc, quoted_name(part + "." + name));
    }
    p.holder = p.holder.attr(part).toModule();
    p.access = "getattr(" + p.access + ", \"" + part + "\")";
    p.path = p.path.empty() ? part : p.path + "." + part;
  }
  p.name = quoted_name(name);
  while (p.holder.hasattr(p.name) || (p.access == "self" && mc.names.count(p.name))) {
    p.name += "_";
  }
  if (p.access == "self") mc.names.insert(p.name);
  p.path = p.path.empty() ? p.name : p.path + "." + p.name;
  return p;
}

void emit_run(Graph& g, ModuleCode& mc, const std::vector<size_t>& run, size_t depth,
              const std::string& key, const std::string& parent_key) {
  auto [in, out] = run_boundary(g, run);
  if (out.empty()) return;  // nothing it computes is used
  std::string name = key;
  if (!parent_key.empty() && name.compare(0, parent_key.size() + 1, parent_key + ".") == 0) {
    name = name.substr(parent_key.size() + 1);
  }
  Place p = place_of(g, mc, name);
  if (auto v = g.exposed.find(key); v != g.exposed.end()) g.value_layers[v->second] = p.path;
  p.holder.register_module(p.name, build(g, run, depth + 1, in, out, key, p.path));
  std::vector<std::string> args, outs;
  for (const std::string& v : in) args.push_back(ident_of(g, v));
  for (const std::string& v : out) outs.push_back(ident_of(g, v));
  std::string lhs;
  for (size_t k = 0; k < outs.size(); ++k) lhs += (k ? ", " : "") + outs[k];
  std::string call = lhs + " = getattr(" + p.access + ", \"" + p.name + "\").forward(";
  for (size_t k = 0; k < args.size(); ++k) call += (k ? ", " : "") + args[k];
  mc.lines.push_back(call + ")");
}

std::string method_source(Graph& g, ModuleCode& mc, const std::vector<std::string>& args,
                          const std::vector<std::string>& results) {
  std::string src = "def forward(self";
  std::string first;
  for (const std::string& a : args) {
    if (a == g.nhwc_input) {
      src += ", nchw";
      first = "    " + ident_of(g, a) + " = nchw.permute([0, 2, 3, 1])\n";
    } else {
      src += ", " + ident_of(g, a);
    }
  }
  src += "):\n" + first;
  for (const std::string& l : mc.lines) src += "    " + l + "\n";
  std::vector<std::string> rs;
  for (const std::string& r : results) rs.push_back(value_expr(g, mc, r));
  src += "    return ";
  if (rs.size() == 1) {
    src += rs[0];
  } else {
    src += "(";
    for (size_t k = 0; k < rs.size(); ++k) src += (k ? ", " : "") + rs[k];
    src += ")";
  }
  return src + "\n";
}

torch::jit::Module build(Graph& g, const std::vector<size_t>& ids, size_t depth,
                         const std::vector<std::string>& args,
                         const std::vector<std::string>& results, const std::string& prefix,
                         const std::string& path) {
  // A module of one node is named after its operator ("Conv"), others "Scope".
  // A stage found from the structure is a "Stage".
  const std::string cls = g.stages.count(prefix) ? "Stage"
                          : ids.size() == 1      ? quoted_name(g.nodes[ids[0]]->op_type())
                                                 : "Scope";
  ModuleCode mc{torch::jit::Module("__torch__.onnx." + cls, g.cu, true), path, {}, {}, {}, {}};
  std::set<std::string> children;  // scopes already made submodules here
  for (size_t k = 0; k < ids.size();) {
    const size_t i = ids[k];
    if (g.scopes[i].size() <= depth) {
      emit_node(g, mc, i);
      ++k;
      continue;
    }
    const std::string& key = g.scopes[i][depth];
    std::vector<size_t> run;
    while (k < ids.size() && g.scopes[ids[k]].size() > depth && g.scopes[ids[k]][depth] == key) {
      run.push_back(ids[k++]);
    }
    if (children.insert(key).second) {
      emit_run(g, mc, run, depth, key, prefix);
    } else {  // a scope seen before (called twice): its nodes stay here
      for (size_t j : run) emit_node(g, mc, j);
    }
  }
  std::string src = method_source(g, mc, args, results);
  for (const std::string& h : mc.helpers) src = onnx_import::helper_source(h) + src;
  try {
    mc.module.define(src);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    const size_t begin = what.find_first_not_of(" \n");
    if (std::getenv("CNNVIZ_DEBUG_ONNX")) std::cerr << src << "\n" << what << "\n";
    fail(g.path,
         "cannot build the TorchScript of scope '" + prefix + "' (" +
             first_line(begin == std::string::npos ? what : what.substr(begin)) + ")",
         ErrorCode::kRuntime);
  }
  return mc.module;
}

// Whether the first input of `m` (its shape declared in m.input_shape, as
// the graph has it) is channels-last: as `layout` says, else an image input
// [N, H, W, C] (Keras's layout: 1 or 3 channels last; H and W at least 8
// pixels, or dynamic).
bool is_nhwc(const OnnxModel& m, InputLayout layout, const std::string& path) {
  const std::vector<int64_t>& s = m.input_shape;
  if (m.inputs.empty()) return false;
  if (layout == InputLayout::kNhwc && !s.empty() &&
      (s.size() != 4 || (s[3] != -1 && s[3] != 1 && s[3] != 3))) {
    throw Error(ErrorCode::kUsage, "model file '" + path + "': input '" + m.inputs[0] + "' is " +
                                       shape_text(s) +
                                       ": a channels-last (nhwc) image input is [N, H, W, 1 or 3]");
  }
  if (layout != InputLayout::kFromShape) return layout == InputLayout::kNhwc;
  auto side = [](int64_t d) { return d == -1 || d >= 8; };
  return s.size() == 4 && (s[3] == 1 || s[3] == 3) && side(s[1]) && side(s[2]);
}

// What a model declares: metadata, inputs (those without an initializer),
// outputs, the first input's shape (NCHW) and whether it is NHWC (`layout`).
OnnxModel describe(const onnx::ModelProto& m, const std::string& path,
                   InputLayout layout = InputLayout::kFromShape) {
  OnnxModel out;
  for (const onnx::StringStringEntryProto& kv : m.metadata_props()) {
    if (kv.key() == kOnnxMetadataKey) out.metadata = kv.value();
  }
  std::set<std::string> initialized;
  for (const onnx::TensorProto& t : m.graph().initializer()) initialized.insert(t.name());
  for (const onnx::ValueInfoProto& v : m.graph().input()) {
    if (initialized.count(v.name())) continue;
    if (!v.type().has_tensor_type()) {
      fail(path,
           "input '" + v.name() +
               "' is not a tensor (sequences, maps and optionals are unsupported)",
           ErrorCode::kUnsupported);
    }
    if (out.inputs.empty() && v.type().tensor_type().has_shape()) {
      for (const auto& d : v.type().tensor_type().shape().dim()) {
        out.input_shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
      }
    }
    out.inputs.push_back(v.name());
  }
  for (const onnx::ValueInfoProto& v : m.graph().output()) out.outputs.push_back(v.name());
  out.nhwc = is_nhwc(out, layout, path);
  const std::vector<int64_t> s = out.input_shape;
  if (out.nhwc && !s.empty()) out.input_shape = {s[0], s[3], s[1], s[2]};
  return out;
}

OnnxModel import_parsed(onnx::ModelProto m, const std::string& path,
                        const OnnxImportOptions& options = {}) {
  const int opset = default_opset(m, path);
  check(m, path);
  OnnxModel out = describe(m, path, options.layout);
  out.opset = opset;
  Graph g = read_graph(m, path, opset, options.values);
  if (out.nhwc) g.nhwc_input = out.inputs[0];
  std::vector<size_t> ids(g.nodes.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = i;
  out.module =
      std::make_shared<torch::jit::Module>(build(g, ids, 0, out.inputs, out.outputs, "", ""));
  out.module->eval();
  out.structural_stages = g.stages;
  out.value_layers = g.value_layers;
  return out;
}

}  // namespace

bool is_onnx_path(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".onnx";
}

OnnxModel import_onnx_bytes(const std::string& bytes, const std::string& path) {
  return import_parsed(parse(bytes.data(), bytes.size(), path), path);
}

OnnxModel inspect_onnx(const std::string& path) {
  const onnx::ModelProto m = parse_file(path);
  OnnxModel out = describe(m, path);
  out.opset = default_opset(m, path);
  return out;
}

OnnxModel import_onnx(const std::string& path, const OnnxImportOptions& options) {
  return import_parsed(parse_file(path), path, options);
}

const std::vector<std::string>& onnx_supported_ops() {
  static const std::vector<std::string> ops = [] {
    std::vector<std::string> v = {"Constant"};
    for (const auto& [name, emit] : onnx_import::emitters()) v.push_back(name);
    std::sort(v.begin(), v.end());
    return v;
  }();
  return ops;
}

at::Tensor read_onnx_tensor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  onnx::TensorProto t;
  if (!in || !t.ParseFromIstream(&in)) {
    throw Error(ErrorCode::kModel, "tensor file '" + path + "': not an ONNX TensorProto");
  }
  size_t budget = kMaxOnnxExternalBytes;
  return tensor_of(t, fs::path(path).parent_path().string(), "tensor file '" + path + "'", budget);
}

}  // namespace cnnviz
