// Hostile and careless use through the real binary: hostile names, lists,
// links, FIFOs, labels, journals and shards as a user meets them (exit code,
// one line naming the subject, results of the other images kept), usage
// errors, concurrent runs, and kill -9 at any moment.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/script.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <thread>

#include "cnnviz/io/npy.h"
#include "cnnviz/io/png.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace cnnviz {
namespace {

class CliRobustnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::squeezenet_path();
    out_ = dir_.file("out");
    photo_ = dir_.file("photo.png");
    cv::Mat m(60, 80, CV_8UC3);
    cv::randu(m, 0, 255);
    ASSERT_TRUE(cv::imwrite(photo_, m));
  }

  test::RunResult cnnviz(const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env = {}) {
    return test::run_cnnviz(args, env);
  }

  json manifest() const { return json::parse(test::read_text(out_ + "/manifest.json")); }

  // Every line cnnviz printed on stderr is its own ("cnnviz: ..."), none a
  // library's.
  static void expect_own_lines(const std::string& err) {
    for (const std::string& line : test::lines(err)) {
      EXPECT_EQ(line.rfind("cnnviz: ", 0), 0u) << "a line that is not cnnviz's: " << line;
    }
  }

  // `model_` saved again with its cnnviz.json changed by `edit`.
  std::string model_with(const std::string& name, const std::function<void(json&)>& edit) {
    torch::jit::ExtraFilesMap extra{{"cnnviz.json", ""}};
    torch::jit::Module m = torch::jit::load(model_, c10::Device(c10::kCPU), extra);
    json meta = json::parse(extra["cnnviz.json"]);
    edit(meta);
    const std::string path = dir_.file(name);
    m.save(path, {{"cnnviz.json", meta.dump()}});
    return path;
  }

  test::TempDir dir_;
  std::string model_, out_, photo_;
};

TEST_F(CliRobustnessTest, BadNamesAreImagesLikeAnyOther) {
  const std::string folder = dir_.file("names");
  fs::create_directories(folder);
  for (const std::string& name :
       {std::string("manifest.json.png"), std::string("journal.jsonl.png"),
        std::string("index.html.png"), std::string("caf\xe9.png")}) {
    fs::copy_file(photo_, folder + "/" + name);
  }
  test::RunResult r = cnnviz({"gradcam", "-m", model_, "-o", out_, folder});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json doc = manifest();  // valid JSON although one name is not UTF-8
  ASSERT_EQ(doc["images"].size(), 4u);
  std::set<std::string> dirs;
  for (const auto& img : doc["images"]) {
    EXPECT_FALSE(img.contains("error")) << img;
    dirs.insert(img["dir"].get<std::string>());
  }
  EXPECT_EQ(dirs, (std::set<std::string>{"caf_", "index.html-image", "journal.jsonl-image",
                                         "manifest.json-image"}));
  EXPECT_TRUE(fs::is_regular_file(out_ + "/manifest.json"));
  // The name that is not UTF-8 is kept losslessly, and resuming finds it.
  r = cnnviz({"gradcam", "-m", model_, "-o", out_, "--skip-existing", folder});
  EXPECT_NE(r.err.find("0 done, 4 skipped"), std::string::npos) << r.err;
}

