// Bad ONNX files: each is refused with one line naming the file and the
// problem (Error kModel, exit 4; kUnsupported, exit 5), never a crash.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <torch/script.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "cnnviz/core/error.h"
#include "cnnviz/core/onnx.h"
#include "test_util.h"

namespace cnnviz {
namespace {

namespace fs = std::filesystem;
using test::expect_error;
using test::TempDir;

// x [1, 2] -> Relu -> Add(W) -> y, W an initializer [2].
onnx::ModelProto small_model(int opset = 13) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(opset);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name("small");
  for (const char* name : {"x", "y"}) {
    onnx::ValueInfoProto* v = name[0] == 'x' ? g->add_input() : g->add_output();
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    t->mutable_shape()->add_dim()->set_dim_value(1);
    t->mutable_shape()->add_dim()->set_dim_value(2);
  }
  onnx::TensorProto* w = g->add_initializer();
  w->set_name("W");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(2);
  const float values[2] = {1.5f, -2.0f};
  w->set_raw_data(std::string(reinterpret_cast<const char*>(values), sizeof values));
  onnx::NodeProto* relu = g->add_node();
  relu->set_name("/block/Relu");
  relu->set_op_type("Relu");
  relu->add_input("x");
  relu->add_output("r");
  onnx::NodeProto* add = g->add_node();
  add->set_name("/block/Add");
  add->set_op_type("Add");
  add->add_input("r");
  add->add_input("W");
  add->add_output("y");
  return m;
}

std::string save(const TempDir& dir, const onnx::ModelProto& m,
                 const std::string& name = "m.onnx") {
  const std::string path = dir.file(name);
  std::ofstream out(path, std::ios::binary);
  m.SerializeToOstream(&out);
  return path;
}

TEST(OnnxInputTest, ASmallModelImportsAndRuns) {
  TempDir dir;
  const OnnxModel m = import_onnx(save(dir, small_model()));
  const at::Tensor y = m.module->forward({torch::tensor({{-1.0f, 3.0f}})}).toTensor();
  EXPECT_TRUE(y.allclose(torch::tensor({{1.5f, 1.0f}})));
  EXPECT_TRUE(m.module->hasattr("block"));  // the scope in the node names
}

// x [dims] -> Transpose(perm) -> y.
onnx::ModelProto transpose_model(const std::vector<int64_t>& dims,
                                 const std::vector<int64_t>& perm) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(13);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name("transpose");
  onnx::ValueInfoProto* x = g->add_input();
  x->set_name("x");
  auto* t = x->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) {
    if (d < 0)
      t->mutable_shape()->add_dim()->set_dim_param("d" + std::to_string(t->shape().dim_size()));
    else
      t->mutable_shape()->add_dim()->set_dim_value(d);
  }
  onnx::ValueInfoProto* y = g->add_output();
  y->set_name("y");
  auto* ty = y->mutable_type()->mutable_tensor_type();
  ty->set_elem_type(onnx::TensorProto::FLOAT);
  for (size_t k = 0; k < dims.size(); ++k)
    ty->mutable_shape()->add_dim()->set_dim_param("o" + std::to_string(k));
  onnx::NodeProto* n = g->add_node();
  n->set_op_type("Transpose");
  n->add_input("x");
  n->add_output("y");
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name("perm");
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t p : perm) a->add_ints(p);
  return m;
}

// An input [N, H, W, 1 or 3] (Keras's channels-last), static or dynamic, is
// taken as NCHW and permuted inside: a model that transposes it to NCHW
// gives back what it was given. [N, 3, H, W] stays as it is.
TEST(OnnxInputTest, ChannelsLastInputsTakeNchw) {
  TempDir dir;
  const at::Tensor nchw = torch::randn({2, 3, 16, 12});
  for (const std::vector<int64_t>& dims :
       std::vector<std::vector<int64_t>>{{1, 16, 12, 3}, {-1, -1, -1, 3}}) {
    const OnnxModel m = import_onnx(save(dir, transpose_model(dims, {0, 3, 1, 2})));
    EXPECT_TRUE(m.nhwc);
    EXPECT_EQ(m.input_shape, (std::vector<int64_t>{dims[0], 3, dims[1], dims[2]}));
    EXPECT_TRUE(m.module->forward({nchw}).toTensor().equal(nchw));
  }
  const OnnxModel m = import_onnx(save(dir, transpose_model({-1, 3, -1, -1}, {0, 1, 3, 2})));
  EXPECT_FALSE(m.nhwc);
  EXPECT_TRUE(m.module->forward({nchw}).toTensor().equal(nchw.transpose(2, 3)));
}

