// Web assets embedded at build time from assets/ (cmake/embed.cmake): the
// report page's template, style and script, as their bytes.
#ifndef CNNVIZ_RUN_ASSETS_H_
#define CNNVIZ_RUN_ASSETS_H_

#include <string_view>

namespace cnnviz::assets {

std::string_view common_css();   // assets/common/base.css: both pages' palette and type
std::string_view common_js();    // assets/common/dom.js: both pages' DOM helpers
std::string_view report_html();  // assets/report/index.html
std::string_view report_css();   // assets/report/report.css
std::string_view report_js();    // assets/report/report.js

}  // namespace cnnviz::assets

#endif  // CNNVIZ_RUN_ASSETS_H_
