#include "cnnviz/classify.h"

#include <ATen/ATen.h>

#include <chrono>

#include "cnnviz/batching.h"
#include "cnnviz/error.h"
#include "cnnviz/loader.h"
#include "cnnviz/stopwatch.h"

namespace cnnviz {

namespace {

constexpr int64_t kDefaultTopK = 5;

}  // namespace

ClassifySummary classify(const Model& model, const std::vector<std::string>& images,
                         const ClassifyOptions& options, Progress& progress,
                         const std::function<void(const ClassifyResult&)>& on_result) {
  const ModelInfo& info = model.info();
  const int64_t known_classes =
      !info.labels.empty() ? static_cast<int64_t>(info.labels.size()) : info.num_classes;
  if (options.top_k > 0 && known_classes > 0 && options.top_k > known_classes) {
    throw Error(ErrorCode::kUsage, "-k " + std::to_string(options.top_k) +
                                       ": must be between 1 and " + std::to_string(known_classes) +
                                       " (the model's classes)");
  }
  std::vector<size_t> all(images.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  TargetRequest request = options.targets;
  request.top = 0;  // the predictions are the top classes
  const TargetPlan plan(info, images, all, request, progress);
  const Clock::time_point start = Clock::now();
  ClassifySummary summary;
  summary.results.resize(images.size());
  std::vector<std::string> to_load;
  std::vector<size_t> load_position;
  for (size_t i = 0; i < images.size(); ++i) {
    summary.results[i].image = images[i];
    if (plan.of(i).error.empty()) {
      to_load.push_back(images[i]);
      load_position.push_back(i);
    } else {
      summary.results[i].error = plan.of(i).error;
      ++summary.failed;
      progress.failed(plan.of(i).error);
    }
  }
  LoaderOptions loader_options;
  loader_options.batch_size = std::max<size_t>(1, options.batch_size);
  loader_options.workers = options.decoders;
  loader_options.max_pixels = options.max_pixels;
  BatchLoader loader(to_load, info.preprocess, loader_options);
  size_t chunk = loader_options.batch_size;  // images per pass; halved on out-of-memory
  auto next_batch = [&] {
    const Clock::time_point t = Clock::now();
    std::vector<LoadedImage> b = loader.next();
    summary.wait_ms += ms_since(t);
    return b;
  };
  for (std::vector<LoadedImage> batch = next_batch(); !batch.empty(); batch = next_batch()) {
    if (interrupted()) {
      summary.interrupted = true;
      break;
    }
    std::vector<at::Tensor> inputs;
    std::vector<size_t> slots;
    for (LoadedImage& img : batch) {
      img.index = load_position[img.index];
      summary.decode_cpu_ms += img.load_cpu_ms;
      if (img.error) {
        summary.results[img.index].error = img.error->what();
        ++summary.failed;
        progress.failed(img.error->what());
      } else {
        summary.results[img.index].grey = img.grey;
        inputs.push_back(std::move(img.input));
        slots.push_back(img.index);
      }
    }
    run_in_parts(
        inputs.size(), chunk, progress,
        [&](size_t begin, size_t end) {
          const Clock::time_point t = Clock::now();
          const at::Tensor logits = model.logits(at::stack(
              std::vector<at::Tensor>(inputs.begin() + static_cast<std::ptrdiff_t>(begin),
                                      inputs.begin() + static_cast<std::ptrdiff_t>(end))));
          // Not given: 5, or every class of a model with fewer.
          const int64_t k =
              options.top_k > 0 ? options.top_k : std::min<int64_t>(kDefaultTopK, logits.size(1));
          if (k > logits.size(1)) {
            throw Error(ErrorCode::kUsage, "-k " + std::to_string(k) + ": must be between 1 and " +
                                               std::to_string(logits.size(1)) +
                                               " (the model's classes)");
          }
          std::vector<std::vector<Prediction>> top = top_k(logits, static_cast<int>(k));
          summary.network_ms += ms_since(t);
          const at::Tensor probs = at::softmax(logits.to(at::kDouble), 1);
          for (size_t j = begin; j < end; ++j) {
            ClassifyResult& r = summary.results[slots[j]];
            r.predictions = std::move(top[j - begin]);
            const ImageTargets& given = plan.of(slots[j]);
            const at::Tensor p = probs[static_cast<int64_t>(j - begin)];
            for (size_t c = 0; c < given.classes.size(); ++c) {
              const int64_t cls = given.classes[c];
              if (cls >= p.size(0)) {
                throw Error(ErrorCode::kUsage, "class " + std::to_string(cls) +
                                                   ": out of range (the model has " +
                                                   std::to_string(p.size(0)) + " classes)");
              }
              const double pc = p[cls].item<double>();
              // Ranked as top_k ranks: by probability, ties to the lower index.
              const int64_t above =
                  (p > pc).sum().item<int64_t>() + (p.slice(0, 0, cls) == pc).sum().item<int64_t>();
              r.targets.push_back({cls, given.specs[c], given.source,
                                   logits[static_cast<int64_t>(j - begin)][cls].item<double>(), pc,
                                   above + 1});
            }
            on_result(r);
          }
          progress.done(end - begin);
        },
        [&](size_t j, const OutOfMemory& e) {
          const std::string message = "image '" + images[slots[j]] + "': " + e.what();
          summary.results[slots[j]].error = message;
          ++summary.failed;
          progress.failed(message);
        });
  }
  summary.run_ms = ms_since(start);
  return summary;
}

}  // namespace cnnviz
