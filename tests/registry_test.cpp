// A walk over the method registry: every method's facts are complete and
// consistent, every output kind renders into files that decode, and every
// parameter is described well enough for the CLI to offer it (the CLI side
// is CliPipelineTest.EveryMethodOffersItsParameters).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <sstream>
#include <variant>

#include "cnnviz/io/render.h"
#include "cnnviz/methods/methods.h"
#include "cnnviz/run/outputs.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace cnnviz {
namespace {

TEST(RegistryTest, NamesAndAliasesAreUniqueAndFound) {
  std::set<std::string> seen;
  for (const MethodDef& m : method_table()) {
    ASSERT_FALSE(m.name.empty());
    for (const std::string& n : m.names()) {
      EXPECT_TRUE(seen.insert(n).second) << "'" << n << "' names two methods";
      EXPECT_EQ(&find_method(n), &m) << n;
      EXPECT_EQ(n.find_first_of(" _/,"), std::string::npos) << "'" << n << "': not a subcommand";
    }
    EXPECT_FALSE(m.summary.empty()) << m.name;
  }
  EXPECT_GE(seen.size(), method_table().size());
  test::expect_error([] { find_method("gradcamm"); }, ErrorCode::kUsage, "gradcam, ");
}

TEST(RegistryTest, EveryRowIsComplete) {
  for (const MethodDef& m : method_table()) {
    SCOPED_TRACE(m.name);
    ASSERT_NE(m.compute, nullptr);
    ASSERT_NE(m.backprops, nullptr);
    for (const std::string& p : m.params) {
      EXPECT_NO_THROW(find_param(p)) << p;
      EXPECT_TRUE(m.takes(p));
    }
    // Input-space maps cover the whole network; layer maps need layers.
    // ... or, with layer maps of their own kind, at layers asked for only.
    if (m.output == MapKind::kInputGradient) {
      EXPECT_TRUE(m.layers == LayerUse::kNone || (m.layers == LayerUse::kOptional && m.layer_maps));
    }
    // A layer map without layers is at the input's resolution: the
    // perturbation methods' (occlusion, RISE).
    if (m.layers == LayerUse::kNone && m.output == MapKind::kLayerMap) {
      EXPECT_TRUE(m.perturbs);
    }
    // Every backward mode a method can ask for, for every value of its
    // string parameters, is a mode the engine has.
    MethodParams params;
    for (const std::string& p : m.params) {
      const ParamDef& def = find_param(p);
      for (const std::string& choice : def.choices) {
        MethodParams varied = params;
        varied.*std::get<std::string MethodParams::*>(def.field) = choice;
        for (Backprop b : m.backprops(varied)) {
          EXPECT_TRUE(b == Backprop::kPlain || b == Backprop::kGuided || b == Backprop::kDeconv ||
                      b == Backprop::kLrp || b == Backprop::kRescale);
          // The rescale rule needs the paired pass that `references` asks for.
          EXPECT_EQ(b == Backprop::kRescale, m.references != nullptr);
          // Relevance needs an engine with LRP's rules.
          EXPECT_EQ(b == Backprop::kLrp, m.lrp);
        }
      }
    }
  }
  EXPECT_TRUE(find_method("gbp").guided(MethodParams{}));
  EXPECT_FALSE(find_method("saliency").guided(MethodParams{}));
  MethodParams smooth_guided;
  smooth_guided.smooth_of = "guided-backprop";
  EXPECT_TRUE(find_method("smoothgrad").guided(smooth_guided));
  EXPECT_FALSE(find_method("smoothgrad").guided(MethodParams{}));
}

TEST(RegistryTest, ParametersHaveValidDefaultsAndFlags) {
  std::set<std::string> flags;
  const MethodParams defaults;
  for (const ParamDef& p : param_table()) {
    SCOPED_TRACE(p.name);
    EXPECT_TRUE(flags.insert(p.flag()).second);
    EXPECT_EQ(p.flag().rfind("--", 0), 0u);
    EXPECT_EQ(p.flag().find('_'), std::string::npos);
    EXPECT_FALSE(p.help.empty());
    std::visit(
        [&](auto field) {
          using T = std::decay_t<decltype(defaults.*field)>;
          if constexpr (std::is_same_v<T, std::string>) {
            ASSERT_FALSE(p.choices.empty()) << "a string parameter lists its values";
            EXPECT_NE(std::find(p.choices.begin(), p.choices.end(), defaults.*field),
                      p.choices.end());
          } else if (p.min < p.max) {
            EXPECT_GE(static_cast<double>(defaults.*field), p.min);
            EXPECT_LE(static_cast<double>(defaults.*field), p.max);
          }
        },
        p.field);
    bool used = false;
    for (const MethodDef& m : method_table()) used = used || m.takes(p.name);
    EXPECT_TRUE(used) << "no method takes it";
  }
  test::expect_error([] { find_param("nope"); }, ErrorCode::kRuntime, "nope");
}

// A synthetic map of each kind's shape, rendered with every variant of the
// kind: each file is written, named by the variant, and decodes.
TEST(RegistryTest, EveryOutputKindRendersEveryVariant) {
  test::TempDir dir;
  cv::Mat source(60, 90, CV_8UC3);
  cv::randu(source, 0, 255);
  Preprocessing p;
  p.resize = p.crop = 32;
  const SourceView view = make_source_view(source, crop_box(source.cols, source.rows, p));
  const OutputStyle style;
  std::set<MapKind> kinds;
  for (const MethodDef& m : method_table()) {
    SCOPED_TRACE(m.name);
    kinds.insert(m.output);
    FloatArray raw;
    if (m.output == MapKind::kLayerMap) {
      raw = {{4, 5}, std::vector<float>(20)};
    } else {
      raw = {{3, 32, 32}, std::vector<float>(3 * 32 * 32)};
    }
    for (size_t i = 0; i < raw.data.size(); ++i) raw.data[i] = std::sin(0.37f * i);
    const ImageDir out{dir.path(), m.name};
    fs::create_directories(dir.file(m.name));
    const OutputSelection all = select_outputs(m, {}, true);
    EXPECT_EQ(all.variants, map_variants(m.output));
    // Input-space maps have no layer (a method with layer maps draws those
    // as layer maps: below).
    const std::string layer = m.output == MapKind::kLayerMap ? "layer.1" : "";
    MapFiles f = write_map(out, m, layer, MapTarget{7, std::nullopt}, raw, view, all, style);
    if (m.layer_maps) {
      const FloatArray at_layer{{4, 5}, std::vector<float>(20, 0.5f)};
      MapFiles g =
          write_map(out, m, "layer.1", MapTarget{7, std::nullopt}, at_layer, view, all, style);
      std::set<std::string> drawn;
      for (const auto& e : g.files) drawn.insert(e["variant"].get<std::string>());
      EXPECT_TRUE(drawn.count("overlay") && drawn.count("heatmap")) << "layer maps as layer maps";
    }
    std::set<std::string> variants;
    for (const auto& e : f.files) {
      variants.insert(e["variant"].get<std::string>());
      EXPECT_EQ(e["method"], m.name);
      EXPECT_EQ(e["class"], 7);
      const std::string path = dir.path() + "/" + e["path"].get<std::string>();
      ASSERT_TRUE(fs::exists(path)) << path;
      if (e["format"] == "png") {
        EXPECT_FALSE(cv::imread(path, cv::IMREAD_UNCHANGED).empty()) << path;
        EXPECT_NE(path.find("_" + e["variant"].get<std::string>() + ".png"), std::string::npos);
      }
    }
    for (const std::string& v : map_variants(m.output)) {
      if (v == "contact") {
        EXPECT_FALSE(f.tile.empty()) << "a contact sheet needs the map's tile";
      } else {
        EXPECT_TRUE(variants.count(v == "npy" ? "raw" : v)) << v;
      }
    }
    EXPECT_TRUE(f.warnings.empty());
    if (!all.has("contact")) continue;
    // A sheet of two tiles.
    const auto sheet =
        write_contact_sheet(out, m, MapTarget{7, std::nullopt}, {{"a", f.tile}, {"b", f.tile}}, "t");
    ASSERT_TRUE(sheet.is_object());
    EXPECT_FALSE(cv::imread(dir.path() + "/" + sheet["path"].get<std::string>()).empty());
  }
  EXPECT_EQ(kinds.size(), 3u) << "every kind has a method";
}

// The README's method table says what the registry says: one row per method
// in its order, with its aliases, map kind, layer use and options.
std::vector<std::string> table_cells(const std::string& row) {
  std::vector<std::string> cells;
  std::stringstream in(row);
  std::string cell;
  std::getline(in, cell, '|');  // before the first bar; none comes after the last
  while (std::getline(in, cell, '|')) {
    const size_t a = cell.find_first_not_of(' '), b = cell.find_last_not_of(' ');
    cells.push_back(a == std::string::npos ? "" : cell.substr(a, b - a + 1));
  }
  return cells;
}

std::vector<std::string> expected_cells(const MethodDef& m) {
  auto ticks = [](const std::string& s) { return "`" + s + "`"; };
  std::string aliases, options;
  for (const std::string& a : m.aliases) aliases += (aliases.empty() ? "" : ", ") + ticks(a);
  for (const std::string& p : m.params) {
    options += (options.empty() ? "" : " ") + ticks(find_param(p).flag());
  }
  return {ticks(m.name), aliases, map_kind_words(m.output), layer_use_name(m.layers), options};
}

TEST(RegistryTest, TheReadmeMethodTableIsTheRegistry) {
  std::ifstream in(std::string(CNNVIZ_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(in) << "README.md not found";
  std::string line;
  while (std::getline(in, line) && line.rfind("<!-- methods:", 0) != 0) {
  }
  ASSERT_TRUE(in) << "README.md: no '<!-- methods: ... -->' line before the method table";
  std::getline(in, line);
  EXPECT_EQ(table_cells(line),
            (std::vector<std::string>{"method", "aliases", "map", "layers", "options"}));
  std::getline(in, line);  // |---|
  for (const MethodDef& m : method_table()) {
    ASSERT_TRUE(std::getline(in, line)) << "README.md: the table ends before " << m.name;
    EXPECT_EQ(table_cells(line), expected_cells(m)) << "README.md's row: " << line;
  }
  if (std::getline(in, line)) {
    EXPECT_EQ(line.rfind("|", 0), std::string::npos) << line;
  }
}

}  // namespace
}  // namespace cnnviz
