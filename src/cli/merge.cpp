#include "merge.h"

#include <ostream>

#include "cnnviz/run/manifest.h"
#include "common.h"

namespace cnnviz::cli {

CLI::App* setup_merge(CLI::App& app, MergeOptions& opts) {
  CLI::App* sub = app.add_subcommand(
      "merge", "Combine OUTDIR/manifest.shard-*.json of a sharded run into OUTDIR/manifest.json");
  sub->add_option("outdir", opts.outdir, "Output directory of the shards")->required();
  sub->add_flag("--partial", opts.partial,
                "Merge the shards that are there when some are missing (the manifest lists "
                "the missing ones)");
  return sub;
}

int run_merge(const MergeOptions& opts, std::ostream& out, std::ostream& err) {
  const MergeResult merged = merge_manifests(opts.outdir, opts.partial);
  out << opts.outdir << "/manifest.json (" << merged.images << " images)\n";
  if (!merged.missing.empty()) {
    std::string list;
    for (long k : merged.missing) list += (list.empty() ? "" : ", ") + std::to_string(k);
    err << kPrefix << "warning: shard" << (merged.missing.size() > 1 ? "s " : " ") << list << " of "
        << merged.shards << " missing: their images are not in the manifest\n";
  }
  return 0;
}

}  // namespace cnnviz::cli
