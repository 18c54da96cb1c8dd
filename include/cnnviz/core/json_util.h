// Parsing JSON that cnnviz did not write, or that someone may have edited:
// model metadata, manifests, journals, shard files. Nesting is bounded, so
// that neither the parser nor what walks the result afterwards (dumping,
// destruction, both recursive in nlohmann::json) can exhaust the stack.
#ifndef CNNVIZ_CORE_JSON_UTIL_H_
#define CNNVIZ_CORE_JSON_UTIL_H_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "cnnviz/core/error.h"

namespace cnnviz {

// cnnviz's own documents nest 6 levels deep at most.
constexpr int kMaxJsonDepth = 64;

// Parses `text`. Throws Error(code) "<subject>: not valid JSON (<problem>)",
// the problem being nlohmann's message without its prefix, or "nested
// deeper than 64 levels".
template <typename Json = nlohmann::ordered_json>
Json parse_json(std::string_view text, const std::string& subject, ErrorCode code) {
  const typename Json::parser_callback_t limit = [](int depth, typename Json::parse_event_t,
                                                    Json&) {
    if (depth > kMaxJsonDepth) {
      throw std::length_error("nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), limit);
  } catch (const std::length_error& e) {
    throw Error(code, subject + ": not valid JSON (" + e.what() + ")");
  } catch (const nlohmann::json::exception& e) {
    std::string problem = first_line(e.what());
    // nlohmann's messages start with "[json.exception.<kind>.<id>] ".
    if (problem.rfind("[json.exception.", 0) == 0) {
      const size_t end = problem.find("] ");
      if (end != std::string::npos) problem = problem.substr(end + 2);
    }
    throw Error(code, subject + ": not valid JSON (" + problem + ")");
  }
}

// The same, returning a discarded value (is_discarded()) instead of throwing:
// for journal lines, where a bad line is skipped.
template <typename Json = nlohmann::ordered_json>
Json try_parse_json(std::string_view text) {
  try {
    return parse_json<Json>(text, "", ErrorCode::kInput);
  } catch (const Error&) {
    return Json(nlohmann::json::value_t::discarded);
  }
}

// Serializes `doc`; bytes that are not valid UTF-8 (a file name from an old
// archive, say) become U+FFFD instead of making nlohmann::json throw. Every
// document cnnviz writes goes through it.
template <typename Json>
std::string dump_json(const Json& doc, int indent = -1) {
  return doc.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

// True when `s` is valid UTF-8 (no overlong forms, no surrogates, at most
// U+10FFFF).
bool valid_utf8(std::string_view s);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_JSON_UTIL_H_
