// The HTML report of a visualization run (`cnnviz report OUTDIR`): a static,
// self-contained gallery of every map a run wrote, browsable from the file
// system with no server and no network.
#ifndef CNNVIZ_RUN_REPORT_H_
#define CNNVIZ_RUN_REPORT_H_

#include <string>

namespace cnnviz {

// Reads the manifest of the run in `outdir` and writes `outdir`/index.html
// (atomically); returns that path ("<outdir>/index.html").
//
// The manifest is `outdir`/manifest.json (docs/formats.md) or, when that is
// absent, every `outdir`/manifest.shard-K-of-N.json (the same schema), whose
// images are merged in increasing K. The page is one HTML file with inline
// CSS and JavaScript and the data embedded as JSON (every '<' in it written
// as \u003c, so no label or path can close the script): one element
// `.row` per image, in manifest order, with `data-classes` (its target
// classes) and `data-methods`; the image's top classes, error and warnings;
// a lazy-loaded thumbnail of every PNG map, linked to the file by a path
// relative to `outdir`. Filters (class, method, variant, image name) are read
// from and written to the URL hash (`#class=56&method=gradcam&variant=overlay&q=cat`);
// rows they exclude get the `hidden` attribute, and `#count` reads
// "N of M images".
//
// Throws Error(kInput) "report: '<outdir>/manifest.json': not found (...)"
// when there is no manifest, and Error(kInput) when a manifest is not valid
// JSON or not a cnnviz manifest (no `images` array, fields of the wrong
// type); Error(kOutput) when index.html cannot be written.
std::string write_report(const std::string& outdir);

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_REPORT_H_
