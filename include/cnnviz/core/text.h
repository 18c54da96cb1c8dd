// Small text helpers shared by the layers.
#ifndef CNNVIZ_CORE_TEXT_H_
#define CNNVIZ_CORE_TEXT_H_

#include <cstddef>
#include <string>

namespace cnnviz {

// Levenshtein distance: the fewest insertions, deletions and substitutions
// that turn `a` into `b`. What the "did you mean" hints rank by.
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_TEXT_H_