TEST_F(CliRobustnessTest, NulSeparatedListsKeepEveryImageUnderItsOwnName) {
  const std::string a = dir_.file("a.png"), b = dir_.file("b.png");
  cv::imwrite(a, cv::Mat(50, 50, CV_8UC3, cv::Scalar(0, 0, 255)));
  cv::imwrite(b, cv::Mat(50, 50, CV_8UC3, cv::Scalar(255, 0, 0)));
  test::write_text(dir_.file("list"), a + std::string(1, '\0') + b + std::string(1, '\0') + photo_ +
                                          std::string(1, '\0'));
  test::RunResult r =
      cnnviz({"saliency", "-m", model_, "-o", out_, "--from-list", dir_.file("list")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json doc = manifest();
  ASSERT_EQ(doc["images"].size(), 3u);
  EXPECT_EQ(doc["images"][0]["image"], a);
  EXPECT_EQ(doc["images"][0]["dir"], "a");
  EXPECT_EQ(doc["images"][1]["image"], b);
  EXPECT_EQ(doc["images"][2]["dir"], "photo");
}

// A list of lines with a stray NUL byte (a bad edit): the images on the other
// lines are all processed, and the bad line fails alone, in one prefixed line.
TEST_F(CliRobustnessTest, AStrayNulInAListOfLinesFailsThatLineAlone) {
  const std::string a = dir_.file("a.png");
  cv::imwrite(a, cv::Mat(50, 50, CV_8UC3, cv::Scalar(0, 0, 255)));
  test::write_text(dir_.file("list"),
                   a + "\nbad" + std::string(1, '\0') + "name.png\n" + photo_ + "\n");
  test::RunResult r = cnnviz({"classify", "-m", model_, "--from-list", dir_.file("list")});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.out.find(a + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(photo_ + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("cnnviz: image 'bad\\0name.png': not found"), std::string::npos) << r.err;
  for (const std::string& line : test::lines(r.err)) {
    EXPECT_EQ(line.rfind("cnnviz: ", 0), 0u) << "unprefixed: " << line;
  }
}

TEST_F(CliRobustnessTest, NothingIsWrittenThroughLinksInOutdir) {
  const std::string target = dir_.file("victim.txt");
  test::write_text(target, "untouched\n");
  fs::create_directories(out_);
  fs::create_symlink(target, out_ + "/journal.jsonl");
  test::RunResult r = cnnviz({"gradcam", "-m", model_, "-o", out_, photo_});
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_EQ(test::lines(r.err).back(),
            "cnnviz: '" + out_ +
                "/journal.jsonl' is a symbolic link: refusing to write through it (remove it, "
                "or use another output directory)");
  EXPECT_EQ(test::read_text(target), "untouched\n");
  fs::remove(out_ + "/journal.jsonl");
  const std::string elsewhere = dir_.file("elsewhere");
  fs::create_directories(elsewhere);
  fs::create_symlink(elsewhere, out_ + "/photo");
  r = cnnviz({"gradcam", "-m", model_, "-o", out_, photo_});
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_NE(r.err.find("is a symbolic link: refusing to write maps through it"), std::string::npos);
  EXPECT_TRUE(fs::is_empty(elsewhere));
}

TEST_F(CliRobustnessTest, TinyFilesCannotAskForHugeMemory) {
  // A complete 32000x32000 1-bit PNG is 124 KB; its header is refused.
  std::vector<uint8_t> png;
  ASSERT_TRUE(cv::imencode(".png", cv::Mat(64, 64, CV_8UC1, cv::Scalar(0)), png));
  // Patch the IHDR size (the data stays 64x64: the size is refused first).
  for (int i = 0; i < 4; ++i) {
    png[16 + i] = static_cast<uint8_t>(32000 >> (24 - 8 * i));
    png[20 + i] = static_cast<uint8_t>(32000 >> (24 - 8 * i));
  }
  test::write_text(dir_.file("huge.png"), std::string(png.begin(), png.end()));
  test::RunResult r = cnnviz({"classify", "-m", model_, dir_.file("huge.png"), photo_});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("image '" + dir_.file("huge.png") +
                       "': 32000x32000 pixels, more than the budget of 200000000 (--max-pixels)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.out.find(photo_), std::string::npos) << "the good image is still classified";
  // The budget is the user's.
  r = cnnviz({"classify", "-m", model_, "--max-pixels", "4000", photo_});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("80x60 pixels, more than the budget of 4000"), std::string::npos) << r.err;
  // Metadata asking for a 20000-pixel crop is the model's fault, found at load.
  const std::string crop = model_with("crop.pt", [](json& m) {
    m["preprocess"]["crop"] = 20000;
    m["preprocess"]["resize"] = 20000;
  });
  r = cnnviz({"classify", "-m", crop, photo_});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(test::lines(r.err).back(),
            "cnnviz: model '" + crop +
                "': invalid cnnviz.json: preprocess.crop: 20000 is out of range (0 to 4096) "
                "(re-export it with scripts/export_models.py)");
  // Options are bounded: an error naming the bound, not an allocation.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"gradcam", "--batch-size", "1024"},
        std::vector<std::string>{"smoothgrad", "--samples", "100001"},
        std::vector<std::string>{"ig", "--steps", "20000"},
        std::vector<std::string>{"gradcam", "--top", "1000"},
        std::vector<std::string>{"classify", "--threads", "100000"}}) {
    std::vector<std::string> full = args;
    full.insert(full.end(), {"-m", model_, photo_});
    r = cnnviz(full);
    EXPECT_EQ(r.exit_code, 2) << args[1];
    EXPECT_NE(r.err.find("not in range"), std::string::npos) << r.err;
  }
}

TEST_F(CliRobustnessTest, FifosNeverBlock) {
  const std::string fifo = dir_.file("pipe.jpg");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  const std::string folder = dir_.file("folder");
  fs::create_directories(folder);
  fs::copy_file(photo_, folder + "/photo.png");
  ASSERT_EQ(mkfifo((folder + "/in-folder.png").c_str(), 0644), 0);
  test::write_text(folder + "/anim.gif", "GIF89a");
  // Each run would hang forever if a FIFO were opened for reading.
  test::RunResult r = cnnviz({"classify", "-m", model_, fifo, folder});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("image '" + fifo + "': not a regular file"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("skipped 1 file without an image extension (anim.gif) and 1 that is not "
                       "a regular file (in-folder.png)"),
            std::string::npos)
      << r.err;
  const std::string model_fifo = dir_.file("model.pt");
  ASSERT_EQ(mkfifo(model_fifo.c_str(), 0644), 0);
  r = cnnviz({"classify", "-m", model_fifo, photo_});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("not a regular file"), std::string::npos);
  r = cnnviz({"classify", "-m", model_, "--from-list", fifo});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("list file '" + fifo + "': not a regular file"), std::string::npos);
}

