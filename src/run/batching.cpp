#include "batching.h"

#include <algorithm>

namespace cnnviz {

size_t images_per_pass(const Preprocessing& p, size_t requested) {
  return p.crop > 0 ? std::max<size_t>(1, requested) : 1;
}

void run_in_parts(size_t count, size_t& chunk, Progress& progress,
                  const std::function<void(size_t begin, size_t end)>& process,
                  const std::function<void(size_t index, const OutOfMemory& error)>& failed) {
  chunk = std::max<size_t>(1, chunk);
  for (size_t start = 0; start < count;) {
    const size_t end = std::min(count, start + chunk);
    try {
      process(start, end);
    } catch (const OutOfMemory& e) {
      if (end - start > 1) {
        chunk = (end - start + 1) / 2;
        progress.note("out of memory on a batch of " + std::to_string(end - start) +
                      " images: retrying in batches of " + std::to_string(chunk) + " (" + e.what() +
                      ")");
        continue;
      }
      failed(start, e);
    }
    start = end;
  }
}

}  // namespace cnnviz
