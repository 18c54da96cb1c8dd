#include "image_results.h"

#include <ostream>

#include "cnnviz/core/json_util.h"

namespace cnnviz::cli {

void print_image_line(std::ostream& out, const ImageFacts& r) {
  out << r.image << "  (" << r.width << " x " << r.height << ")\n";
}

bool image_entry(const ImageFacts& r, const ModelInfo& info, nlohmann::ordered_json& j) {
  set_image_name(j, r.image);
  if (r.error) {
    j["error"] = *r.error;
    return false;
  }
  j["input"] = input_json(info.preprocess.channels, r.grey);
  j["size"] = {{"width", r.width}, {"height", r.height}};
  j["input_size"] = {{"width", r.input_width}, {"height", r.input_height}};
  return true;
}

}  // namespace cnnviz::cli
