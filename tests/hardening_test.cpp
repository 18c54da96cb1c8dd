// Hostile and careless inputs, one class of defect per test: what cnnviz
// reads from outside (JSON, metadata, images, lists, journals, manifests)
// is bounded, checked before the expensive step, and refused with one line
// naming the subject; nothing it writes leaves OUTDIR.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "cnnviz/files.h"
#include "cnnviz/image.h"
#include "cnnviz/inputs.h"
#include "cnnviz/json_util.h"
#include "cnnviz/manifest.h"
#include "cnnviz/model.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace cnnviz {
namespace {

std::string nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(HardeningTest, JsonNestingIsBounded) {
  EXPECT_NO_THROW(parse_json(nested(kMaxJsonDepth), "x", ErrorCode::kInput));
  test::expect_error([] { parse_json(nested(200000), "m.json", ErrorCode::kInput); },
                     ErrorCode::kInput, "m.json: not valid JSON (nested deeper than 64 levels)");
  test::expect_error([] { parse_json("{\"a\": ", "m.json", ErrorCode::kModel); }, ErrorCode::kModel,
                     "m.json: not valid JSON (parse error");
  EXPECT_TRUE(try_parse_json(nested(1000)).is_discarded());
  EXPECT_FALSE(try_parse_json("{\"a\": [1, 2]}").is_discarded());
}

TEST(HardeningTest, Utf8IsValidatedAndDumpedWithoutThrowing) {
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9 \xf0\x9f\x90\x88"));
  for (const char* bad : {"caf\xe9", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
    EXPECT_FALSE(valid_utf8(bad)) << bad;
  }
  json doc;
  set_image_name(doc, "photos/caf\xe9.png");
  const json back = json::parse(dump_json(doc));
  EXPECT_EQ(image_name(back), "photos/caf\xe9.png") << "the name survives the manifest";
}

TEST(HardeningTest, StemsNeverTakeTheRunsOwnNames) {
  const std::vector<std::string> stems =
      unique_stems({"a/manifest.json.png", "b/journal.jsonl.png", "c/index.html.png",
                    "d/.hidden.png", "e/evaluate.json.jpg", "f/caf\xe9.png", "g/cat.png"});
  EXPECT_EQ(stems, (std::vector<std::string>{"manifest.json-image", "journal.jsonl-image",
                                             "index.html-image", ".hidden-image",
                                             "evaluate.json-image", "caf_", "cat"}));
}

TEST(HardeningTest, MetadataIsValidatedFieldByField) {
  const std::string good =
      R"({"cnnviz_format": 1, "labels": ["a", "b"], "num_classes": 2,
          "preprocess": {"resize": 256, "crop": 224, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}})";
  EXPECT_NO_THROW(parse_model_info(good, "m.pt"));
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"cnnviz_format": 1, "preprocess": {"crop": 20000, "resize": 20000}})",
       "preprocess.crop: 20000 is out of range (1 to 4096)"},
      {R"({"cnnviz_format": 1, "preprocess": {"resize": 100000}})", "preprocess.resize"},
      {R"({"cnnviz_format": 1, "labels": ["a", 3]})", "labels[1]: must be a string"},
      {R"({"cnnviz_format": 1, "labels": "abc"})", "labels: must be a list of strings"},
      {R"({"cnnviz_format": 1, "num_classes": -4})", "num_classes: -4 is out of range"},
      {R"({"cnnviz_format": 1, "num_classes": 1e400})", "not valid JSON"},
      {R"({"cnnviz_format": 1, "preprocess": {"std": [1, 0, 1]}})", "preprocess.std"},
      {R"({"cnnviz_format": 1, "preprocess": {"mean": [1, 2]}})", "preprocess.mean"},
      {R"({"cnnviz_format": 1, "name": ")" + std::string(5000, 'x') + R"("})",
       "name: longer than 4096 bytes"},
      {R"({"cnnviz_format": 1, "weights": [1]})", "weights: must be an object"},
      {R"({"cnnviz_format": 1, "gradcam_layer": 7})", "gradcam_layer: must be a string"},
      {R"({"cnnviz_format": 1, "x": )" + nested(100) + "}",
       "not valid JSON (nested deeper than 64 levels)"},
      {"[1, 2]", "not a JSON object"},
  };
  for (const auto& [text, problem] : bad) {
    SCOPED_TRACE(text.substr(0, 80));
    test::expect_error([&] { parse_model_info(text, "m.pt"); }, ErrorCode::kModel,
                       "model 'm.pt': invalid cnnviz.json: " + problem);
  }
  test::expect_error([] { parse_model_info(std::string(17 << 20, ' '), "m.pt"); },
                     ErrorCode::kModel, "larger than 16 MiB");
}

