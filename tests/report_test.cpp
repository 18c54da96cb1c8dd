// write_report on synthetic manifests: the page, its embedded data, shards,
// and the errors. tests/report_browser_test.sh checks the page in a browser.
#include "cnnviz/run/report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace cnnviz {
namespace {

constexpr const char* kNastyLabel = "</script><script>alert(1)</script> & <!-- snake";

json file_entry(const std::string& path, const std::string& method, const json& layer, int cls,
                const std::string& variant, const std::string& format) {
  return {{"path", path},       {"method", method}, {"layer", layer}, {"class", cls},
          {"variant", variant}, {"format", format}, {"min", 0.0},     {"max", 1.0}};
}

json image_entry(const std::string& image, const std::string& dir, int cls,
                 const std::string& label) {
  return {
      {"image", image},
      {"dir", dir},
      {"predictions",
       {{{"rank", 1}, {"index", cls}, {"label", label}, {"probability", 0.75}},
        {{"rank", 2}, {"index", 7}, {"label", "cock"}, {"probability", 0.25}}}},
      {"targets",
       {{{"class", cls}, {"label", label}, {"rank", 1}, {"logit", 3.5}, {"probability", 0.75}}}},
      {"files",
       {file_entry(dir + "/gradcam_features.12_c" + std::to_string(cls) + "_overlay.png", "gradcam",
                   "features.12", cls, "overlay", "png"),
        file_entry(dir + "/gradcam_features.12_c" + std::to_string(cls) + "_heatmap.png", "gradcam",
                   "features.12", cls, "heatmap", "png"),
        file_entry(dir + "/gradcam_c" + std::to_string(cls) + "_contact.png", "gradcam", nullptr,
                   cls, "contact", "png"),
        file_entry(dir + "/gradcam_features.12_c" + std::to_string(cls) + ".npy", "gradcam",
                   "features.12", cls, "raw", "npy")}},
      {"warnings", json::array()}};
}

json manifest(const json& images) {
  return {{"cnnviz_version", "0.1.0"},
          {"model",
           {{"name", "squeezenet1_1"},
            {"path", "models/squeezenet1_1.pt"},
            {"arch", "squeezenet1_1"},
            {"weights", {{"kind", "random"}, {"source", ""}}}}},
          {"method", "gradcam"},
          {"layers", {"features.12"}},
          {"images", images},
          {"summary", {{"images", images.size()}, {"failed", 0}}}};
}

// Writes the PNGs a manifest lists (tiny ones), except those named in `skip`.
void write_pngs(const std::string& outdir, const json& doc, const std::string& skip = "") {
  cv::Mat tile(4, 4, CV_8UC3, cv::Scalar(30, 120, 210));
  for (const json& img : doc["images"]) {
    if (!img.contains("files")) continue;
    for (const json& f : img["files"]) {
      const std::string path = outdir + "/" + f["path"].get<std::string>();
      if (f["format"] != "png" || f["path"] == skip) continue;
      fs::create_directories(fs::path(path).parent_path());
      ASSERT_TRUE(cv::imwrite(path, tile)) << path;
    }
  }
}

// The JSON the page embeds, unescaped by the JSON parser as a browser would.
json embedded_data(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"cnnviz-data\">";
  size_t begin = html.find(open);
  EXPECT_NE(begin, std::string::npos);
  if (begin == std::string::npos) return json();
  begin += open.size();
  size_t end = html.find("</script>", begin);
  EXPECT_NE(end, std::string::npos);
  return json::parse(html.substr(begin, end - begin));
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    json bad = {{"image", "photos/missing.jpg"},
                {"error", "image 'photos/missing.jpg': not found"}};
    json warned = image_entry("photos/flat.png", "flat", 56, "king snake");
    warned["warnings"] = {
        "gradcam_features.12_c56: map is all zero (or constant), written as zeros"};
    doc_ = manifest({image_entry("photos/cat.jpg", "cat", 281, "tabby"),
                     image_entry("photos/snake.png", "snake", 56, kNastyLabel), bad, warned});
  }

  std::string write_and_read(const std::string& outdir) {
    std::string path = write_report(outdir);
    EXPECT_EQ(path, outdir + "/index.html");
    return test::read_text(path);
  }

  test::TempDir dir_;
  json doc_;
};

