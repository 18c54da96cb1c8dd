#include "targets.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>
#include <stdexcept>

#include "../../src/cli/config.h"
#include "../../src/io/image_size.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/onnx.h"
#include "cnnviz/io/files.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/png.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/io/region.h"
#include "cnnviz/run/image_targets.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/manifest.h"
#include "cnnviz/run/report.h"

namespace fs = std::filesystem;

namespace cnnviz::fuzz {

namespace {

[[noreturn]] void bug(const std::string& what) { throw std::logic_error("fuzz: " + what); }

// A directory of this process's own for targets that read files (in memory
// when /dev/shm exists), emptied before each input.
const std::string& scratch() {
  static const std::string dir = [] {
    const fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    const fs::path d = base / ("cnnviz-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d.string();
  }();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) fs::remove_all(e.path(), ec);
  return dir;
}

void write(const std::string& path, const uint8_t* data, size_t size) {
  write_file_atomic(path, data, size);
}

}  // namespace

int image(const uint8_t* data, size_t size) {
  constexpr int64_t kBudget = 4'000'000;
  try {
    const std::vector<uint8_t> bytes(data, data + size);
    const cv::Mat rgb = decode_image_rgb(bytes, "fuzz", kBudget);
    if (rgb.empty() || rgb.type() != CV_8UC3) bug("decoded image is not 8-bit RGB");
    // The size read from the header (for the formats OpenCV decodes) is the
    // decoded one, or the budget would not hold.
    const std::optional<DeclaredSize> declared = declared_size(bytes);
    if (declared && (declared->width != rgb.cols || declared->height != rgb.rows)) {
      bug("declared size " + std::to_string(declared->width) + "x" +
          std::to_string(declared->height) + " is not the decoded one");
    }
    if (static_cast<int64_t>(rgb.cols) * rgb.rows > kBudget) bug("budget exceeded");
    Preprocessing p;
    p.resize = p.crop = 32;
    const CropBox box = crop_box(rgb.cols, rgb.rows, p);
    if (box.left < 0 || box.top < 0 || box.left + box.width > box.resized_w ||
        box.top + box.height > box.resized_h) {
      bug("crop outside the resized image");
    }
    (void)preprocess(rgb, p);
  } catch (const Error&) {
  }
  return 0;
}

int metadata(const uint8_t* data, size_t size) {
  try {
    const ModelInfo info =
        parse_model_info(std::string(reinterpret_cast<const char*>(data), size), "fuzz.pt");
    const Preprocessing& p = info.preprocess;
    // crop 0: no crop, the whole resized image.
    if (p.crop < 0 || p.crop > kMaxCrop || p.resize < p.crop || p.resize > kMaxResize) {
      bug("preprocessing out of bounds");
    }
    for (float s : p.std) {
      if (!(s > 0)) bug("std not positive");
    }
    if (info.labels.size() > static_cast<size_t>(kMaxClasses)) bug("too many labels");
  } catch (const Error&) {
  }
  return 0;
}

// A targets file's field as a detector's target (K or x1,y1,x2,y2[:label]):
// a box it accepts is non-empty, finite and not negative, of a label the
// model has.
void check_box_spec(const std::string& text) {
  static const ModelInfo info = [] {
    ModelInfo i;
    i.name = "fuzz";
    i.task = Task::kDetect;
    i.labels = {"a", "b", "c"};
    i.num_classes = 3;
    return i;
  }();
  try {
    const BoxSpec spec = parse_box_spec(text, info, "fuzz");
    if (!spec.box) {
      if (spec.index < 0) bug("a box spec that is neither an index nor a box");
      return;
    }
    const BoxQuery& b = *spec.box;
    if (!(b.x1 >= 0 && b.y1 >= 0 && b.x2 > b.x1 && b.y2 > b.y1 && std::isfinite(b.x2) &&
          std::isfinite(b.y2))) {
      bug("an empty, negative or infinite box accepted");
    }
    if (b.label < -1 || b.label >= 3) bug("a box label out of range");
  } catch (const Error&) {
  }
}

int lists(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const std::vector<std::string> labels = parse_labels(text, "fuzz");
    if (labels.empty()) bug("no labels without an error");
    for (const std::string& l : labels) {
      if (l.empty() || l.find('\n') != std::string::npos) bug("empty or multi-line label");
    }
  } catch (const Error&) {
  }
  try {
    std::istringstream in(text);
    const ExpandedInputs inputs = expand_inputs({}, "-", in);
    for (const std::string& image : inputs.images) {
      if (image.empty()) bug("an empty path");
    }
  } catch (const Error&) {
  }
  try {  // the same bytes as a --targets file
    const TargetsFile file = parse_targets(text, "fuzz");
    if (file.rows.empty()) bug("a targets file without rows and without an error");
    for (const TargetRow& row : file.rows) {
      if (row.image.empty() || row.classes.empty()) bug("a row without image or classes");
      for (const std::string& c : row.classes) {
        if (c.empty()) bug("an empty class");
        check_box_spec(c);
      }
      if (file.find(row.image) == nullptr) bug("a row that find() does not return");
    }
  } catch (const Error&) {
  }
  return 0;
}