TEST(HardeningTest, LabelCountsAreCheckedAgainstTheOutputs) {
  ModelInfo info;
  info.path = "m.pt";
  info.labels = {"a", "b", "c"};
  EXPECT_NO_THROW(check_output_classes(info, 3));
  test::expect_error([&] { check_output_classes(info, 1000); }, ErrorCode::kModel,
                     "model 'm.pt': outputs 1000 classes but has 3 labels");
  info.labels.clear();
  info.num_classes = 5;
  test::expect_error([&] { check_output_classes(info, 1000); }, ErrorCode::kModel, "num_classes 5");
}

class HardeningFilesTest : public ::testing::Test {
 protected:
  test::TempDir dir_;
};

TEST_F(HardeningFilesTest, OnlyRegularFilesOfBoundedSizeAreRead) {
  const std::string fifo = dir_.file("pipe.png");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  const auto start = std::chrono::steady_clock::now();
  test::expect_error([&] { read_file(fifo, "image", 1000); }, ErrorCode::kInput,
                     "image '" + fifo + "': not a regular file");
  test::expect_error([&] { read_image_rgb(fifo); }, ErrorCode::kInput, "not a regular file");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2)) << "it blocked";
  // A 5 GiB sparse file is refused by its size, not read.
  const std::string sparse = dir_.file("sparse.jpg");
  const int fd = ::open(sparse.c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, int64_t{5} << 30), 0);
  ::close(fd);
  test::expect_error([&] { read_image_rgb(sparse); }, ErrorCode::kInput, "too large");
  test::write_text(dir_.file("small"), "12345");
  test::expect_error([&] { read_file(dir_.file("small"), "list file", 4); }, ErrorCode::kInput,
                     "list file '" + dir_.file("small") + "': too large");
  EXPECT_EQ(read_file(dir_.file("small"), "x", 5).size(), 5u);
}

// A PNG whose IHDR declares w x h (its data need not be complete: the size
// is refused before decoding).
std::string png_header(uint32_t w, uint32_t h) {
  std::vector<uint8_t> d = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n',
                            0,    0,   0,   13,  'I',  'H',  'D',  'R'};
  for (uint32_t v : {w, h}) {
    for (int s = 24; s >= 0; s -= 8) d.push_back(static_cast<uint8_t>(v >> s));
  }
  d.insert(d.end(), {1, 0, 0, 0, 0, 0, 0, 0, 0});
  return std::string(d.begin(), d.end());
}

