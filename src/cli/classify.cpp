#include "classify.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "cnnviz/error.h"
#include "cnnviz/explain.h"
#include "cnnviz/inputs.h"
#include "cnnviz/loader.h"
#include "cnnviz/predict.h"
#include "cnnviz/preprocess.h"
#include "cnnviz/progress.h"
#include "cnnviz/runtime.h"

namespace cnnviz::cli {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct Outcome {
  bool done = false;
  std::vector<Prediction> predictions;
  std::optional<std::string> error;
};

void print_text(std::ostream& out, const std::string& image, const std::vector<Prediction>& preds,
                const ModelInfo& info) {
  out << image << "\n";
  char line[64];
  for (size_t r = 0; r < preds.size(); ++r) {
    std::snprintf(line, sizeof(line), "  %2zu  %.4f  %4lld  ", r + 1, preds[r].probability,
                  static_cast<long long>(preds[r].index));
    out << line << info.label(preds[r].index) << "\n";
  }
}

}  // namespace

CLI::App* setup_classify(CLI::App& app, ClassifyOptions& opts) {
  CLI::App* sub = app.add_subcommand("classify", "Print the top-K ImageNet classes of each image");
  add_input_options(*sub, opts.inputs);
  add_model_options(*sub, opts.model);
  sub->add_option("-k,--top-k", opts.top_k, "Number of classes to print per image")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--batch-size", opts.batch_size, "Images per forward pass")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  sub->add_option("--decoders", opts.decoders,
                  "Threads decoding images ahead of the network (default: every core)")
      ->check(CLI::Range(1, 256));
  sub->add_flag("--json", opts.json, "Print one JSON document instead of text (schema: README)");
  sub->add_flag("--timings", opts.timings,
                "Print load and run times (ms) to stderr as a JSON line, for benchmarks");
  return sub;
}

