// Turning command-line arguments into the list of images to process: files,
// directories (recursed), list files, and a deterministic shard of the result.
#ifndef CNNVIZ_RUN_INPUTS_H_
#define CNNVIZ_RUN_INPUTS_H_

#include <cstddef>
#include <iosfwd>
#include <map>
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

// FNV-1a 64 of `size` bytes as 16 hex digits: how a targets file's settings
// and the explorer's caches name content.
std::string fnv1a_hex(const void* data, size_t size);

// A targets file (--targets): which classes each image's maps explain.
// One row per line: an image, then one or more classes (indices or labels),
// separated by tabs when the line holds one, else by commas (CSV: a field
// in double quotes may hold commas, "" is a quote). Spaces around fields,
// blank lines, lines starting with '#' and a first row whose first field is
// "image", "path", "file" or "filename" (a header) are skipped.
struct TargetRow {
  std::string image;                 // a path, or a file name
  std::vector<std::string> classes;  // as written, in order
  size_t line = 0;                   // 1-based
};

struct TargetsFile {
  std::string path;
  std::vector<TargetRow> rows;
  std::string digest;  // of the bytes (FNV-1a 64, hex): the run's settings name it

  // The row of an input image: the row naming the same path (compared
  // lexically normalized), else the row naming its file name; nullptr when
  // none does.
  const TargetRow* find(const std::string& image) const;

  std::map<std::string, size_t> by_path;  // normalized path -> row (find's index)
  std::map<std::string, size_t> by_name;  // a row naming a bare file name -> row
};

// Throws Error(kInput) "targets file '<path>' line N: problem" for a row
// without classes, an empty field, an unclosed quote, an image named twice,
// more than kMaxTop classes in a row, a line over kMaxMetadataString * 4
// bytes, a NUL byte or text that is not UTF-8. read_targets reads at most
// kMaxListBytes first.
TargetsFile parse_targets(const std::string& text, const std::string& path);
TargetsFile read_targets(const std::string& path);

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

#endif  // CNNVIZ_RUN_INPUTS_H_
