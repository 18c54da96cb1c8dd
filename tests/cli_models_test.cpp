// End-to-end tests of the model options: models without cnnviz metadata
// (plain scripted, traced and frozen) with --labels, --size, --mean and
// --std, and --device.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cnnviz/core/runtime.h"
#include "test_util.h"

namespace cnnviz {
namespace {

using CliModelsTest = test::PhotoCliTest;

// Models a user scripted or traced without scripts/export_models.py.
TEST_F(CliModelsTest, ModelsWithoutMetadata) {
  const std::string plain = dir_.file("plain.pt"), traced = dir_.file("traced.pt"),
                    frozen = dir_.file("frozen.pt");
  test::RunResult r = test::run({test::python(), "-c",
                                 "import sys, torch, torchvision\n"
                                 "torch.manual_seed(0)\n"
                                 "m = torchvision.models.squeezenet1_1(weights=None).eval()\n"
                                 "torch.jit.save(torch.jit.script(m), sys.argv[1])\n"
                                 "x = torch.randn(1, 3, 160, 160)\n"
                                 "t = torch.jit.trace(m, x)\n"
                                 "torch.jit.save(t, sys.argv[2])\n"
                                 "torch.jit.save(torch.jit.freeze(t), sys.argv[3])\n",
                                 plain, traced, frozen});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string labels;
  for (int i = 0; i < 1000; ++i) labels += "thing " + std::to_string(i) + "\n";
  test::write_text(dir_.file("labels.txt"), labels);

  for (const std::string& model : {plain, traced}) {
    r = cnnviz({"gradcam", "-q", "--all-layers", "-m", model, "--labels", dir_.file("labels.txt"),
                "--size", "160", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "-o", out_,
                image_});
    ASSERT_EQ(r.exit_code, 0) << model << ": " << r.err;
    nlohmann::json doc = read_json(out_ + "/manifest.json");
    EXPECT_EQ(doc["layers"].size(), 13u) << "features.0..12, discovered";
    EXPECT_EQ(doc["layers"].back(), "features.12");
    const auto& target = doc["images"][0]["targets"][0];
    EXPECT_EQ(target["label"], "thing " + std::to_string(target["class"].get<int>()));
    EXPECT_EQ(r.err.find("no cnnviz.json"), std::string::npos) << "options given: no warning";
  }
  r = cnnviz({"layers", "-m", plain});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("no cnnviz.json metadata"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("features.12"), std::string::npos);

  // Labels that do not fit the model.
  test::write_text(dir_.file("ten.txt"), "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n");
  r = cnnviz({"classify", "-m", plain, "--labels", dir_.file("ten.txt"), image_});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("outputs 1000 classes but has 10 labels"), std::string::npos) << r.err;
  r = cnnviz({"classify", "-m", plain, "--labels", dir_.file("missing.txt"), image_});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("missing.txt"), std::string::npos) << r.err;

  // A frozen model has no submodules: layer methods say so, the others work.
  r = cnnviz({"gradcam", "-q", "-m", frozen, "--size", "160", "-o", out_, image_});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("no submodules"), std::string::npos) << r.err;
  EXPECT_EQ(test::lines(r.err).size(), 1u) << "one error line";
  r = cnnviz({"layers", "-m", frozen, "--size", "160"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("no submodules"), std::string::npos) << r.out;
  for (const char* method : {"guided-backprop", "saliency", "cam"}) {
    r = cnnviz({method, "-q", "-m", frozen, "--size", "160", "-o", out_, image_});
    EXPECT_EQ(r.exit_code, 0) << method << ": " << r.err;
  }
}

// A model whose forward gives no classes ([N,0]): every subcommand says what
// is wrong with the model (exit 4), not with an option the user never gave.
TEST_F(CliModelsTest, AModelWithoutClassesIsAModelError) {
  torch::jit::Module zero("Zero");
  zero.define("def forward(self, x):\n  return x.flatten(1)[:, :0]\n");
  const std::string path = dir_.file("zero.pt");
  zero.save(path);
  for (const char* sub : {"classify", "saliency"}) {
    test::RunResult r = sub == std::string("classify")
                            ? cnnviz({sub, "-m", path, image_})
                            : cnnviz({sub, "-m", path, "-o", out_, image_});
    EXPECT_EQ(r.exit_code, 4) << sub << ": " << r.err;
    EXPECT_NE(r.err.find("cnnviz: model '" + path + "': forward returns no classes"),
              std::string::npos)
        << sub << ": " << r.err;
    EXPECT_EQ(r.err.find("-k "), std::string::npos) << r.err;
  }
}

TEST_F(CliModelsTest, DeviceOption) {
  const bool cuda = resolve_device("auto").is_cuda();
  test::RunResult r =
      cnnviz({"gradcam", "-q", "--device", "cpu", "-m", model_, "-o", out_, image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_json(out_ + "/manifest.json")["device"], "cpu");
  r = cnnviz({"classify", "--device", "auto", "-m", model_, image_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = cnnviz({"classify", "--device", "tpu", "-m", model_, image_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--device 'tpu': expected cpu, cuda, cuda:N or auto"), std::string::npos);
  r = cnnviz({"classify", "--device", "cuda", "-m", model_, image_});
  if (cuda) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
  } else {
    EXPECT_EQ(r.exit_code, 5) << r.err;
    EXPECT_NE(r.err.find("--device cuda: CUDA is not available"), std::string::npos) << r.err;
    EXPECT_EQ(test::lines(r.err).size(), 1u) << r.err;
  }
}

}  // namespace
}  // namespace cnnviz
