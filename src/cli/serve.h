// `cnnviz serve`: the interactive explorer in the browser (server.h).
#ifndef CNNVIZ_CLI_SERVE_H_
#define CNNVIZ_CLI_SERVE_H_

#include <iosfwd>
#include <string>
#include <vector>

#include "common.h"

namespace cnnviz::cli {

struct ServeOptions {
  ModelOptions model;
  std::vector<std::string> images;  // DIR|IMAGES...
  std::vector<std::string> layers;  // --layer: ONNX value names offered beside the stages
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string token;
  int queue = 16;
  int cache_mb = 512;
  int max_upload_mb = 64;
  int64_t max_pixels = kDefaultMaxPixels;
  bool open = false;
  bool quiet = false;
};

CLI::App* setup_serve(CLI::App& app, ServeOptions& opts);
int run_serve(const ServeOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_SERVE_H_
