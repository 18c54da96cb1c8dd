#include "merge.h"

#include <ostream>

#include "cnnviz/manifest.h"

namespace cnnviz::cli {

CLI::App* setup_merge(CLI::App& app, MergeOptions& opts) {
  CLI::App* sub = app.add_subcommand(
      "merge", "Combine OUTDIR/manifest.shard-*.json of a sharded run into OUTDIR/manifest.json");
  sub->add_option("outdir", opts.outdir, "Output directory of the shards")->required();
  return sub;
}

int run_merge(const MergeOptions& opts, std::ostream& out, std::ostream& err) {
  const size_t images = merge_manifests(opts.outdir);
  out << opts.outdir << "/manifest.json (" << images << " images)\n";
  return 0;
}

}  // namespace cnnviz::cli
