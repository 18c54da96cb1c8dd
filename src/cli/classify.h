// `cnnviz classify IMAGE...`: top-K ImageNet classes of each image.
#ifndef CNNVIZ_CLI_CLASSIFY_H_
#define CNNVIZ_CLI_CLASSIFY_H_

#include <iosfwd>
#include <string>
#include <vector>

#include "common.h"

namespace cnnviz::cli {

struct ClassifyOptions {
  ModelOptions model;
  InputOptions inputs;
  int top_k = 0;  // 0: 5, or the model's number of classes when it has fewer
  int batch_size = 8;
  int decoders = 0;                  // image decoding threads; 0 = every available core
  std::vector<std::string> classes;  // --class: also report these
  std::string targets_file;          // --targets
  bool json = false;
  bool timings = false;
};

CLI::App* setup_classify(CLI::App& app, ClassifyOptions& opts);

// Classifies every image; a bad image is reported on `err` (and in the JSON)
// and the others still run. Returns 0 when all succeeded, else
// ErrorCode::kInput. Throws Error for failures that stop the whole run.
int run_classify(const ClassifyOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_CLASSIFY_H_
