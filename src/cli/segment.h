// `cnnviz segment IMAGE...`: each pixel's class by a segmenter, the area of
// each class, and with -o a colour mask and an overlay per image.
#ifndef CNNVIZ_CLI_SEGMENT_H_
#define CNNVIZ_CLI_SEGMENT_H_

#include <iosfwd>
#include <string>

#include "common.h"

namespace cnnviz::cli {

struct SegmentCliOptions {
  ModelOptions model;
  InputOptions inputs;
  int batch_size = 4;
  int decoders = 0;    // image decoding threads; 0 = every available core
  std::string outdir;  // -o: masks and overlays
  double opacity = 0.5;
  bool json = false;
};

CLI::App* setup_segment(CLI::App& app, SegmentCliOptions& opts);

// Segments every image; a bad image is reported on `err` (and in the JSON)
// and the others still run. Returns 0 when all succeeded, else
// ErrorCode::kInput. Throws Error for failures that stop the whole run.
int run_segment(const SegmentCliOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_SEGMENT_H_
