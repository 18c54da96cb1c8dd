// Fuzz targets: every parser of data cnnviz did not write, driven by
// arbitrary bytes. Each returns 0; a cnnviz::Error is an expected refusal,
// anything else (another exception, a crash, a sanitizer report, a broken
// round trip) is a bug. scripts/fuzz.sh runs them under libFuzzer; the
// unit test FuzzCorpusTest replays their seed corpus and every input that
// once crashed (tests/fuzz/corpus/<target>/, tests/fuzz/regressions/).
#ifndef CNNVIZ_TESTS_FUZZ_TARGETS_H_
#define CNNVIZ_TESTS_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cnnviz::fuzz {

// Image bytes -> decoding (a 4-megapixel budget) -> crop and preprocessing.
int image(const uint8_t* data, size_t size);
// cnnviz.json text -> parse_model_info.
int metadata(const uint8_t* data, size_t size);
// Text -> a labels file, and a --from-list file.
int lists(const uint8_t* data, size_t size);
// A manifest (for report and merge) and a journal (for --skip-existing).
int manifests(const uint8_t* data, size_t size);
// .npy bytes -> read_npy; and a float array from the bytes written and read
// back unchanged.
int npy(const uint8_t* data, size_t size);
// A config file (TOML) -> cli::apply_config on a parsed command line.
int config(const uint8_t* data, size_t size);
// An image from the bytes -> encode_png -> OpenCV decodes it unchanged.
int png(const uint8_t* data, size_t size);
// JPEG or PNG bytes -> cnnviz's decoder and OpenCV's: where OpenCV decodes,
// cnnviz gives the same pixels (after its conversion to 8-bit RGB; CMYK
// within 2, as the two round differently), or refuses for the pixel budget,
// or for damage libjpeg reports (differential.cpp).
int differential(const uint8_t* data, size_t size);

// ONNX model bytes -> import_onnx_bytes (parse, checker, graph build).
int onnx(const uint8_t* data, size_t size);

using Target = int (*)(const uint8_t*, size_t);
struct NamedTarget {
  const char* name;
  Target run;
};
const std::vector<NamedTarget>& targets();

}  // namespace cnnviz::fuzz

#endif  // CNNVIZ_TESTS_FUZZ_TARGETS_H_