TEST_F(HardeningFilesTest, PixelBudgetIsCheckedBeforeDecoding) {
  test::write_text(dir_.file("huge.png"), png_header(32000, 32000));
  test::expect_error([&] { read_image_rgb(dir_.file("huge.png")); }, ErrorCode::kInput,
                     "32000x32000 pixels, more than the budget of 200000000 (--max-pixels)");
  // A JPEG whose frame header claims 30000x30000.
  cv::Mat small(16, 16, CV_8UC3, cv::Scalar(10, 200, 30));
  std::vector<uint8_t> jpeg;
  ASSERT_TRUE(cv::imencode(".jpg", small, jpeg));
  for (size_t i = 0; i + 8 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {
      jpeg[i + 5] = jpeg[i + 7] = 30000 >> 8;
      jpeg[i + 6] = jpeg[i + 8] = 30000 & 0xFF;
      break;
    }
  }
  test::expect_error([&] { decode_image_rgb(jpeg, "big.jpg"); }, ErrorCode::kInput,
                     "image 'big.jpg': 30000x30000 pixels");
  // The budget is the caller's.
  cv::Mat photo(300, 400, CV_8UC3, cv::Scalar(1, 2, 3));
  ASSERT_TRUE(cv::imwrite(dir_.file("photo.png"), photo));
  EXPECT_NO_THROW(read_image_rgb(dir_.file("photo.png"), 120000));
  test::expect_error([&] { read_image_rgb(dir_.file("photo.png"), 119999); }, ErrorCode::kInput,
                     "400x300 pixels, more than the budget of 119999");
}

TEST_F(HardeningFilesTest, CorruptJpegDataIsRefusedNotGreyFilled) {
  cv::Mat noise(240, 320, CV_8UC3);
  cv::randu(noise, 0, 255);
  std::vector<uint8_t> jpeg;
  ASSERT_TRUE(cv::imencode(".jpg", noise, jpeg));
  // Cut in half, with an end-of-image marker added to look complete.
  std::vector<uint8_t> fake(jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() / 2));
  fake.insert(fake.end(), {0xFF, 0xD9});
  test::expect_error([&] { decode_image_rgb(fake, "fake.jpg"); }, ErrorCode::kInput,
                     "image 'fake.jpg': corrupt or truncated JPEG data (Corrupt JPEG data");
  // Extraneous bytes before a marker change no pixel: accepted, as PIL does.
  std::vector<uint8_t> padded(jpeg.begin(), jpeg.end() - 2);
  padded.insert(padded.end(), {0x00, 0x00, 0x00, 0xFF, 0xD9});
  cv::Mat a = decode_image_rgb(jpeg, "a.jpg"), b = decode_image_rgb(padded, "b.jpg");
  EXPECT_EQ(cv::norm(a, b, cv::NORM_INF), 0);
}