// --layout overrides the guess from the shape: nhwc for inputs the shape
// rule does not take (a 4 x 4 image, every dimension dynamic), nchw for one
// it would take as channels-last (an NCHW input [1, 16, 16, 3]). nhwc on an
// input that is not [N, H, W, 1 or 3] is a usage error naming the file and
// the input.
TEST(OnnxInputTest, LayoutAsGivenOverridesTheShape) {
  TempDir dir;
  const at::Tensor nchw = torch::randn({1, 3, 4, 4});
  OnnxImportOptions nhwc;
  nhwc.layout = InputLayout::kNhwc;
  for (const std::vector<int64_t>& dims :
       std::vector<std::vector<int64_t>>{{1, 4, 4, 3}, {-1, -1, -1, -1}}) {
    const std::string path = save(dir, transpose_model(dims, {0, 3, 1, 2}));
    EXPECT_FALSE(import_onnx(path).nhwc);
    const OnnxModel m = import_onnx(path, nhwc);
    EXPECT_TRUE(m.nhwc);
    EXPECT_EQ(m.input_shape, (std::vector<int64_t>{dims[0], dims[3], dims[1], dims[2]}));
    EXPECT_TRUE(m.module->forward({nchw}).toTensor().equal(nchw));
  }
  OnnxImportOptions as_nchw;
  as_nchw.layout = InputLayout::kNchw;
  const std::string square = save(dir, transpose_model({1, 16, 16, 3}, {0, 3, 1, 2}));
  EXPECT_TRUE(import_onnx(square).nhwc);
  const OnnxModel m = import_onnx(square, as_nchw);
  EXPECT_FALSE(m.nhwc);
  EXPECT_EQ(m.input_shape, (std::vector<int64_t>{1, 16, 16, 3}));
  const at::Tensor x = torch::randn({1, 16, 16, 3});
  EXPECT_TRUE(m.module->forward({x}).toTensor().equal(x.permute({0, 3, 1, 2})));
  const std::string flat = save(dir, transpose_model({2, 3, 5}, {0, 2, 1}), "flat.onnx");
  expect_error([&] { import_onnx(flat, nhwc); }, ErrorCode::kUsage,
               "flat.onnx': input 'x' is [2, 3, 5]: a channels-last (nhwc) image input");
  const std::string wide = save(dir, transpose_model({1, 3, 8, 8}, {0, 2, 3, 1}), "wide.onnx");
  expect_error([&] { import_onnx(wide, nhwc); }, ErrorCode::kUsage, "is [1, 3, 8, 8]");
}

TEST(OnnxInputTest, TruncatedOrCorruptFilesAreRefused) {
  TempDir dir;
  std::string bytes;
  small_model().SerializeToString(&bytes);
  for (size_t cut : {bytes.size() / 2, bytes.size() - 3}) {
    test::write_text(dir.file("cut.onnx"), bytes.substr(0, cut));
    expect_error([&] { import_onnx(dir.file("cut.onnx")); }, ErrorCode::kModel, "cut.onnx");
  }
  test::write_text(dir.file("text.onnx"), "this is not a model\n");
  expect_error([&] { import_onnx(dir.file("text.onnx")); }, ErrorCode::kModel, "text.onnx");
  test::write_text(dir.file("empty.onnx"), "");
  expect_error([&] { import_onnx(dir.file("empty.onnx")); }, ErrorCode::kModel, "no graph");
}

TEST(OnnxInputTest, OpsetsOutsideTheRangeAreRefused) {
  TempDir dir;
  expect_error([&] { import_onnx(save(dir, small_model(18))); }, ErrorCode::kModel,
               "opset 18 is outside the supported 7-17");
  expect_error([&] { import_onnx(save(dir, small_model(6))); }, ErrorCode::kUnsupported, "opset 6");
}

TEST(OnnxInputTest, AnInitializerThatDoesNotMatchItsShapeIsRefused) {
  TempDir dir;
  onnx::ModelProto m = small_model();
  m.mutable_graph()->mutable_initializer(0)->set_raw_data("abc");
  expect_error([&] { import_onnx(save(dir, m)); }, ErrorCode::kModel,
               "initializer 'W': 3 bytes of data for a shape needing 8");
}