int manifests(const uint8_t* data, size_t size) {
  const std::string dir = scratch();
  write(dir + "/manifest.json", data, size);
  try {
    write_report(dir);
  } catch (const Error&) {
  }
  fs::remove(dir + "/manifest.json");
  write(dir + "/manifest.shard-1-of-1.json", data, size);
  try {
    merge_manifests(dir);
  } catch (const Error&) {
  }
  write(dir + "/journal.jsonl", data, size);
  // Whatever the journal says, only files inside OUTDIR count.
  for (const auto& [image, entry] : read_journals(dir, "")) {
    if (!outputs_complete(dir, entry)) continue;
    for (const auto& f : entry["files"]) {
      const std::string path = f["path"].get<std::string>();
      if (path.empty() || path[0] == '/') bug("a path outside OUTDIR was trusted: " + path);
      for (const auto& part : fs::path(path)) {
        if (part == "..") bug("a path leaving OUTDIR was trusted: " + path);
      }
    }
  }
  return 0;
}

int npy(const uint8_t* data, size_t size) {
  const std::string dir = scratch();
  write(dir + "/in.npy", data, size);
  try {
    const NpyArray a = read_npy(dir + "/in.npy");
    size_t count = 1;
    for (int64_t d : a.shape) count *= static_cast<size_t>(d);
    if (count != a.data.size()) bug("shape and data disagree");
  } catch (const Error&) {
  }
  // Round trip: the first byte picks a rank, the rest are the values.
  if (size == 0) return 0;
  const size_t floats = (size - 1) / sizeof(float);
  NpyArray a;
  a.data.resize(floats);
  if (floats > 0) std::memcpy(a.data.data(), data + 1, floats * sizeof(float));
  switch (data[0] % 3) {
    case 0:
      a.shape = {static_cast<int64_t>(floats)};
      break;
    case 1:
      a.shape = {1, static_cast<int64_t>(floats)};
      break;
    default:
      a.shape = {static_cast<int64_t>(floats), 1, 1};
  }
  write_npy(dir + "/out.npy", a);
  const NpyArray b = read_npy(dir + "/out.npy");
  if (b.shape != a.shape || b.data.size() != a.data.size() ||
      (!a.data.empty() &&  // bitwise: NaNs must come back as they were
       std::memcmp(b.data.data(), a.data.data(), a.data.size() * sizeof(float)) != 0)) {
    bug("npy round trip changed the array");
  }
  return 0;
}

