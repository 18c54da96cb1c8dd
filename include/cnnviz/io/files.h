// Small file-system helpers shared by the writers.
#ifndef CNNVIZ_IO_FILES_H_
#define CNNVIZ_IO_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

namespace cnnviz {

// Reads the whole file, which must be a regular file of at most `max_bytes`
// (checked before reading; FIFOs and devices are refused without blocking).
// Throws Error(kInput) "<kind> 'path': reason" (not found, is a directory,
// not a regular file, too large, permission denied, ...).
std::vector<uint8_t> read_file(const std::string& path, const std::string& kind, size_t max_bytes);

// Writes `bytes` to `path` so that readers never see a half-written file:
// into an unnamed file in the same directory (O_TMPFILE) that is linked to
// `path` once complete, or, where the file system cannot do that, into a
// temporary file renamed into place. An existing file is replaced
// atomically. Safe to call from several threads for different paths. Throws
// Error(kOutput) and leaves nothing behind on failure.
void write_file_atomic(const std::string& path, const void* bytes, size_t size);

}  // namespace cnnviz

#endif  // CNNVIZ_IO_FILES_H_
