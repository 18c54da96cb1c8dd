#include "report.h"

#include <ostream>

#include "cnnviz/run/report.h"

namespace cnnviz::cli {

CLI::App* setup_report(CLI::App& app, ReportOptions& opts) {
  CLI::App* sub = app.add_subcommand(
      "report",
      "Write OUTDIR/index.html: a static gallery of a visualization run's maps, with filters "
      "by class, method and image name (opens from the file system, no server)");
  sub->add_option("outdir", opts.outdir, "Output directory of a visualization run (-o)")
      ->required();
  return sub;
}

int run_report(const ReportOptions& opts, std::ostream& out, std::ostream& err) {
  out << write_report(opts.outdir) << "\n";
  return 0;
}

}  // namespace cnnviz::cli