TEST_F(CliRobustnessTest, MergeSaysWhatIsMissing) {
  ASSERT_EQ(
      cnnviz({"saliency", "-m", model_, "-o", out_, "--shard", "1/2", photo_, photo_}).exit_code,
      0);
  test::RunResult r = cnnviz({"merge", out_});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "cnnviz: merge: shard 2 of 2 missing in '" + out_ +
                       "' (run them, or merge what is there with --partial)\n");
  r = cnnviz({"merge", "--partial", out_});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.err,
            "cnnviz: warning: shard 2 of 2 missing: their images are not in the "
            "manifest\n");
  // A shard of the wrong shape is bad input (3), never an internal error
  // (1), and the message names the file and what is wrong with it.
  const std::string shard = out_ + "/manifest.shard-2-of-2.json";
  for (const auto& [text, reason] : std::vector<std::pair<std::string, std::string>>{
           {R"({"images": [{"index": [1]}]})", "other settings than"},
           {"not json", "not valid JSON"},
           {std::string(100, '[') + std::string(100, ']'), "nested deeper than 64 levels"},
           {R"({"images": "cat.jpg"})", "images"}}) {
    test::write_text(shard, text);
    r = cnnviz({"merge", out_});
    EXPECT_EQ(r.exit_code, 3) << r.err;
    EXPECT_NE(r.err.find("'" + shard + "'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(reason), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("missing"), std::string::npos) << r.err;
  }
  test::write_text(out_ + "/manifest.json", std::string(100000, '[') + std::string(100000, ']'));
  r = cnnviz({"report", out_});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("nested deeper than 64 levels"), std::string::npos);
}