TEST_F(ReportTest, PageHasEveryImageItsMapsAndNothingExternal) {
  write_pngs(dir_.path(), doc_);
  test::write_text(dir_.file("manifest.json"), doc_.dump(2));
  const std::string html = write_and_read(dir_.path());

  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  for (const char* image :
       {"photos/cat.jpg", "photos/snake.png", "photos/missing.jpg", "photos/flat.png"}) {
    EXPECT_NE(html.find(image), std::string::npos) << image;
  }
  // Self-contained: no stylesheet or script fetched, no URL with a scheme.
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  // What the browser test and users rely on.
  for (const char* hook : {"id=\"count\"", "'row'", "'data-classes'", "'data-methods'",
                           "loading: 'lazy'", "location.hash", "[hidden]"}) {
    EXPECT_NE(html.find(hook), std::string::npos) << hook;
  }

  const json data = embedded_data(html);
  ASSERT_EQ(data["images"].size(), 4u);
  EXPECT_EQ(data["images"][0]["image"], "photos/cat.jpg");
  EXPECT_EQ(data["images"][0]["dir"], "cat");
  EXPECT_EQ(data["images"][0]["input"], nullptr);   // not reachable from here
  EXPECT_EQ(data["images"][0]["maps"].size(), 3u);  // the PNGs
  EXPECT_EQ(data["images"][0]["raw"].size(), 1u);   // the .npy
  EXPECT_EQ(data["images"][0]["maps"][0]["path"], "cat/gradcam_features.12_c281_overlay.png");
  EXPECT_FALSE(data["images"][0]["maps"][0].contains("missing"));
  EXPECT_EQ(data["images"][0]["maps"][2]["layer"], nullptr);
  EXPECT_EQ(data["images"][0]["targets"][0]["class"], 281);
  EXPECT_EQ(data["images"][0]["predictions"][1]["label"], "cock");
  EXPECT_EQ(data["images"][2]["error"], "image 'photos/missing.jpg': not found");
  EXPECT_EQ(data["images"][2]["maps"].size(), 0u);
  EXPECT_EQ(data["images"][3]["warnings"].size(), 1u);
  EXPECT_EQ(data["runs"][0]["model"], "squeezenet1_1");
  EXPECT_EQ(data["runs"][0]["weights"], "random");
  EXPECT_EQ(data["runs"][0]["method"], "gradcam");
  EXPECT_EQ(data["notes"].size(), 0u);
}

TEST_F(ReportTest, LabelsCannotCloseTheEmbeddedScript) {
  write_pngs(dir_.path(), doc_);
  test::write_text(dir_.file("manifest.json"), doc_.dump());
  const std::string html = write_and_read(dir_.path());
  // The only </script> are the two the page closes its scripts with.
  EXPECT_EQ(count_of(html, "</script>"), 2u);
  EXPECT_EQ(count_of(html, "<!--"), 0u);
  EXPECT_NE(html.find("\\u003c/script>\\u003cscript>alert(1)"), std::string::npos);
  // ... and the label is intact once parsed.
  EXPECT_EQ(embedded_data(html)["images"][1]["targets"][0]["label"], kNastyLabel);
}

TEST_F(ReportTest, MissingMapFilesAreFlaggedAndNoted) {
  const std::string gone = "snake/gradcam_features.12_c56_heatmap.png";
  write_pngs(dir_.path(), doc_, gone);
  test::write_text(dir_.file("manifest.json"), doc_.dump());
  const json data = embedded_data(write_and_read(dir_.path()));
  EXPECT_EQ(data["images"][1]["maps"][1]["path"], gone);
  EXPECT_EQ(data["images"][1]["maps"][1]["missing"], true);
  ASSERT_EQ(data["notes"].size(), 1u);
  EXPECT_EQ(data["notes"][0], "1 map file listed in the manifest is missing (first: " + gone + ")");
}

TEST_F(ReportTest, ReachableInputImagesAreLinkedRelativeToOutdir) {
  const std::string outdir = dir_.file("out");
  fs::create_directories(outdir);
  const std::string input = dir_.file("in/photo.png");
  fs::create_directories(dir_.file("in"));
  ASSERT_TRUE(cv::imwrite(input, cv::Mat(4, 4, CV_8UC3, cv::Scalar::all(9))));
  json doc = manifest(json::array({image_entry(input, "photo", 1, "goldfish")}));
  write_pngs(outdir, doc);
  test::write_text(outdir + "/manifest.json", doc.dump());
  EXPECT_EQ(embedded_data(write_and_read(outdir))["images"][0]["input"], "../in/photo.png");
}