TEST(OnnxInputTest, ExternalDataOutsideTheModelsFolderIsRefused) {
  TempDir dir;
  fs::create_directory(dir.file("model"));
  test::write_text(dir.file("secret.bin"), std::string(8, 'x'));
  onnx::ModelProto m = small_model();
  onnx::TensorProto* w = m.mutable_graph()->mutable_initializer(0);
  w->clear_raw_data();
  w->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* loc = w->add_external_data();
  loc->set_key("location");
  for (const std::string& place : {std::string("../secret.bin"), dir.file("secret.bin")}) {
    loc->set_value(place);
    expect_error([&] { import_onnx(save(dir, m, "model/m.onnx")); }, ErrorCode::kModel,
                 "outside the model's folder");
  }
  // Inside it, it is read.
  test::write_text(dir.file("model/w.bin"), std::string("\0\0\300?\0\0\0\300", 8));
  loc->set_value("w.bin");
  const OnnxModel ok = import_onnx(save(dir, m, "model/m.onnx"));
  const at::Tensor y = ok.module->forward({torch::zeros({1, 2})}).toTensor();
  EXPECT_TRUE(y.allclose(torch::tensor({{1.5f, -2.0f}})));
}

TEST(OnnxInputTest, ACycleIsRefused) {
  TempDir dir;
  onnx::ModelProto m = small_model();
  onnx::GraphProto* g = m.mutable_graph();
  g->mutable_node(0)->set_input(0, "y");  // Relu reads Add's output, which reads Relu's
  expect_error([&] { import_onnx(save(dir, m)); }, ErrorCode::kModel, "fails ONNX's checker");
}

TEST(OnnxInputTest, AModelOverTheSizeLimitIsRefusedBeforeReading) {
  TempDir dir;
  const std::string path = dir.file("huge.onnx");
  { std::ofstream(path, std::ios::binary).put('x'); }
  fs::resize_file(path, kMaxOnnxBytes + 1);  // sparse: no disk used
  expect_error([&] { import_onnx(path); }, ErrorCode::kModel, "over the limit");
}

TEST(OnnxInputTest, AnUnsupportedOperatorIsNamed) {
  TempDir dir;
  onnx::ModelProto m = small_model();
  m.mutable_graph()->mutable_node(0)->set_op_type("Hardmax");
  expect_error([&] { import_onnx(save(dir, m)); }, ErrorCode::kUnsupported,
               "node '/block/Relu': unsupported operator Hardmax");
}

TEST(CliOnnxTest, ABadModelGetsOneLineAndTheModelExitCode) {
  TempDir dir;
  test::write_text(dir.file("bad.onnx"), "not a model");
  const test::RunResult r = test::run_cnnviz({"layers", "-m", dir.file("bad.onnx")});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(test::lines(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find("bad.onnx"), std::string::npos) << r.err;
}

// export_models.py --onnx refuses Faster R-CNN, whose region proposal
// network suppresses boxes inside the model, in one line and before any work.
TEST(CliOnnxTest, ExportRefusesFasterRcnn) {
  TempDir dir;
  const test::RunResult r =
      test::run({test::python(), test::source_dir() + "/scripts/export_models.py", "--onnx",
                 "--random-weights", "-o", dir.path(), "fasterrcnn_resnet50_fpn"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("fasterrcnn_resnet50_fpn: --onnx does not export Faster R-CNN"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir.file("fasterrcnn_resnet50_fpn.onnx")));
}

// docs/models.md lists the supported operators: exactly the importer's.
TEST(OnnxOperatorsTest, DocsListTheSupportedSet) {
  const std::string doc = test::read_text(test::source_dir() + "/docs/models.md");
  const size_t begin = doc.find("\nAbs, "), end = doc.find("\n\nAnything else", begin);
  ASSERT_NE(begin, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  std::string list = doc.substr(begin, end - begin);
  std::set<std::string> documented;
  std::string word;
  for (char c : list + " ") {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      word += c;
      continue;
    }
    if (!word.empty() && std::isupper(static_cast<unsigned char>(word[0]))) documented.insert(word);
    word.clear();
  }
  for (const std::string& op : onnx_supported_ops()) {
    EXPECT_TRUE(documented.count(op)) << op << " is supported but not in docs/models.md";
  }
  const std::set<std::string> supported(onnx_supported_ops().begin(), onnx_supported_ops().end());
  for (const std::string& w : documented) {
    // Words of the notes in parentheses that are not operators.
    if (w == "Indices" || w == "D") continue;
    EXPECT_TRUE(supported.count(w)) << w << " is in docs/models.md but not supported";
  }
}

}  // namespace
}  // namespace cnnviz
