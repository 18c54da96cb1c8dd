// The bounds cnnviz puts on what it reads and on its options, checked before
// the expensive step, so that no input (an image header, model metadata, a
// list or manifest file, an option value) can make it allocate without
// limit. See docs/security.md.
#ifndef CNNVIZ_CORE_LIMITS_H_
#define CNNVIZ_CORE_LIMITS_H_

#include <cstddef>
#include <cstdint>

namespace cnnviz {

// Images: decoded size (width x height), default of --max-pixels.
constexpr int64_t kDefaultMaxPixels = 200'000'000;  // 12000x12000 and 100-MP photos fit
constexpr int64_t kMaxMaxPixels = 1'000'000'000;    // the largest --max-pixels
// An image file may be at most this many bytes per pixel of the budget (an
// uncompressed 16-bit RGBA image has 8), plus 1 MiB of headers.
constexpr int64_t kMaxImageBytesPerPixel = 8;

// Model metadata (cnnviz.json) and the preprocessing it or the command line asks for.
constexpr size_t kMaxMetadataBytes = size_t{16} << 20;
constexpr size_t kMaxMetadataString = 4096;  // a name, label or layer path
constexpr size_t kMaxMetadataLayers = 10000;
constexpr int64_t kMaxClasses = 100000;
constexpr int kMaxCrop = 4096;
constexpr int kMaxResize = 8192;

// Text and JSON files other programs or people may have written.
constexpr size_t kMaxListBytes = size_t{64} << 20;         // --from-list
constexpr size_t kMaxLabelsBytes = size_t{16} << 20;       // --labels
constexpr size_t kMaxManifestBytes = size_t{1} << 30;      // merge, report
constexpr size_t kMaxJournalLineBytes = size_t{16} << 20;  // --skip-existing

// Option values.
constexpr int kMaxThreads = 256;         // --threads, --decoders, --writers
constexpr int kMaxBatch = 256;           // --batch-size of the map methods
constexpr int kMaxClassifyBatch = 1024;  // classify's --batch-size
constexpr int kMaxTop = 100;             // --top
constexpr int kMaxDetections = 10000;    // detect's --max-detections
constexpr int kMaxSamples = 10000;       // --samples, --steps
constexpr int kMaxMasks = 100000;        // RISE's --masks
constexpr int kMaxSampleBatch = 1024;    // --sample-batch, --eval-batch

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_LIMITS_H_