int run_classify(const ClassifyOptions& opts, std::ostream& out, std::ostream& err) {
  const std::vector<std::string> all = collect_inputs(opts.inputs);
  const Shard shard = parse_shard(opts.inputs.shard);
  std::vector<std::string> images;
  for (size_t p : shard_positions(all.size(), shard)) images.push_back(all[p]);
  Clock::time_point start = Clock::now();
  Model model = open_model(opts.model, err);
  const ModelInfo& info = model.info();
  if (!info.labels.empty() && opts.top_k > static_cast<int>(info.labels.size())) {
    throw Error(ErrorCode::kUsage, "-k " + std::to_string(opts.top_k) + ": must be between 1 and " +
                                       std::to_string(info.labels.size()) +
                                       " (the model's classes)");
  }
  const double load_ms = ms_since(start);

  start = Clock::now();
  std::vector<Outcome> outcomes(images.size());
  Progress progress(err, images.size(), !opts.inputs.quiet && stderr_is_terminal());
  bool stopped = false;
  double decode_cpu_ms = 0;
  LoaderOptions loader_options;
  loader_options.batch_size = static_cast<size_t>(opts.batch_size);
  loader_options.workers = opts.decoders;
  BatchLoader loader(images, info.preprocess, loader_options);
  size_t chunk = loader_options.batch_size;  // images per pass; halved on out-of-memory
  double wait_ms = 0, network_ms = 0;  // waiting for decoded images; in the network
  auto next_batch = [&] {
    const Clock::time_point t = Clock::now();
    std::vector<LoadedImage> b = loader.next();
    wait_ms += ms_since(t);
    return b;
  };
  for (std::vector<LoadedImage> batch = next_batch(); !batch.empty(); batch = next_batch()) {
    if (interrupted()) {
      stopped = true;
      break;
    }
    std::vector<at::Tensor> inputs;
    std::vector<size_t> slots;
    for (LoadedImage& img : batch) {
      decode_cpu_ms += img.load_cpu_ms;
      if (img.error) {
        outcomes[img.index].error = img.error->what();
        progress.failed(img.error->what());
      } else {
        inputs.push_back(std::move(img.input));
        slots.push_back(img.index);
      }
    }
    if (inputs.empty()) continue;
    // Out of device memory: halve the batch and retry, and keep the smaller
    // size for the rest of the run. An image that does not fit alone fails.
    for (size_t start = 0; start < inputs.size();) {
      const size_t end = std::min(inputs.size(), start + chunk);
      std::vector<std::vector<Prediction>> top;
      try {
        const Clock::time_point t = Clock::now();
        top = top_k(model.logits(at::stack(std::vector<at::Tensor>(
                        inputs.begin() + static_cast<std::ptrdiff_t>(start),
                        inputs.begin() + static_cast<std::ptrdiff_t>(end)))),
                    opts.top_k);
        network_ms += ms_since(t);
      } catch (const OutOfMemory& e) {
        if (end - start > 1) {
          chunk = (end - start + 1) / 2;
          progress.note("out of memory on a batch of " + std::to_string(end - start) +
                        " images: retrying in batches of " + std::to_string(chunk));
          continue;
        }
        const std::string message = "image '" + images[slots[start]] + "': " + e.what();
        outcomes[slots[start]].error = message;
        progress.failed(message);
        start = end;
        continue;
      }
      for (size_t j = start; j < end; ++j) {
        outcomes[slots[j]].predictions = std::move(top[j - start]);
        outcomes[slots[j]].done = true;
        // Text results stream out batch by batch; JSON is one document at the end.
        if (!opts.json) print_text(out, images[slots[j]], outcomes[slots[j]].predictions, info);
      }
      progress.done(end - start);
      start = end;
    }
  }
  const double run_ms = ms_since(start);

  size_t failed = 0;
  for (const Outcome& o : outcomes) failed += o.error ? 1 : 0;

  if (opts.json) {
    nlohmann::ordered_json doc;
    doc["model"] = model_json(info);
    doc["results"] = nlohmann::ordered_json::array();
    for (size_t i = 0; i < outcomes.size(); ++i) {
      if (!outcomes[i].done && !outcomes[i].error) continue;  // not reached (interrupted)
      nlohmann::ordered_json r;
      r["image"] = images[i];
      if (outcomes[i].error) {
        r["error"] = *outcomes[i].error;
      } else {
        r["predictions"] = nlohmann::ordered_json::array();
        int rank = 1;
        for (const Prediction& p : outcomes[i].predictions) {
          r["predictions"].push_back({{"rank", rank++},
                                      {"index", p.index},
                                      {"label", info.label(p.index)},
                                      {"probability", p.probability}});
        }
      }
      doc["results"].push_back(std::move(r));
    }
    doc["summary"] = {{"images", outcomes.size()}, {"failed", failed}, {"interrupted", stopped}};
    out << doc.dump(2) << "\n";
  }
  if (opts.timings) {
    nlohmann::ordered_json t = {{"images", outcomes.size()},
                                {"failed", failed},
                                {"device", model.device().str()},
                                {"threads", current_threads()},
                                {"batch_size", opts.batch_size},
                                {"load_ms", load_ms},
                                {"run_ms", run_ms},
                                {"per_image_ms", run_ms / std::max<size_t>(1, outcomes.size())},
                                {"network_ms", network_ms},
                                {"wait_ms", wait_ms},
                                {"decode_cpu_ms_per_image", decode_cpu_ms / std::max<size_t>(1, outcomes.size())}};
    err << kPrefix << "timings " << t.dump() << "\n";
  }
  if (!opts.inputs.quiet && (stopped || failed > 0 || outcomes.size() > 1)) {
    progress.summary(stopped);
  }
  if (stopped) return kInterruptedExit;
  return failed > 0 ? static_cast<int>(ErrorCode::kInput) : 0;
}

}  // namespace cnnviz::cli
