// `cnnviz merge OUTDIR`: one manifest.json from the manifests of shards.
#ifndef CNNVIZ_CLI_MERGE_H_
#define CNNVIZ_CLI_MERGE_H_

#include <CLI/CLI.hpp>
#include <iosfwd>
#include <string>

namespace cnnviz::cli {

struct MergeOptions {
  std::string outdir;
  bool partial = false;  // --partial
};

CLI::App* setup_merge(CLI::App& app, MergeOptions& opts);
int run_merge(const MergeOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_MERGE_H_