int config(const uint8_t* data, size_t size) {
  // A CLI shaped like cnnviz's: a global option, subcommands with a string,
  // a checked number, a list and a flag, one excluding another.
  CLI::App app{"fuzz", "cnnviz"};
  std::string path, model, colormap;
  int threads = 0;
  std::vector<std::string> write_kinds;
  bool all_layers = false, json = false;
  std::vector<std::string> layers;
  CLI::App* gradcam = app.add_subcommand("gradcam");
  gradcam->add_option("-m,--model", model)->envname("CNNVIZ_FUZZ_MODEL");
  gradcam->add_option("--threads", threads)->check(CLI::Range(1, 256));
  gradcam->add_option("--colormap", colormap)->check(CLI::IsMember({"jet", "magma"}));
  gradcam->add_option("--write", write_kinds)->check(CLI::IsMember({"npy", "overlay"}));
  CLI::Option* all = gradcam->add_flag("--all-layers", all_layers);
  gradcam->add_option("--layer", layers)->excludes(all);
  CLI::App* classify = app.add_subcommand("classify");
  classify->add_flag("--json", json);
  cli::add_config_option(app, path);
  const char* argv[] = {"cnnviz", "gradcam", "--threads", "2"};
  app.parse(4, const_cast<char**>(argv));
  const std::string dir = scratch();
  write(dir + "/config.toml", data, size);
  try {
    cli::apply_config(app, dir + "/config.toml", true);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kUsage)
      bug(std::string("config error with another code: ") + e.what());
    if (std::string(e.what()).find('\n') != std::string::npos) bug("multi-line config error");
    return 0;
  }
  if (threads != 2) bug("the config overrode the command line");
  if (all_layers && !layers.empty()) bug("both of two excluding options set");
  return 0;
}

int region(const uint8_t* data, size_t size) {
  const std::string path = scratch() + "/region";
  write(path, data, size);
  try {
    const Region r = read_region(path);
    if (r.inside.type() != CV_8UC1 || cv::countNonZero(r.inside) == 0) bug("region not binary");
    double high = 0;
    cv::minMaxLoc(r.inside, nullptr, &high);
    if (high != 1) bug("region values are not 0 and 1");
    for (const int crop : {0, 24}) {
      Preprocessing p;
      p.resize = 32;
      p.crop = crop;
      const CropBox box = crop_box(r.inside.cols, r.inside.rows, p);
      try {
        const at::Tensor grid = region_on_input(r, box);
        if (grid.size(0) != box.height || grid.size(1) != box.width) bug("region grid size");
        if (!grid.any().item<bool>()) bug("region grid empty");
      } catch (const Error&) {  // the crop may leave no pixel of the region
      }
    }
  } catch (const Error&) {
  }
  return 0;
}

int png(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  // Width, channels and order from the first bytes; the rest are pixels.
  const int width = 1 + data[0] % 64;
  const int channels = data[1] % 2 ? 3 : 1;
  const PixelOrder order = data[2] % 2 ? PixelOrder::kBgr : PixelOrder::kRgb;
  const size_t row = static_cast<size_t>(width) * channels;
  const int height = static_cast<int>((size - 3) / row);
  if (height < 1) return 0;
  cv::Mat img(height, width, CV_8UC(channels), const_cast<uint8_t*>(data + 3));
  const std::vector<uint8_t> bytes = encode_png(img, order);
  cv::Mat back = cv::imdecode(bytes, cv::IMREAD_UNCHANGED);
  if (back.empty()) bug("OpenCV cannot decode the PNG");
  if (channels == 3 && order == PixelOrder::kRgb) cv::cvtColor(back, back, cv::COLOR_BGR2RGB);
  if (back.size() != img.size() || back.type() != img.type() ||
      cv::norm(back, img, cv::NORM_INF) != 0) {
    bug("PNG round trip changed the pixels");
  }
  return 0;
}

int onnx(const uint8_t* data, size_t size) {
  try {
    const OnnxModel m =
        import_onnx_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz.onnx");
    if (!m.module) bug("imported without a module");
  } catch (const Error&) {
  }
  return 0;
}

const std::vector<NamedTarget>& targets() {
  static const std::vector<NamedTarget> all = {{"image", image},
                                               {"metadata", metadata},
                                               {"lists", lists},
                                               {"manifests", manifests},
                                               {"npy", npy},
                                               {"png", png},
                                               {"config", config},
                                               {"region", region},
                                               {"differential", differential},
                                               {"onnx", onnx}};
  return all;
}

}  // namespace cnnviz::fuzz