TEST_F(CliRobustnessTest, WrongLabelCountsAndEmptyClassesAreErrors) {
  test::write_text(dir_.file("three.txt"), "a\nb\nc\n");
  for (const char* cmd : {"classify", "gradcam", "saliency"}) {
    std::vector<std::string> args = {cmd, "-m", model_, "--labels", dir_.file("three.txt"), photo_};
    if (std::string(cmd) != "classify") args.insert(args.end(), {"-o", out_});
    test::RunResult r = cnnviz(args);
    EXPECT_EQ(r.exit_code, 4) << cmd;
    EXPECT_NE(r.err.find("outputs 1000 classes but has 3 labels"), std::string::npos) << r.err;
  }
  const std::string five = model_with("five.pt", [](json& m) {
    m["labels"] = {"a", "b", "c", "d", "e"};
    m.erase("num_classes");
  });
  EXPECT_EQ(cnnviz({"gradcam", "-m", five, "-o", out_, photo_}).exit_code, 4);
  test::RunResult r = cnnviz({"gradcam", "-m", model_, "-o", out_, "--class", "", photo_});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--class '': empty"), std::string::npos);
  r = cnnviz({"gradcam", "-m", model_, "-o", out_, "--class", "0000000000000000001", photo_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(manifest()["images"][0]["targets"][0]["class"], 1);
  r = cnnviz({"gradcam", "-m", model_, "-o", out_, "--class", "99999999999999999999999", photo_});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("out of range"), std::string::npos);
}

TEST_F(CliRobustnessTest, ModelsWithFewClassesClassifyWithoutK) {
  torch::jit::Module tiny("Tiny");
  tiny.define("def forward(self, x):\n  return x.mean([2, 3])\n");  // [N,3]: 3 classes
  const std::string path = dir_.file("tiny.pt");
  tiny.save(path);
  test::RunResult r = cnnviz({"classify", "-m", path, photo_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::lines(r.out).size(), 4u) << r.out;  // the name, then 3 classes
  r = cnnviz({"classify", "-m", path, "-k", "5", photo_});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("-k 5: must be between 1 and 3"), std::string::npos) << r.err;
}

TEST_F(CliRobustnessTest, JournalsFromOthersAreNotTrustedBlindly) {
  ASSERT_EQ(cnnviz({"saliency", "-m", model_, "-o", out_, photo_}).exit_code, 0);
  const std::string journal = out_ + "/journal.jsonl";
  std::vector<std::string> lines = test::lines(test::read_text(journal));
  ASSERT_EQ(lines.size(), 1u);
  // An entry of the same run whose files lie outside OUTDIR, then a line
  // cut short: the image is done again, and its new line is a line.
  json entry = json::parse(lines[0]);
  for (auto& f : entry["files"]) f["path"] = "/etc/hostname";
  test::write_text(journal, entry.dump() + "\n{\"image\": \"" + photo_ + "\", \"run_k");
  test::RunResult r = cnnviz({"saliency", "-m", model_, "-o", out_, "--skip-existing", photo_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("1 done, 0 skipped"), std::string::npos) << r.err;
  lines = test::lines(test::read_text(journal));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NO_THROW(json::parse(lines[2]));
  // Lines of the wrong shape are skipped, not fatal.
  test::write_text(journal, "[1]\n{\"image\": 5, \"files\": 3}\n" + std::string(100, '[') + "\n");
  r = cnnviz({"saliency", "-m", model_, "-o", out_, "--skip-existing", photo_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(CliRobustnessTest, AJournalEndingWithoutANewlineLosesNoEntry) {
  // A run killed between an entry and its newline (or a journal edited by
  // hand), then a resumed run with one more image: the old entry still
  // counts, and the new one is a line of its own.
  ASSERT_EQ(cnnviz({"saliency", "-m", model_, "-o", out_, photo_}).exit_code, 0);
  const std::string journal = out_ + "/journal.jsonl";
  std::string text = test::read_text(journal);
  ASSERT_EQ(text.back(), '\n');
  text.pop_back();
  test::write_text(journal, text);
  const std::string second = dir_.file("second.png");
  fs::copy_file(photo_, second);
  test::RunResult r =
      cnnviz({"saliency", "-m", model_, "-o", out_, "--skip-existing", photo_, second});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("1 done, 1 skipped"), std::string::npos) << r.err;
  const std::vector<std::string> lines = test::lines(test::read_text(journal));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(json::parse(lines[0])["image"], photo_);
  EXPECT_EQ(json::parse(lines[1])["image"], second);
}

TEST_F(CliRobustnessTest, UsageErrorsAreOneLineWithAHint) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"gradcam", "--bogus", photo_},
       "cnnviz: The following argument was not expected: --bogus "
       "(see 'cnnviz gradcam --help')"},
      {{"gradcam", "--all-layer", photo_},
       "cnnviz: The following argument was not expected: --all-layer "
       "(did you mean --all-layers? see 'cnnviz gradcam --help')"},
      {{"classify", "--topk", "3", photo_},
       "cnnviz: The following argument was not expected: --topk "
       "(did you mean --top-k? see 'cnnviz classify --help')"},
      {{"classify", "-k", "0", photo_},
       "cnnviz: --top-k: Value 0 not in range 1 to 100000 (see "
       "'cnnviz classify --help')"},
      {{"gradcam", "--top", "2", "--class", "3", photo_}, "(see 'cnnviz gradcam --help')"},
      {{"gradcm", photo_}, "cnnviz: unknown subcommand 'gradcm' (nearest: gradcam,"},
      {{}, "cnnviz: A subcommand is required (see 'cnnviz --help')"},
      {{"classify", "--batch-size"}, "(see 'cnnviz classify --help')"},
  };
  for (const auto& [args, start] : cases) {
    test::RunResult r = cnnviz(args);
    EXPECT_EQ(r.exit_code, 2) << start;
    ASSERT_EQ(test::lines(r.err).size(), 1u) << r.err;
    EXPECT_NE(r.err.find(start), std::string::npos) << r.err;
    expect_own_lines(r.err);
  }
}

