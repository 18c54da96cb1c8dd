// libFuzzer's entry point for one target, chosen at build time with
// -DCNNVIZ_FUZZ_TARGET=<name> (scripts/fuzz.sh).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return cnnviz::fuzz::CNNVIZ_FUZZ_TARGET(data, size);
}
