// The output that segment and detect share: each image's line of text, the
// start of its --json entry, and the --json document around the entries.
#ifndef CNNVIZ_CLI_IMAGE_RESULTS_H_
#define CNNVIZ_CLI_IMAGE_RESULTS_H_

#include <iosfwd>
#include <nlohmann/json.hpp>

#include "cnnviz/core/formats.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/version.h"
#include "cnnviz/run/image_facts.h"
#include "cnnviz/run/manifest.h"

namespace cnnviz::cli {

// "PATH  (W x H)": the line above an image's results.
void print_image_line(std::ostream& out, const ImageFacts& r);

// An image's --json entry up to its own results: `image`, then `error` (the
// whole entry of a failed image: returns false) or `input`, `size` and
// `input_size`.
bool image_entry(const ImageFacts& r, const ModelInfo& info, nlohmann::ordered_json& j);

// A run's --json document: format, versions and model, then `fields`, the
// entries (entry(result)) of the images done, and the summary.
template <typename Result, typename Entry>
nlohmann::ordered_json run_document(Format format, const PerImageSummary<Result>& summary,
                                    const ModelInfo& info, const nlohmann::ordered_json& fields,
                                    Entry&& entry) {
  using json = nlohmann::ordered_json;
  json doc;
  doc["format"] = format_name(format);
  doc["format_version"] = format_version(format);
  doc["cnnviz_version"] = kVersion;
  doc["model"] = model_json(info);
  for (const auto& [key, value] : fields.items()) doc[key] = value;
  doc["results"] = json::array();
  for (const Result& r : summary.results) {
    if (r.done()) doc["results"].push_back(entry(r));
  }
  doc["summary"] = {{"images", summary.results.size()},
                    {"failed", summary.failed},
                    {"interrupted", summary.interrupted}};
  return doc;
}

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_IMAGE_RESULTS_H_
