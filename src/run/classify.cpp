#include "cnnviz/run/classify.h"

#include <ATen/ATen.h>

#include <chrono>

#include "batching.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/stopwatch.h"
#include "loader.h"

namespace cnnviz {

namespace {

constexpr int64_t kDefaultTopK = 5;

void check_top_k(int top_k, int64_t classes) {
  if (top_k > 0 && classes > 0 && top_k > classes) {
    throw Error(ErrorCode::kUsage, "-k " + std::to_string(top_k) + ": must be between 1 and " +
                                       std::to_string(classes) + " (the model's classes)");
  }
}

// An image's scores for its given classes: logit, probability and rank
// among the probabilities `p` (ties to the lower index, as top_k ranks).
std::vector<TargetScore> given_class_scores(const ImageTargets& given, const at::Tensor& logits,
                                            const at::Tensor& p) {
  std::vector<TargetScore> out;
  for (size_t c = 0; c < given.classes.size(); ++c) {
    const int64_t cls = given.classes[c];
    if (cls >= p.size(0)) {
      throw Error(ErrorCode::kUsage, "class " + std::to_string(cls) +
                                         ": out of range (the model has " +
                                         std::to_string(p.size(0)) + " classes)");
    }
    const double pc = p[cls].item<double>();
    const int64_t above =
        (p > pc).sum().item<int64_t>() + (p.slice(0, 0, cls) == pc).sum().item<int64_t>();
    out.push_back({cls, given.specs[c], given.source, logits[cls].item<double>(), pc, above + 1});
  }
  return out;
}

// The images of `plan` whose targets exist; the others fail now.
LoadList images_to_load(const std::vector<std::string>& images, const TargetPlan& plan,
                        ClassifySummary& summary, Progress& progress) {
  LoadList list;
  for (size_t i = 0; i < images.size(); ++i) {
    summary.results[i].image = images[i];
    if (plan.of(i).error.empty()) {
      list.add(i, images[i]);
    } else {
      summary.results[i].error = plan.of(i).error;
      ++summary.failed;
      progress.failed(plan.of(i).error);
    }
  }
  return list;
}

// One forward pass over inputs [begin, end) of a batch; each image's result
// goes to `on_result`.
struct PassRunner {
  const Model& model;
  const TargetPlan& plan;
  const ClassifyOptions& options;
  ClassifySummary& summary;
  Progress& progress;
  const std::function<void(const ClassifyResult&)>& on_result;

  void run(const std::vector<at::Tensor>& inputs, const std::vector<size_t>& slots, size_t begin,
           size_t end) {
    const Clock::time_point t = Clock::now();
    const at::Tensor logits = model.logits(
        at::stack(std::vector<at::Tensor>(inputs.begin() + static_cast<std::ptrdiff_t>(begin),
                                          inputs.begin() + static_cast<std::ptrdiff_t>(end))));
    // Not given: 5, or every class of a model with fewer.
    const int64_t k =
        options.top_k > 0 ? options.top_k : std::min<int64_t>(kDefaultTopK, logits.size(1));
    check_top_k(static_cast<int>(k), logits.size(1));
    std::vector<std::vector<Prediction>> top = top_k(logits, static_cast<int>(k));
    summary.network_ms += ms_since(t);
    const at::Tensor probs = at::softmax(logits.to(at::kDouble), 1);
    for (size_t j = begin; j < end; ++j) {
      const auto row = static_cast<int64_t>(j - begin);
      ClassifyResult& r = summary.results[slots[j]];
      r.predictions = std::move(top[j - begin]);
      r.targets = given_class_scores(plan.of(slots[j]), logits[row], probs[row]);
      on_result(r);
    }
    progress.done(end - begin);
  }
};

}  // namespace

ClassifySummary classify(const Model& model, const std::vector<std::string>& images,
                         const ClassifyOptions& options, Progress& progress,
                         const std::function<void(const ClassifyResult&)>& on_result) {
  const ModelInfo& info = model.info();
  check_top_k(options.top_k,
              !info.labels.empty() ? static_cast<int64_t>(info.labels.size()) : info.num_classes);
  std::vector<size_t> all(images.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  TargetRequest request = options.targets;
  request.top = 0;  // the predictions are the top classes
  const TargetPlan plan(info, images, all, request, progress);
  const Clock::time_point start = Clock::now();
  ClassifySummary summary;
  summary.results.resize(images.size());
  const LoadList list = images_to_load(images, plan, summary, progress);
  LoaderOptions loader_options;
  loader_options.batch_size = images_per_pass(model.info().preprocess, options.batch_size);
  loader_options.workers = options.decoders;
  loader_options.max_pixels = options.max_pixels;
  BatchLoader loader(list.paths, info.preprocess, loader_options);
  PassRunner runner{model, plan, options, summary, progress, on_result};
  auto fail = [&](size_t position, const std::string& message) {
    summary.results[position].error = message;
    ++summary.failed;
    progress.failed(message);
  };
  size_t chunk = loader_options.batch_size;  // images per pass; halved on out-of-memory
  while (true) {
    const Clock::time_point t = Clock::now();
    std::vector<LoadedImage> batch = loader.next();
    summary.wait_ms += ms_since(t);
    if (batch.empty()) break;
    if (interrupted()) {
      summary.interrupted = true;
      break;
    }
    for (const LoadedImage& img : batch) summary.decode_cpu_ms += img.load_cpu_ms;
    std::vector<at::Tensor> inputs;
    std::vector<size_t> slots;
    for (LoadedImage* img :
         place_loaded(batch, list, [&](LoadedImage& bad) { fail(bad.index, bad.error->what()); })) {
      summary.results[img->index].grey = img->grey;
      inputs.push_back(std::move(img->input));
      slots.push_back(img->index);
    }
    run_in_parts(
        inputs.size(), chunk, progress,
        [&](size_t begin, size_t end) { runner.run(inputs, slots, begin, end); },
        [&](size_t j, const OutOfMemory& e) {
          fail(slots[j], "image '" + images[slots[j]] + "': " + e.what());
        });
  }
  summary.run_ms = ms_since(start);
  return summary;
}

}  // namespace cnnviz