// cnnviz's own JPEG and PNG decoders give OpenCV's pixels (as RGB), for
// every layout a file can have.
TEST_F(HardeningFilesTest, OwnDecodersMatchOpenCV) {
  cv::RNG rng(5);
  std::vector<std::pair<std::string, std::vector<int>>> cases = {
      {"rgb.jpg", {}},  {"grey.jpg", {}}, {"progressive.jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}},
      {"rgb.png", {}},  {"grey.png", {}}, {"rgba.png", {}},
      {"deep.png", {}},
  };
  for (const auto& [name, params] : cases) {
    SCOPED_TRACE(name);
    cv::Mat img;
    if (name.rfind("grey", 0) == 0) {
      img.create(37, 53, CV_8UC1);
    } else if (name == "rgba.png") {
      img.create(37, 53, CV_8UC4);
    } else if (name == "deep.png") {
      img.create(37, 53, CV_16UC3);
    } else {
      img.create(37, 53, CV_8UC3);
    }
    rng.fill(img, cv::RNG::UNIFORM, 0, name == "deep.png" ? 65536 : 256);
    const std::string path = dir_.file(name);
    ASSERT_TRUE(cv::imwrite(path, img, params));
    cv::Mat opencv = cv::imread(path, cv::IMREAD_UNCHANGED), want;
    if (opencv.depth() == CV_16U) opencv.convertTo(opencv, CV_8U, 1.0 / 256.0);
    switch (opencv.channels()) {
      case 1:
        cv::cvtColor(opencv, want, cv::COLOR_GRAY2RGB);
        break;
      case 4:
        cv::cvtColor(opencv, want, cv::COLOR_BGRA2RGB);
        break;
      default:
        cv::cvtColor(opencv, want, cv::COLOR_BGR2RGB);
    }
    const cv::Mat got = read_image_rgb(path);
    ASSERT_EQ(got.size(), want.size());
    // 16-bit: OpenCV's convertTo rounds, cnnviz keeps the high byte (Pillow).
    EXPECT_LE(cv::norm(got, want, cv::NORM_INF), name == "deep.png" ? 1 : 0);
  }
}

TEST_F(HardeningFilesTest, ListsAndFolders) {
  // NUL-separated, as find -print0 writes it: names may hold newlines.
  using namespace std::string_literals;
  test::write_text(dir_.file("list0"), "a b.png\0line\nbreak.png\0c.png\0"s);
  std::istringstream none;
  EXPECT_EQ(expand_inputs({}, dir_.file("list0"), none).images,
            (std::vector<std::string>{"a b.png", "line\nbreak.png", "c.png"}));
  std::istringstream in("x.png\r\n# comment\n\n  \ny.png  \n");
  EXPECT_EQ(expand_inputs({}, "-", in).images, (std::vector<std::string>{"x.png", "y.png"}));
  // A folder says what it skipped: files without an image extension, and
  // image names that are not regular files (a FIFO would block).
  const std::string folder = dir_.file("photos");
  fs::create_directories(folder);
  cv::imwrite(folder + "/a.png", cv::Mat(4, 4, CV_8UC3, cv::Scalar(1, 2, 3)));
  test::write_text(folder + "/anim.gif", "GIF89a");
  ASSERT_EQ(mkfifo((folder + "/pipe.jpg").c_str(), 0644), 0);
  const ExpandedInputs got = expand_inputs({folder}, "", none);
  EXPECT_EQ(got.images, (std::vector<std::string>{folder + "/a.png"}));
  ASSERT_EQ(got.notes.size(), 1u);
  EXPECT_EQ(got.notes[0], "'" + folder +
                              "': skipped 1 file without an image extension (anim.gif) and 1 that "
                              "is not a regular file (pipe.jpg)");
}

TEST_F(HardeningFilesTest, JournalsAreNotFollowedOrTrustedBlindly) {
  // A link named journal.jsonl gets nothing appended to its target.
  const std::string target = dir_.file("target.txt");
  test::write_text(target, "untouched\n");
  fs::create_directories(dir_.file("out"));
  fs::create_symlink(target, dir_.file("out/journal.jsonl"));
  test::expect_error([&] { Journal j(dir_.file("out/journal.jsonl")); }, ErrorCode::kOutput,
                     "is a symbolic link");
  EXPECT_EQ(test::read_text(target), "untouched\n");
  // A line left without its newline is ended before the next entry.
  const std::string path = dir_.file("j.jsonl");
  test::write_text(path, "{\"image\": \"half");
  {
    Journal j(path);
    j.append(json{{"image", "b.png"}, {"files", json::array()}}, "k");
  }
  const std::vector<std::string> lines = test::lines(test::read_text(path));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NO_THROW(json::parse(lines[1]));
  // Entries naming files outside OUTDIR, or links, are not complete outputs.
  test::write_text(dir_.file("out/x.png"), "x");
  fs::create_symlink(target, dir_.file("out/link.png"));
  auto entry = [](const std::string& p) { return json{{"files", {{{"path", p}}}}}; };
  EXPECT_TRUE(outputs_complete(dir_.file("out"), entry("x.png")));
  EXPECT_FALSE(outputs_complete(dir_.file("out"), entry(target)));
  EXPECT_FALSE(outputs_complete(dir_.file("out"), entry("../target.txt")));
  EXPECT_FALSE(outputs_complete(dir_.file("out"), entry("link.png")));
  EXPECT_FALSE(outputs_complete(dir_.file("out"), json{{"files", {{{"path", 3}}}}}));
}

TEST_F(HardeningFilesTest, ImageDirectoriesThatAreLinksAreRefused) {
  fs::create_directories(dir_.file("out"));
  fs::create_directories(dir_.file("elsewhere"));
  fs::create_symlink(dir_.file("elsewhere"), dir_.file("out/cat"));
  test::expect_error([&] { check_image_dir(dir_.file("out"), "cat"); }, ErrorCode::kOutput,
                     "is a symbolic link: refusing to write maps through it");
  test::write_text(dir_.file("out/dog"), "a file");
  test::expect_error([&] { check_image_dir(dir_.file("out"), "dog"); }, ErrorCode::kOutput,
                     "not a directory");
  EXPECT_NO_THROW(check_image_dir(dir_.file("out"), "new"));
}

TEST_F(HardeningFilesTest, OneRunPerShardAtATime) {
  RunLock first(dir_.path(), "run");
  test::expect_error([&] { RunLock second(dir_.path(), "run"); }, ErrorCode::kOutput,
                     "is in use by another cnnviz run");
  EXPECT_NO_THROW(RunLock shard(dir_.path(), "shard-1-of-2"));
}

TEST_F(HardeningFilesTest, MergeRefusesIncompleteMixedOrMalformedShards) {
  const std::string out = dir_.file("out");
  fs::create_directories(out);
  auto shard = [&](int k, int n, const std::string& text) {
    test::write_text(
        out + "/manifest.shard-" + std::to_string(k) + "-of-" + std::to_string(n) + ".json", text);
  };
  const std::string ok = R"({"method": "gradcam", "images": [{"image": "a.png", "index": 0}],
                             "summary": {"images": 1, "written": 1, "failed": 0, "skipped": 0}})";
  shard(1, 2, ok);
  test::expect_error([&] { merge_manifests(out); }, ErrorCode::kInput,
                     "merge: shard 2 of 2 missing in '" + out +
                         "' (run them, or merge what is "
                         "there with --partial)");
  const MergeResult partial = merge_manifests(out, true);
  EXPECT_EQ(partial.missing, std::vector<long>{2});
  EXPECT_EQ(json::parse(test::read_text(out + "/manifest.json"))["missing_shards"],
            json::array({2}));
  shard(1, 3, ok);
  test::expect_error([&] { merge_manifests(out); }, ErrorCode::kInput,
                     "holds shards of runs split 2, 3 ways");
  fs::remove(out + "/manifest.shard-1-of-3.json");
  for (const std::string& bad :
       {std::string(R"({"method": "gradcam", "images": [{"index": "x"}]})"),
        std::string(R"({"method": "gradcam", "images": [[1]]})"),
        std::string(R"({"method": "gradcam", "images": [], "summary": {"images": "many"}})"),
        std::string(R"({"images": 5})"), "{\"images\": " + nested(1000) + "}"}) {
    SCOPED_TRACE(bad.substr(0, 60));
    shard(2, 2, bad);
    test::expect_error([&] { merge_manifests(out); }, ErrorCode::kInput, "manifest.shard-2-of-2");
  }
  fs::remove(out + "/manifest.shard-2-of-2.json");
  // A FIFO is no shard (reading it would block): shard 2 is missing.
  ASSERT_EQ(mkfifo((out + "/manifest.shard-2-of-2.json").c_str(), 0644), 0);
  test::expect_error([&] { merge_manifests(out); }, ErrorCode::kInput, "shard 2 of 2 missing");
}

TEST(HardeningTest, OpenCVsDecodingLinesAreFilteredOut) {
  std::ostringstream sink;
  std::ostream stream(sink.rdbuf());
  filter_codec_messages(stream);
  stream << "imdecode_('x'): can't read data: OpenCV(4.6.0) error\n" << std::endl;
  stream << "cnnviz: image 'x.bmp': not an image\n";
  stream << "\r[####      ] 3/10" << std::flush;
  EXPECT_EQ(sink.str(), "cnnviz: image 'x.bmp': not an image\n\r[####      ] 3/10");
  stream << " imdecode_ in the middle of a line stays\n";
  EXPECT_NE(sink.str().find("imdecode_ in the middle"), std::string::npos);
}

}  // namespace
}  // namespace cnnviz
