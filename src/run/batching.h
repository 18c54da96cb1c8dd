// Running a batch in parts when the device runs out of memory: the one
// retry rule of every run (classify, explain).
#ifndef CNNVIZ_SRC_RUN_BATCHING_H_
#define CNNVIZ_SRC_RUN_BATCHING_H_

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "cnnviz/core/error.h"
#include "cnnviz/core/model.h"
#include "cnnviz/run/progress.h"
#include "loader.h"

namespace cnnviz {

// Images per pass for a run that asked for `requested` (at least 1): one for
// a model without a crop (nor a letterbox), whose inputs differ in size.
size_t images_per_pass(const Preprocessing& p, size_t requested);

// Runs `process(begin, end)` on consecutive parts of [0, count) of at most
// `chunk` items. When it throws OutOfMemory on a part of more than one item,
// `chunk` becomes half that part (rounded up) for this batch and the rest of
// the run (the caller keeps it), `progress` says so ("out of memory on a
// batch of 32 images: retrying in batches of 16"), and the part is tried
// again. An item that does not fit alone goes to `failed(index, error)`.
// Any other exception propagates.
void run_in_parts(size_t count, size_t& chunk, Progress& progress,
                  const std::function<void(size_t begin, size_t end)>& process,
                  const std::function<void(size_t index, const OutOfMemory& error)>& failed);

// The loop of the runs that take each image once (segment, detect): decodes
// `images` in batches of loader.batch_size ahead of the network, hands the
// decoded ones to `process(batch, begin, end)` in parts (run_in_parts), and
// each image that cannot be decoded or does not fit in memory to
// `fail(position, message)`. Stops at the next batch when interrupted;
// returns whether it was.
bool run_image_batches(
    const std::vector<std::string>& images, const Preprocessing& preprocess,
    const LoaderOptions& loader, Progress& progress,
    const std::function<void(std::vector<LoadedImage*>& batch, size_t begin, size_t end)>& process,
    const std::function<void(size_t position, const std::string& message)>& fail);

// The loader of a run that takes each image once: batches of
// images_per_pass(preprocess, batch_size) images.
LoaderOptions per_image_loader(const Preprocessing& preprocess, size_t batch_size, int decoders,
                               int64_t max_pixels, bool keep_rgb);

// run_image_batches for a run whose `summary` is a PerImageSummary
// (image_facts.h): its results are made one per image, `run(batch, begin,
// end)` fills those of a part, each of which then goes to `on_result`;
// failures are recorded in their result and reported.
template <typename Summary, typename Run, typename OnResult>
void run_each_image(const std::vector<std::string>& images, const Preprocessing& preprocess,
                    const LoaderOptions& loader, Progress& progress, Summary& summary, Run&& run,
                    OnResult&& on_result) {
  summary.results.resize(images.size());
  for (size_t i = 0; i < images.size(); ++i) summary.results[i].image = images[i];
  summary.interrupted = run_image_batches(
      images, preprocess, loader, progress,
      [&](std::vector<LoadedImage*>& ok, size_t begin, size_t end) {
        run(ok, begin, end);
        for (size_t i = begin; i < end; ++i) on_result(summary.results[ok[i]->index]);
        progress.done(end - begin);
      },
      [&](size_t position, const std::string& message) {
        summary.results[position].error = message;
        ++summary.failed;
        progress.failed(message);
      });
}

}  // namespace cnnviz

#endif  // CNNVIZ_SRC_RUN_BATCHING_H_