TEST_F(ReportTest, MergesShardManifestsInOrderOfK) {
  json first = manifest(json::array({image_entry("a.png", "a", 1, "goldfish")}));
  json second = manifest(json::array({image_entry("b.png", "b", 2, "great white shark")}));
  second["method"] = "saliency";
  write_pngs(dir_.path(), first);
  write_pngs(dir_.path(), second);
  test::write_text(dir_.file("manifest.shard-2-of-3.json"), second.dump());
  test::write_text(dir_.file("manifest.shard-1-of-3.json"), first.dump());
  test::write_text(dir_.file("manifest.shard-x-of-3.json"), "not a shard name");
  json data = embedded_data(write_and_read(dir_.path()));
  ASSERT_EQ(data["images"].size(), 2u);
  EXPECT_EQ(data["images"][0]["image"], "a.png");
  EXPECT_EQ(data["images"][1]["image"], "b.png");
  EXPECT_EQ(data["images"][1]["run"], 1);
  ASSERT_EQ(data["runs"].size(), 2u);
  EXPECT_EQ(data["runs"][0]["source"], "manifest.shard-1-of-3.json");
  EXPECT_EQ(data["runs"][1]["method"], "saliency");
  ASSERT_EQ(data["notes"].size(), 1u);
  EXPECT_EQ(data["notes"][0], "only 2 of 3 shard manifests are present");

  // A manifest.json wins over shards.
  test::write_text(dir_.file("manifest.json"),
                   manifest(json::array({image_entry("c.png", "c", 3, "tiger shark")})).dump());
  data = embedded_data(write_and_read(dir_.path()));
  ASSERT_EQ(data["images"].size(), 1u);
  EXPECT_EQ(data["images"][0]["image"], "c.png");
}

TEST_F(ReportTest, SameManifestGivesTheSamePageAndTrailingSlashesAreDropped) {
  write_pngs(dir_.path(), doc_);
  test::write_text(dir_.file("manifest.json"), doc_.dump());
  const std::string once = write_and_read(dir_.path());
  EXPECT_EQ(write_report(dir_.path() + "//"), dir_.file("index.html"));
  EXPECT_EQ(test::read_text(dir_.file("index.html")), once);
}

TEST_F(ReportTest, NoManifestIsAnInputErrorThatSaysWhatToRun) {
  const std::string d = dir_.path();
  test::expect_error([&] { write_report(d); }, ErrorCode::kInput,
                     "report: '" + d +
                         "/manifest.json': not found (run a visualization "
                         "subcommand with -o " +
                         d + " first)");
  test::expect_error([&] { write_report(d + "/nowhere"); }, ErrorCode::kInput,
                     "'" + d + "/nowhere/manifest.json': not found");
  EXPECT_FALSE(fs::exists(dir_.file("index.html")));
}

TEST_F(ReportTest, InvalidManifestsAreInputErrors) {
  const std::string m = dir_.file("manifest.json");
  test::write_text(m, "{\"images\": [");
  test::expect_error([&] { write_report(dir_.path()); }, ErrorCode::kInput,
                     "report: '" + m + "': not valid JSON (parse error");
  test::write_text(m, R"({"model": {"name": "vgg16"}})");
  test::expect_error([&] { write_report(dir_.path()); }, ErrorCode::kInput,
                     "report: '" + m + "': not a cnnviz manifest (no \"images\" array)");
  test::write_text(m, R"({"images": [{"image": 3}]})");
  test::expect_error([&] { write_report(dir_.path()); }, ErrorCode::kInput,
                     "report: '" + m + "': not a cnnviz manifest (");
  test::write_text(m, R"({"images": [{"image": "a.png", "files": [{"format": "png"}]}]})");
  test::expect_error([&] { write_report(dir_.path()); }, ErrorCode::kInput,
                     "not a cnnviz manifest (key 'path' not found)");
  EXPECT_FALSE(fs::exists(dir_.file("index.html")));
}

TEST_F(ReportTest, UnwritablePageIsAnOutputError) {
  test::write_text(dir_.file("manifest.json"), doc_.dump());
  // A non-empty directory where index.html goes: the rename fails even for root.
  fs::create_directories(dir_.file("index.html/keep"));
  test::expect_error([&] { write_report(dir_.path()); }, ErrorCode::kOutput,
                     "cannot write '" + dir_.file("index.html") + "'");
}

// `cnnviz report` end to end: what it prints and its exit codes.
class CliReportTest : public ReportTest {
 protected:
  test::RunResult cnnviz(const std::vector<std::string>& args) { return test::run_cnnviz(args); }
};

TEST_F(CliReportTest, PrintsThePathOfThePage) {
  write_pngs(dir_.path(), doc_);
  test::write_text(dir_.file("manifest.json"), doc_.dump());
  test::RunResult r = cnnviz({"report", dir_.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, dir_.file("index.html") + "\n");
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(fs::is_regular_file(dir_.file("index.html")));
}

TEST_F(CliReportTest, ExitCodesAndOneLineMessages) {
  test::RunResult r = cnnviz({"report", dir_.path()});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "cnnviz: report: '" + dir_.file("manifest.json") +
                       "': not found (run a visualization subcommand with -o " + dir_.path() +
                       " first)\n");

  test::write_text(dir_.file("manifest.json"), doc_.dump());
  fs::create_directories(dir_.file("index.html/keep"));
  r = cnnviz({"report", dir_.path()});
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_EQ(test::lines(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find("cannot write '" + dir_.file("index.html") + "'"), std::string::npos);

  EXPECT_EQ(cnnviz({"report"}).exit_code, 2);
}

}  // namespace
}  // namespace cnnviz
