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

struct ExpandedInputs {
  std::vector<std::string> images;
  std::vector<std::string> notes;  // per directory, what was skipped and why (one line each)
};

// Expands, in argument order: a directory into the regular files below it
// with an image extension (recursively, sorted by path; the others are
// skipped and named in `notes`); `list_file` ("-" for `in`, at most
// kMaxListBytes) into its entries: one path per line (blank lines and lines
// starting with '#' skipped), or one per NUL-terminated entry when the file
// holds a NUL byte (`find -print0`); anything else is kept as is, so that a
// missing file still gets its own error later. Throws Error(kInput) when the
// list file or a directory cannot be read or the list is too large.
ExpandedInputs expand_inputs(const std::vector<std::string>& args, const std::string& list_file,
                             std::istream& in);

// Class names, one per line (trailing CRs and spaces dropped, trailing
// blank lines ignored), at most kMaxClasses of at most kMaxMetadataString
// bytes each. Throws Error(kInput) "labels file '<path>': problem" for an
// empty line, a NUL byte, or too many or too long labels. read_labels reads
// the file (at most kMaxLabelsBytes) first.
std::vector<std::string> parse_labels(const std::string& text, const std::string& path);
std::vector<std::string> read_labels(const std::string& path);

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
