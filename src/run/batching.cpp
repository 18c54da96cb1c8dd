#include "batching.h"

#include "loader.h"

#include <algorithm>

namespace cnnviz {

size_t images_per_pass(const Preprocessing& p, size_t requested) {
  return p.crop > 0 || p.letterbox ? std::max<size_t>(1, requested) : 1;
}

LoaderOptions per_image_loader(const Preprocessing& preprocess, size_t batch_size, int decoders,
                               int64_t max_pixels, bool keep_rgb) {
  LoaderOptions options;
  options.batch_size = images_per_pass(preprocess, batch_size);
  options.workers = decoders;
  options.max_pixels = max_pixels;
  options.keep_rgb = keep_rgb;
  return options;
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

bool run_image_batches(
    const std::vector<std::string>& images, const Preprocessing& preprocess,
    const LoaderOptions& loader_options, Progress& progress,
    const std::function<void(std::vector<LoadedImage*>& batch, size_t begin, size_t end)>& process,
    const std::function<void(size_t position, const std::string& message)>& fail) {
  LoadList list;
  for (size_t i = 0; i < images.size(); ++i) list.add(i, images[i]);
  BatchLoader loader(list.paths, preprocess, loader_options);
  size_t chunk = loader_options.batch_size;  // images per pass; halved on out-of-memory
  for (std::vector<LoadedImage> batch = loader.next(); !batch.empty(); batch = loader.next()) {
    if (interrupted()) return true;
    std::vector<LoadedImage*> ok =
        place_loaded(batch, list, [&](LoadedImage& bad) { fail(bad.index, bad.error->what()); });
    run_in_parts(
        ok.size(), chunk, progress, [&](size_t begin, size_t end) { process(ok, begin, end); },
        [&](size_t j, const OutOfMemory& e) {
          fail(ok[j]->index, "image '" + images[ok[j]->index] + "': " + e.what());
        });
  }
  return false;
}

}  // namespace cnnviz
