// `cnnviz detect IMAGE...`: the boxes a detector finds, with labels and
// scores, and with -o each image with its boxes drawn.
#ifndef CNNVIZ_CLI_DETECT_H_
#define CNNVIZ_CLI_DETECT_H_

#include <iosfwd>
#include <optional>
#include <string>

#include "common.h"

namespace cnnviz::cli {

struct DetectCliOptions {
  ModelOptions model;
  InputOptions inputs;
  int batch_size = 4;
  int decoders = 0;    // image decoding threads; 0 = every available core
  std::string outdir;  // -o: pictures with boxes
  double min_score = 0.25;
  std::optional<double> iou;  // default: the model's own, else 0.45
  int max_detections = 300;
  bool json = false;
};

CLI::App* setup_detect(CLI::App& app, DetectCliOptions& opts);

// Detects in every image; a bad image is reported on `err` (and in the
// JSON) and the others still run. Returns 0 when all succeeded, else
// ErrorCode::kInput. Throws Error for failures that stop the whole run.
int run_detect(const DetectCliOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_DETECT_H_