TEST_F(CliRobustnessTest, LibrariesPrintNothingOfTheirOwn) {
  cv::Mat noise(90, 120, CV_8UC3);
  cv::randu(noise, 0, 255);
  std::vector<std::string> files;
  for (const char* ext : {".bmp", ".tif", ".png", ".jpg", ".webp"}) {
    std::vector<uint8_t> bytes;
    ASSERT_TRUE(cv::imencode(ext, noise, bytes));
    const std::string cut = dir_.file(std::string("cut") + ext);
    test::write_text(cut, std::string(bytes.begin(), bytes.begin() + bytes.size() / 2));
    files.push_back(cut);
  }
  // (cnnviz's encoder: libpng's, in OpenCV, stops at a million rows)
  write_png(dir_.file("tall.png"), cv::Mat(5'000'000, 1, CV_8UC3, cv::Scalar(9, 9, 9)),
            PixelOrder::kRgb);
  files.push_back(dir_.file("tall.png"));
  std::vector<std::string> args = {"classify", "-m", model_};
  args.insert(args.end(), files.begin(), files.end());
  test::RunResult r = cnnviz(args);
  EXPECT_EQ(r.exit_code, 3);
  expect_own_lines(r.err);
  EXPECT_NE(r.err.find("image '" + dir_.file("tall.png") + "': 1x5000000 pixels: too elongated"),
            std::string::npos)
      << r.err;
}

