// Turning command-line arguments into the list of images to process: files,
// directories (recursed), list files, and a deterministic shard of the result.
#ifndef CNNVIZ_INPUTS_H_
#define CNNVIZ_INPUTS_H_

#include <cstddef>
#include <iosfwd>
#include <string>
#include <vector>

namespace cnnviz {

// File name extensions taken from directories (lower case, with the dot).
const std::vector<std::string>& image_extensions();

// Expands, in argument order: a directory into the image files below it
// (recursively, by extension, sorted by path); `list_file` ("-" for `in`)
// into its lines (one path per line; blank lines and lines starting with '#'
// skipped); anything else is kept as is, so that a missing file still gets
// its own error later. Throws Error(kInput) when the list file or a
// directory cannot be read.
std::vector<std::string> expand_inputs(const std::vector<std::string>& args,
                                       const std::string& list_file, std::istream& in);

// "K/N" with 1 <= K <= N: this process takes every N-th input starting at
// the K-th, so N processes with K = 1..N cover every input exactly once.
struct Shard {
  size_t index = 1;  // K
  size_t count = 1;  // N
  bool active() const { return count > 1; }
  std::string name() const;  // "shard-K-of-N"
};
// Throws Error(kUsage) for anything but K/N with 1 <= K <= N.
Shard parse_shard(const std::string& text);
// The positions in [0, n) that `shard` takes.
std::vector<size_t> shard_positions(size_t n, const Shard& shard);

}  // namespace cnnviz

#endif  // CNNVIZ_INPUTS_H_
