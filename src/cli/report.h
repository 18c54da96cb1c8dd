// `cnnviz report OUTDIR`: the static HTML gallery of a visualization run.
#ifndef CNNVIZ_CLI_REPORT_H_
#define CNNVIZ_CLI_REPORT_H_

#include <CLI/CLI.hpp>
#include <iosfwd>
#include <string>

namespace cnnviz::cli {

struct ReportOptions {
  std::string outdir;  // a visualization run's -o directory
};

CLI::App* setup_report(CLI::App& app, ReportOptions& opts);

// Writes OUTDIR/index.html and prints its path on `out`. Throws what
// write_report throws (Error(kInput) without a manifest, Error(kOutput)).
int run_report(const ReportOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace cnnviz::cli

#endif  // CNNVIZ_CLI_REPORT_H_