TEST_F(CliRobustnessTest, RunsLeaveNoLockFileAndFailedOnesNoEmptyDirectory) {
  // A run refused for an option value leaves no ./cnnviz-out/ behind.
  test::TempDir cwd;
  test::RunResult r = test::run({"/bin/sh", "-c",
                                 "cd '" + cwd.path() + "' && exec '" + test::cnnviz_bin() +
                                     "' occlusion -m '" + model_ + "' --window 300 '" + photo_ +
                                     "'"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_FALSE(fs::exists(cwd.file("cnnviz-out"))) << r.err;
  // A run that worked says where its files are and leaves no lock file.
  r = cnnviz({"saliency", "-m", model_, "-o", out_, photo_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string dir = fs::path(photo_).stem().string();
  EXPECT_NE(r.err.find("cnnviz: wrote 8 files to " + out_ + "/" + dir + "/\n"), std::string::npos)
      << r.err;
  for (const auto& e : fs::directory_iterator(out_)) {
    EXPECT_EQ(e.path().filename().string().rfind(".cnnviz-lock", 0), std::string::npos)
        << e.path();
  }
  // A run of nothing new prints no rate.
  r = cnnviz({"saliency", "-m", model_, "-o", out_, "--skip-existing", photo_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("0 done, 1 skipped, 0 failed of 1 in "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("images/s"), std::string::npos) << r.err;
  // The manifest counts as the command line does.
  EXPECT_EQ(manifest()["summary"]["written"], 0);
  EXPECT_EQ(manifest()["summary"]["skipped"], 1);
}

TEST_F(CliRobustnessTest, OneRunPerOutdirShardsSideBySide) {
  const std::string folder = dir_.file("many");
  fs::create_directories(folder);
  for (int i = 0; i < 12; ++i) fs::copy_file(photo_, folder + "/p" + std::to_string(i) + ".png");
  test::TempDir run_dir;
  const int pid =
      test::start({test::cnnviz_bin(), "gradcam", "--all-layers", "-m", model_, "-o", out_, folder},
                  run_dir.path(), {{"CNNVIZ_TEST_WRITE_DELAY_MS", "40"}});
  for (int i = 0; i < 600 && !fs::exists(out_ + "/.cnnviz-lock.run"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  test::RunResult second = cnnviz({"gradcam", "-m", model_, "-o", out_, photo_});
  EXPECT_EQ(second.exit_code, 6);
  EXPECT_EQ(second.err.substr(second.err.rfind("cnnviz: ")),
            "cnnviz: output directory '" + out_ +
                "' is in use by another cnnviz run: wait for it to finish, or write to another "
                "directory with -o\n");
  // A shard of a run writes beside it.
  test::RunResult shard = cnnviz({"saliency", "-m", model_, "-o", out_, "--shard", "1/2", folder});
  EXPECT_EQ(shard.exit_code, 0) << shard.err;
  test::RunResult first = test::finish(pid, run_dir.path());
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(manifest()["images"].size(), 12u);
}

// kill -9 at random moments of a run: whatever is on disk under a final
// name is whole (every PNG and .npy decodes, every journal line parses, a
// manifest if any parses), and --skip-existing then completes the run with
// each image once.
TEST_F(CliRobustnessTest, KillNineAtAnyMomentLeavesNothingCorrupt) {
  const std::string folder = dir_.file("many");
  fs::create_directories(folder);
  cv::RNG rng(9);
  for (int i = 0; i < 10; ++i) {
    cv::Mat m(120 + 7 * i, 160, CV_8UC3);
    rng.fill(m, cv::RNG::UNIFORM, 0, 256);
    cv::imwrite(folder + "/p" + std::to_string(i) + ".png", m);
  }
  std::mt19937 gen(1234);
  std::uniform_int_distribution<int> delay_ms(300, 2500);
  for (int round = 0; round < 4; ++round) {
    test::TempDir run_dir;
    const int pid = test::start({test::cnnviz_bin(), "gradcam", "--all-layers", "-m", model_, "-o",
                                 out_, "--skip-existing", "--batch-size", "2", folder},
                                run_dir.path());
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(gen)));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!fs::exists(out_)) continue;
    for (const auto& e : fs::recursive_directory_iterator(out_)) {
      const std::string p = e.path().string();
      if (e.path().extension() == ".png") {
        EXPECT_FALSE(cv::imread(p, cv::IMREAD_UNCHANGED).empty()) << p;
      } else if (e.path().extension() == ".npy") {
        EXPECT_NO_THROW(read_npy(p)) << p;
      } else if (e.path().filename() == "manifest.json") {
        EXPECT_NO_THROW(json::parse(test::read_text(p)));
      } else if (e.path().filename() == "journal.jsonl") {
        for (const std::string& line : test::lines(test::read_text(p))) {
          EXPECT_NO_THROW(json::parse(line)) << line;
        }
      }
    }
  }
  test::RunResult r = cnnviz({"gradcam", "--all-layers", "-m", model_, "-o", out_,
                              "--skip-existing", "--batch-size", "2", folder});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json doc = manifest();
  ASSERT_EQ(doc["images"].size(), 10u);
  std::set<std::string> seen;
  for (const auto& img : doc["images"]) {
    EXPECT_TRUE(seen.insert(img["image"].get<std::string>()).second);
    for (const auto& f : img["files"]) {
      EXPECT_FALSE(
          cv::imread(out_ + "/" + f["path"].get<std::string>(), cv::IMREAD_UNCHANGED).empty() &&
          f["format"] == "png")
          << f["path"];
    }
  }
}

}  // namespace
}  // namespace cnnviz
