#include "cnnviz/run/explorer.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <list>
#include <map>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <thread>

#include "arrays.h"
#include "cnnviz/core/engine.h"
#include "cnnviz/core/stopwatch.h"
#include "cnnviz/io/files.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/label_map.h"
#include "cnnviz/methods/compute.h"
#include "cnnviz/methods/layers.h"
#include "cnnviz/run/detect.h"
#include "cnnviz/run/image_targets.h"
#include "cnnviz/run/inputs.h"

namespace fs = std::filesystem;

namespace cnnviz {

namespace {

constexpr size_t kDecodedImages = 8;      // decoded images kept (LRU)
constexpr size_t kClassifications = 512;  // classifications kept (LRU)
constexpr size_t kEngines = 8;            // instrumented models kept (LRU)
constexpr auto kPoll = std::chrono::milliseconds(25);

// A small LRU map: the most recently used entry first.
template <typename V>
class Lru {
 public:
  V* find(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }
  V& put(const std::string& key, V value) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      order_.erase(it->second);
      index_.erase(it);
    }
    order_.emplace_front(key, std::move(value));
    index_[key] = order_.begin();
    return order_.front().second;
  }
  // Drops least recently used entries while `over`(size, oldest) says so.
  template <typename Over>
  void trim(Over over) {
    while (!order_.empty() && over(order_.size(), order_.back().second)) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
  }
  void erase_if(const std::function<bool(const std::string&)>& pred) {
    for (auto it = order_.begin(); it != order_.end();) {
      if (pred(it->first)) {
        index_.erase(it->first);
        it = order_.erase(it);
      } else {
        ++it;
      }
    }
  }
  size_t size() const { return order_.size(); }

 private:
  std::list<std::pair<std::string, V>> order_;
  std::map<std::string, typename std::list<std::pair<std::string, V>>::iterator> index_;
};

struct Decoded {
  cv::Mat rgb;
  std::string hash;
  std::vector<uint8_t> jpeg;  // encoded once, when first asked for
};

// What a model says about one image, as classify() finds it: a classifier's
// logits, a detector's detections, a segmenter's pixel classes.
struct Verdict {
  Task task = Task::kClassify;
  std::vector<float> logits;          // every class's
  std::vector<Detection> detections;  // in the source's pixels, best first
  std::vector<ClassArea> areas;       // in the source's pixels
  SegmentGrid grid;
  size_t bytes() const {
    return sizeof(Verdict) + logits.size() * sizeof(float) + detections.size() * sizeof(Detection) +
           areas.size() * sizeof(ClassArea) + grid.labels.size() * sizeof(uint16_t);
  }
};

// One unit of model work and what it gave.
struct Job {
  std::string key;  // jobs with the same key are shared; "" never
  std::function<void(Job&)> run;
  Clock::time_point queued = Clock::now();
  int waiters = 1;
  bool started = false;
  // Set by the worker, under the explorer's mutex.
  bool done = false;
  std::exception_ptr error;
  double started_ms = 0.0;  // queue wait
  // Results (the ones this kind of job gives).
  std::shared_ptr<const MapSet> set;
  std::shared_ptr<const Verdict> verdict;
  std::pair<std::vector<std::string>, std::string> layers;
  std::vector<std::string> labels;
};

const char* task_noun(Task task) {
  switch (task) {
    case Task::kDetect:
      return "detector";
    case Task::kSegment:
      return "segmenter";
    case Task::kClassify:
      break;
  }
  return "classifier";
}

std::string score_text(double v) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f", v);
  return text;
}

// A request's target in the cache's keys: "box=B", "class=K", or "" (none
// given); a computed set's (its task says which).
std::string target_key(const MapRequest& r) {
  if (!r.box.empty()) return "box=" + r.box;
  return r.cls ? "class=" + std::to_string(*r.cls) : std::string();
}
std::string target_key(const MapRequest& r, Task task) {
  return task == Task::kDetect ? "box=" + r.box : "class=" + std::to_string(*r.cls);
}

std::string score_key(const MapRequest& r) {
  return (r.score ? score_name(*r.score) : std::string("default")) + (r.counterfactual ? "-" : "+");
}

}  // namespace

size_t MapSet::bytes() const {
  size_t n = sizeof(MapSet);
  for (const ExplorerMap& m : maps) n += m.raw.data.size() * sizeof(float) + m.layer.size();
  return n;
}

std::string explorer_layer_use(const MethodDef& method) {
  // A forward pass per channel of every feature stage would take minutes:
  // such a method gets the default layer only.
  if (method.layers == LayerUse::kChosen) return method.forward_per_channel ? "default" : "all";
  return layer_use_name(method.layers);
}

struct Explorer::Impl {
  ExplorerOptions opts;
  ModelLoader load;
  ModelLister list;
  std::vector<std::string> notes;
  std::vector<std::string> warnings;
  std::vector<ImageRef> images;
  std::map<std::string, std::string> paths;  // id -> file

  mutable std::mutex mutex;          // guards everything below but the worker's own state
  std::condition_variable wake;      // the worker: a job, or stop
  std::condition_variable finished;  // callers: a job is done
  struct Upload {
    ImageRef ref;
    std::string bytes;
  };
  std::deque<Upload> uploads;  // oldest first
  Lru<std::shared_ptr<Decoded>> decoded;
  Lru<std::shared_ptr<const Verdict>> classified;  // hash|model
  size_t verdict_bytes = 0;
  // The target a request without one got (hash|model|method|score -> class
  // or box), so that asking again finds the cached set.
  Lru<std::string> defaults;
  Lru<std::shared_ptr<const MapSet>> sets;
  size_t set_bytes = 0;
  std::map<std::string, std::shared_ptr<Job>> pending;
  std::map<std::string, ModelInfo> infos;  // of every model loaded so far
  std::deque<std::shared_ptr<Job>> queue;
  bool stopping = false;
  ExplorerStats stats;
  double mean_job_ms = 100.0;

  // The worker's own: loaded models and their engines.
  Lru<std::shared_ptr<Model>> models;
  Lru<std::shared_ptr<Engine>> engines;  // model|layers|lrp -> engine
  // Preprocessed inputs (hash|model): a classification's, reused by the maps
  // the page asks for next.
  Lru<at::Tensor> inputs;

  std::thread worker;

  // --- images ---

  std::shared_ptr<Decoded> decode(const std::string& id) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (auto* d = decoded.find(id)) return *d;
    }
    std::vector<uint8_t> bytes;
    std::string name;
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto it = paths.find(id);
      if (it != paths.end()) {
        name = it->second;
      } else {
        for (const Upload& u : uploads) {
          if (u.ref.id == id) {
            bytes.assign(u.bytes.begin(), u.bytes.end());
            name = u.ref.name;
          }
        }
        if (name.empty()) throw NotFound("image '" + id + "': no such image");
      }
    }
    if (bytes.empty()) {
      bytes = read_file(name, "image", static_cast<size_t>(max_image_file_bytes(opts.max_pixels)));
    }
    auto d = std::make_shared<Decoded>();
    d->rgb = decode_image_rgb(bytes, name, opts.max_pixels);
    d->hash = fnv1a_hex(bytes.data(), bytes.size());
    std::lock_guard<std::mutex> lock(mutex);
    decoded.put(id, d);
    decoded.trim([](size_t n, const auto&) { return n > kDecodedImages; });
    return d;
  }

  // --- the queue ---

  std::shared_ptr<Job> submit(const std::string& key, std::function<void(Job&)> run) {
    std::lock_guard<std::mutex> lock(mutex);
    if (stopping) throw Cancelled();
    if (!key.empty()) {
      auto it = pending.find(key);
      if (it != pending.end()) {
        ++it->second->waiters;
        return it->second;
      }
    }
    if (queue.size() >= opts.queue) {
      ++stats.jobs_rejected;
      const double wait_s = mean_job_ms * static_cast<double>(queue.size() + 1) / 1000.0;
      throw Busy("server busy: " + std::to_string(queue.size()) + " requests are waiting",
                 std::max(1, static_cast<int>(wait_s + 0.999)));
    }
    auto job = std::make_shared<Job>();
    job->key = key;
    job->run = std::move(run);
    queue.push_back(job);
    if (!key.empty()) pending[key] = job;
    wake.notify_one();
    return job;
  }

  // Waits for `job`; a caller whose client went away stops waiting, and a
  // job nobody waits for any more is dropped if it has not started.
  void await(const std::shared_ptr<Job>& job, const GoneCheck& gone) {
    std::unique_lock<std::mutex> lock(mutex);
    while (!job->done) {
      finished.wait_for(lock, kPoll);
      if (job->done) break;
      lock.unlock();
      const bool away = gone && gone();
      lock.lock();
      if (away && !job->done) {
        if (--job->waiters == 0 && !job->started) {
          auto it = std::find(queue.begin(), queue.end(), job);
          if (it != queue.end()) queue.erase(it);
          if (!job->key.empty()) pending.erase(job->key);
          ++stats.jobs_cancelled;
        }
        throw Cancelled();
      }
    }
    if (job->error) std::rethrow_exception(job->error);
  }

  void work() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [&] { return stopping || !queue.empty(); });
        if (stopping) break;
        job = queue.front();
        queue.pop_front();
        job->started = true;
        job->started_ms = ms_since(job->queued);
      }
      const Clock::time_point start = Clock::now();
      std::exception_ptr error;
      try {
        if (opts.test_job_delay_ms > 0) {
          std::this_thread::sleep_for(std::chrono::milliseconds(opts.test_job_delay_ms));
        }
        job->run(*job);
      } catch (const Error&) {
        error = std::current_exception();
      } catch (const c10::Error& e) {
        error = std::make_exception_ptr(
            Error(ErrorCode::kRuntime, "libtorch: " + torch_error_summary(e.what())));
      } catch (const std::exception& e) {
        error = std::make_exception_ptr(Error(ErrorCode::kRuntime, first_line(e.what())));
      }
      std::lock_guard<std::mutex> lock(mutex);
      mean_job_ms = 0.8 * mean_job_ms + 0.2 * ms_since(start);
      job->error = error;
      job->done = true;
      if (!job->key.empty()) {
        auto it = pending.find(job->key);
        if (it != pending.end() && it->second == job) pending.erase(it);
      }
      ++stats.jobs_done;
      finished.notify_all();
    }
    // Stopping: whoever still waits gets an answer.
    std::lock_guard<std::mutex> lock(mutex);
    for (auto& job : queue) {
      job->error = std::make_exception_ptr(Cancelled());
      job->done = true;
    }
    queue.clear();
    pending.clear();
    finished.notify_all();
  }

  // Keeps a verdict under `key` (the mutex held): at most kClassifications
  // of them, in at most a quarter of the map cache's bytes (a segmenter's
  // carry its pixel classes).
  void keep_verdict(const std::string& key, const std::shared_ptr<const Verdict>& v) {
    if (const auto* old = classified.find(key)) verdict_bytes -= (*old)->bytes();
    classified.put(key, v);
    verdict_bytes += v->bytes();
    classified.trim([&](size_t n, const std::shared_ptr<const Verdict>& oldest) {
      if (n <= 1 || (n <= kClassifications && verdict_bytes <= opts.cache_bytes / 4)) return false;
      verdict_bytes -= oldest->bytes();
      return true;
    });
  }

  // --- on the worker ---

  Model& model(const std::string& name) {
    if (auto* m = models.find(name)) return **m;
    bool known = false;
    for (const ModelEntry& e : list()) known = known || e.name == name;
    if (!known) throw NotFound("model '" + name + "': not among the server's models");
    auto m = std::make_shared<Model>(load(name));
    {
      std::lock_guard<std::mutex> lock(mutex);
      infos[name] = m->info();
    }
    // (An engine keeps its own reference to the model it instruments.)
    models.put(name, m);
    models.trim([&](size_t n, const auto&) { return n > opts.loaded_models; });
    return *m;
  }

  Engine& engine(const std::string& model_name, Model& m, const MethodDef& method,
                 const std::vector<std::string>& layers) {
    std::string key = model_name + "|" + (method.lrp ? "relevance-rules" : "plain") +
                      (method.forward_only() ? "|forward" : "|backward");
    for (const std::string& l : layers) key += "|" + l;
    if (auto* e = engines.find(key)) return **e;
    auto e = std::make_shared<Engine>(m, layers, std::nullopt, method.lrp, !method.forward_only());
    engines.put(key, e);
    engines.trim([](size_t n, const auto&) { return n > kEngines; });
    return *e;
  }

  at::Tensor input_batch(const Model& m, const std::string& model_name, const Decoded& d) {
    const std::string key = d.hash + "|" + model_name;
    if (at::Tensor* t = inputs.find(key)) return *t;
    at::Tensor t = preprocess(d.rgb, m.info().preprocess).unsqueeze(0).to(m.device());
    inputs.put(key, t);
    inputs.trim([](size_t n, const auto&) { return n > kDecodedImages; });
    return t;
  }

  // What `model_name` says about the image `d`, on the worker.
  std::shared_ptr<const Verdict> judge(const Decoded& d, const std::string& model_name) {
    Model& m = model(model_name);
    const ModelInfo& info = m.info();
    const at::Tensor batch = input_batch(m, model_name, d);
    auto v = std::make_shared<Verdict>();
    v->task = info.task;
    if (info.task == Task::kDetect) {
      const CropBox box = crop_box(d.rgb.cols, d.rgb.rows, info.preprocess);
      const std::vector<std::vector<Detection>> found =
          decode_detections(m.raw_predictions(batch), info.layout, known_classes(info),
                            detect_defaults(info), info.path);
      for (const Detection& x : found.at(0)) v->detections.push_back(to_source(x, box));
    } else if (info.task == Task::kSegment) {
      const at::Tensor scores = m.pixel_logits(batch)[0];
      if (scores.size(0) > 65535) {
        throw Error(ErrorCode::kUnsupported,
                    "model '" + model_name + "': " + std::to_string(scores.size(0)) +
                        " classes, more than the explorer's pixel classes hold (65,535)");
      }
      const cv::Mat grid = scores_labels(scores);
      v->areas = areas_of(resize_labels(grid, d.rgb.cols, d.rgb.rows), scores.size(0));
      v->grid.width = grid.cols;
      v->grid.height = grid.rows;
      v->grid.labels.assign(grid.begin<int32_t>(), grid.end<int32_t>());
    } else {
      const at::Tensor out = m.logits(batch).to(at::kFloat).contiguous();
      const float* p = out.data_ptr<float>();
      v->logits.assign(p, p + out.size(1));
    }
    return v;
  }

  // What `model_name` says about the image `d`: cached, else one job.
  // `ms`: the job's worker time (0 when cached).
  std::shared_ptr<const Verdict> verdict(const std::shared_ptr<Decoded>& d,
                                         const std::string& model_name, const GoneCheck& gone,
                                         double* ms) {
    const std::string key = d->hash + "|" + model_name;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (auto* v = classified.find(key)) return *v;
    }
    auto job = submit("classify|" + key, [this, d, model_name, key](Job& j) {
      j.verdict = judge(*d, model_name);
      std::lock_guard<std::mutex> lock(mutex);
      keep_verdict(key, j.verdict);
    });
    await(job, gone);
    if (ms) *ms = ms_since(job->queued) - job->started_ms;
    return job->verdict;
  }

  // What a request explains on a model of its task (its chooser), with a
  // detector's box query put in `params`; checks the request's target and
  // score against the task.
  static TargetChooser request_targets(const ModelInfo& info, const MapRequest& r,
                                       const CropBox& box, MethodParams& params,
                                       std::optional<BoxSpec>& spec) {
    const std::string model = "model '" + r.model + "'";
    if (info.task != Task::kDetect && !r.box.empty()) {
      throw Error(ErrorCode::kUsage, "box '" + r.box + "': applies to detectors; " + model +
                                         " is a " + task_noun(info.task));
    }
    if (info.task == Task::kClassify) return r.cls ? fixed_class(*r.cls) : top_classes(1);
    if (r.score && *r.score != ScoreKind::kLogit) {
      throw Error(ErrorCode::kUsage,
                  "score " + score_name(*r.score) +
                      (info.task == Task::kSegment
                           ? ": a segmenter's target is the sum of its class's logits over the "
                             "class's pixels (only logit applies)"
                           : ": a detection's target is its score as the model gives it (only "
                             "logit applies)"));
    }
    if (info.task == Task::kSegment) {
      return r.cls ? fixed_class(*r.cls) : excluding_class(top_classes(1), info.background_class());
    }
    if (r.cls) {
      throw Error(ErrorCode::kUsage, "class " + std::to_string(*r.cls) +
                                         ": a detector's targets are its detections (box=K, the "
                                         "K-th best from 0, or box=x1,y1,x2,y2[:label])");
    }
    spec = parse_box_spec(r.box.empty() ? "0" : r.box, info, "box");
    if (spec->box && !inside_image(*spec->box, box)) {
      throw Error(ErrorCode::kUsage, "box '" + spec->text + "': lies outside the image (" +
                                         std::to_string(box.src_w) + " x " +
                                         std::to_string(box.src_h) + " pixels)");
    }
    const DetectSettings own = detect_defaults(info);
    params.detect.iou = own.iou;
    params.detect.multi_label = own.multi_label;
    if (spec->box) params.detect.queries = {{to_input(*spec->box, box)}};
    const bool query = spec->box.has_value();
    const int64_t column = query ? 0 : spec->index;
    const std::string what = "box '" + spec->text + "'";
    const std::string least = score_text(params.detect.min_score);
    // The pass's scores have a column per target, -inf where there is none
    // (engine.h), and one at least.
    return [column, query, what, least](const at::Tensor& scores) {
      const at::Tensor row = scores[0].to(at::kDouble).contiguous();
      const int64_t found = at::isfinite(row).sum().item<int64_t>();
      if (column < row.size(0) && std::isfinite(row[column].item<double>())) {
        return std::vector<std::vector<int64_t>>{{column}};
      }
      if (query) {
        throw Error(ErrorCode::kUsage, what +
                                           ": matches no detection (none overlaps it enough, "
                                           "or none scores above " +
                                           least + ")");
      }
      throw Error(
          ErrorCode::kUsage,
          what + (found == 0 ? ": the image has no detection (none scores above " + least + ")"
                             : ": the image has detections 0 to " + std::to_string(found - 1)));
    };
  }

  // The set's target from the pass: its class, label and probability, and
  // a detector's box.
  static void describe_target(MapSet& set, const BatchMaps& out, const ModelInfo& info,
                              const std::optional<BoxSpec>& spec) {
    const int64_t k = out.classes.at(0).at(0);
    if (k == kNoTarget) {
      throw Error(ErrorCode::kUsage, "image '" + set.request.image +
                                         "': no class but the background (nothing to explain)");
    }
    const at::Tensor logits = out.logits.to(at::kFloat).contiguous();
    if (info.task != Task::kDetect) {
      set.request.cls = k;
      set.probability = at::softmax(logits, 1)[0][k].item<double>();
      set.label = info.label(k);
      return;
    }
    const std::vector<Detection>& found = out.detections.at(0);
    const std::vector<size_t>& group = out.groups.at(0).at(static_cast<size_t>(k));
    for (size_t g : group) set.matched.push_back(static_cast<int64_t>(g));
    Detection t = to_source(found.at(group.at(0)), set.box);
    if (spec->box) {
      const BoxQuery& q = *spec->box;
      t = Detection{q.x1, q.y1, q.x2, q.y2, 0.0, q.label >= 0 ? q.label : t.label, -1};
    }
    t.score = logits[0][k].item<double>();
    set.target = t;
    set.request.box = spec->text;
    set.request.cls = t.label;
    set.probability = t.score;
    set.label = info.label(t.label);
  }

  // Every map of `method` for the image `d` and the request's target (a
  // classifier's top class, a segmenter's largest class but the background,
  // a detector's best detection, when none is given), on the worker thread.
  std::shared_ptr<const MapSet> compute_set(const Decoded& d, const MapRequest& r,
                                            const MethodDef& method) {
    Model& m = model(r.model);
    const ModelInfo& info = m.info();
    const std::string use = explorer_layer_use(method);
    const LayerRequest layers_wanted{{}, use == "all" || use == "optional"};
    Engine& e = engine(r.model, m, method, method_layers(m, method, layers_wanted));
    MethodParams given;
    given.every_head = true;  // the head picker switches without another request
    auto set = std::make_shared<MapSet>();
    set->box = crop_box(d.rgb.cols, d.rgb.rows, info.preprocess);
    std::optional<BoxSpec> spec;
    const TargetChooser targets = request_targets(info, r, set->box, given, spec);
    Score score = method_score(method, info.task == Task::kClassify ? r.score : std::nullopt,
                               r.counterfactual);
    if (info.task != Task::kClassify && !method.scores.empty()) score.kind = ScoreKind::kLogit;
    const MethodParams params = run_params(method, given, info, score);
    const Clock::time_point start = Clock::now();
    const at::Tensor batch = input_batch(m, r.model, d);
    BatchMaps out = compute_maps(e, method, batch, targets, params);
    set->request = r;
    set->request.score = params.score->kind;
    set->method = &method;
    set->score = *params.score;
    set->task = info.task;
    describe_target(*set, out, info, spec);
    const at::Tensor logits = out.logits.to(at::kFloat).contiguous();
    const float* p = logits.data_ptr<float>();
    set->logits = std::make_shared<const std::vector<float>>(p, p + logits.size(1));
    set->input_width = set->box.width;
    set->input_height = set->box.height;
    set->width = d.rgb.cols;
    set->height = d.rgb.rows;
    for (const MethodMap& mm : out.maps[0]) {
      ExplorerMap em;
      em.layer = mm.layer;
      em.head = mm.head;
      em.kind = mm.input_space() ? method.output : MapKind::kLayerMap;
      em.raw = to_float_array(mm.value[0]);
      set->maps.push_back(std::move(em));
    }
    set->compute_ms = ms_since(start);
    return set;
  }

  // Caches a computed set under its class, and the image's logits as its
  // classification, within the cache's byte budget.
  void store_set(const std::string& image_key, const std::string& set_key,
                 const std::shared_ptr<const MapSet>& set) {
    std::lock_guard<std::mutex> lock(mutex);
    if (set->task == Task::kClassify && !classified.find(image_key)) {
      auto v = std::make_shared<Verdict>();
      v->logits = *set->logits;
      keep_verdict(image_key, v);
    }
    sets.put(set_key, set);
    set_bytes += set->bytes();
    sets.trim([&](size_t n, const std::shared_ptr<const MapSet>& oldest) {
      if (n <= 1 || set_bytes <= opts.cache_bytes) return false;
      set_bytes -= oldest->bytes();
      return true;
    });
  }
};

Explorer::Explorer(ExplorerOptions options, ModelLoader loader, ModelLister lister)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.opts = std::move(options);
  s.opts.queue = std::max<size_t>(1, s.opts.queue);
  s.opts.loaded_models = std::max<size_t>(1, s.opts.loaded_models);
  s.load = std::move(loader);
  s.list = std::move(lister);
  // Ids: the path below its directory, or the file name of an image given by
  // name; links out of a directory are left out.
  std::vector<std::pair<fs::path, fs::path>> roots;  // given, canonical
  for (const std::string& r : s.opts.roots) {
    std::error_code ec;
    const fs::path c = fs::canonical(r, ec);
    if (!ec) roots.emplace_back(fs::path(r).lexically_normal(), c);
  }
  std::set<std::string> taken;
  for (const std::string& image : s.opts.images) {
    std::error_code missing;
    if (!fs::is_regular_file(image, missing)) {
      s.warnings.push_back("image '" + image + "': " +
                           (fs::exists(image, missing) ? "not a regular file" : "not found") +
                           ": not served");
      continue;
    }
    std::string id;
    bool inside_root = false;
    for (const auto& [given, canon] : roots) {
      const fs::path rel = fs::path(image).lexically_normal().lexically_relative(given);
      if (rel.empty() || *rel.begin() == "..") continue;
      std::error_code ec;
      const fs::path target = fs::canonical(image, ec);
      const fs::path inside = ec ? fs::path() : target.lexically_relative(canon);
      if (ec || inside.empty() || *inside.begin() == "..") {
        s.notes.push_back("'" + image + "' is a link out of '" + given.string() +
                          "' (or unreadable): not served");
        inside_root = true;  // handled: left out
        id.clear();
        break;
      }
      inside_root = true;
      id = rel.generic_string();
      break;
    }
    if (inside_root && id.empty()) continue;
    if (!inside_root) id = fs::path(image).filename().string();
    std::string unique = id;
    for (int n = 2; taken.count(unique); ++n) unique = id + "~" + std::to_string(n);
    taken.insert(unique);
    s.images.push_back({unique, unique});
    s.paths[unique] = image;
  }
  s.worker = std::thread([&s] { s.work(); });
}

Explorer::~Explorer() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->worker.joinable()) impl_->worker.join();
}

const ExplorerOptions& Explorer::options() const { return impl_->opts; }
const std::vector<std::string>& Explorer::notes() const { return impl_->notes; }
const std::vector<std::string>& Explorer::warnings() const { return impl_->warnings; }
std::vector<ImageRef> Explorer::images() const { return impl_->images; }

std::vector<ImageRef> Explorer::uploads() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  std::vector<ImageRef> out;
  for (const Impl::Upload& u : impl_->uploads) out.push_back(u.ref);
  return out;
}

ImageRef Explorer::add_upload(const std::string& bytes, const std::string& name) {
  Impl& s = *impl_;
  const std::string shown = name.empty() ? "upload" : name;
  if (bytes.size() > s.opts.max_upload_bytes) {
    throw Error(ErrorCode::kInput, "upload '" + shown + "': " + std::to_string(bytes.size()) +
                                       " bytes, more than the limit of " +
                                       std::to_string(s.opts.max_upload_bytes));
  }
  // Decoding checks the header's pixel count before it allocates.
  const cv::Mat rgb =
      decode_image_rgb(std::vector<uint8_t>(bytes.begin(), bytes.end()), shown, s.opts.max_pixels);
  const std::string hash = fnv1a_hex(bytes.data(), bytes.size());
  ImageRef ref{"upload-" + hash, shown};
  auto d = std::make_shared<Decoded>();
  d->rgb = rgb;
  d->hash = hash;
  std::lock_guard<std::mutex> lock(s.mutex);
  for (auto it = s.uploads.begin(); it != s.uploads.end(); ++it) {
    if (it->ref.id == ref.id) {
      s.uploads.erase(it);
      break;
    }
  }
  s.uploads.push_back({ref, bytes});
  while (s.uploads.size() > s.opts.max_uploads) {
    const std::string gone = s.uploads.front().ref.id;
    s.decoded.erase_if([&](const std::string& k) { return k == gone; });
    s.uploads.pop_front();
  }
  s.decoded.put(ref.id, d);
  s.decoded.trim([](size_t n, const auto&) { return n > kDecodedImages; });
  return ref;
}

std::vector<uint8_t> Explorer::image_jpeg(const std::string& id) {
  std::shared_ptr<Decoded> d = impl_->decode(id);
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    if (!d->jpeg.empty()) return d->jpeg;
  }
  cv::Mat bgr;
  cv::cvtColor(d->rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<uint8_t> jpeg;
  if (!cv::imencode(".jpg", bgr, jpeg, {cv::IMWRITE_JPEG_QUALITY, 90})) {
    throw Error(ErrorCode::kRuntime, "image '" + id + "': cannot encode it as JPEG");
  }
  std::lock_guard<std::mutex> lock(impl_->mutex);
  d->jpeg = jpeg;
  return jpeg;
}

std::vector<ModelEntry> Explorer::models() const { return impl_->list(); }

Classification Explorer::classify(const std::string& image, const std::string& model_name, int top,
                                  const GoneCheck& gone) {
  Impl& s = *impl_;
  std::shared_ptr<Decoded> d = s.decode(image);
  Classification c;
  c.image = image;
  c.model = model_name;
  c.width = d->rgb.cols;
  c.height = d->rgb.rows;
  double ms = 0.0;
  const std::shared_ptr<const Verdict> v = s.verdict(d, model_name, gone, &ms);
  c.ms = ms;
  // Known: the model was loaded for the verdict.
  std::lock_guard<std::mutex> lock(s.mutex);
  const ModelInfo& info = s.infos.at(model_name);
  c.task = v->task;
  c.box = crop_box(c.width, c.height, info.preprocess);
  if (v->task == Task::kDetect) {
    c.detections = v->detections;
    c.settings = detect_defaults(info);
    for (const Detection& x : c.detections) c.labels.push_back(info.label(x.label));
    return c;
  }
  if (v->task == Task::kSegment) {
    c.areas = v->areas;
    c.grid_width = v->grid.width;
    c.grid_height = v->grid.height;
    for (const ClassArea& a : c.areas) c.labels.push_back(info.label(a.index));
    return c;
  }
  const std::vector<float>& logits = v->logits;
  const at::Tensor row = at::from_blob(const_cast<float*>(logits.data()),
                                       {1, static_cast<int64_t>(logits.size())}, at::kFloat);
  const int k = std::max(1, std::min<int>(top, static_cast<int>(logits.size())));
  c.predictions = top_k(row, k)[0];
  for (const Prediction& p : c.predictions) {
    c.logits.push_back(logits[p.index]);
    c.labels.push_back(info.label(p.index));
  }
  return c;
}

SegmentGrid Explorer::segments(const std::string& image, const std::string& model_name,
                               const GoneCheck& gone) {
  Impl& s = *impl_;
  const std::shared_ptr<const Verdict> v = s.verdict(s.decode(image), model_name, gone, nullptr);
  if (v->task != Task::kSegment) {
    throw Error(ErrorCode::kUsage,
                "model '" + model_name + "': not a segmenter (a " + task_noun(v->task) + ")");
  }
  return v->grid;
}

MapSetResult Explorer::maps(const MapRequest& request, const GoneCheck& gone) {
  Impl& s = *impl_;
  const MethodDef& method = find_method(request.method);
  if (request.counterfactual && !method.counterfactual) {
    throw Error(ErrorCode::kUsage, "counterfactual: " + method.name + " cannot explain it");
  }
  if (request.cls && !request.box.empty()) {
    throw Error(ErrorCode::kUsage,
                "class and box: a detector's target is its box, another "
                "model's its class (give one)");
  }
  // Checked here so that a bad request never reaches the queue.
  method_score(method, request.score, request.counterfactual);
  std::shared_ptr<Decoded> d = s.decode(request.image);
  MapRequest r = request;
  r.method = method.name;
  // The method's default score asked for by name is the default: one key.
  if (r.score && !method.scores.empty() &&
      *r.score == method_score(method, std::nullopt, false).kind) {
    r.score.reset();
  }
  const std::string base = d->hash + "|" + r.model + "|" + method.name + "|" + score_key(r);
  std::string target = target_key(r);
  MapSetResult result;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (target.empty()) {
      // The target a request without one got before, or a classifier's
      // most probable class when a classification already knows it.
      if (auto* t = s.defaults.find(base)) {
        target = *t;
      } else if (auto* v = s.classified.find(d->hash + "|" + r.model)) {
        const std::vector<float>& l = (*v)->logits;
        if (!l.empty())
          target = "class=" + std::to_string(std::max_element(l.begin(), l.end()) - l.begin());
      }
    }
    if (!target.empty()) {
      if (auto* set = s.sets.find("maps|" + base + "|" + target)) {
        ++s.stats.cache_hits;
        result.set = *set;
        result.cached = true;
        return result;
      }
    }
    ++s.stats.cache_misses;
  }
  const bool asked = !target_key(r).empty();
  const std::string key = "maps|" + base + "|" + (target.empty() ? "default" : target);
  auto job = s.submit(key, [&s, d, r, &method, base, asked](Job& j) {
    j.set = s.compute_set(*d, r, method);
    const std::string got = target_key(j.set->request, j.set->task);
    s.store_set(d->hash + "|" + r.model, "maps|" + base + "|" + got, j.set);
    if (!asked) {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.defaults.put(base, got);
      s.defaults.trim([](size_t n, const auto&) { return n > kClassifications; });
    }
  });
  s.await(job, gone);
  result.set = job->set;
  result.queue_ms = job->started_ms;
  return result;
}

std::pair<std::vector<std::string>, std::string> Explorer::layers(const std::string& model_name,
                                                                  const GoneCheck& gone) {
  Impl& s = *impl_;
  auto job = s.submit("layers|" + model_name, [&s, model_name](Job& j) {
    Model& m = s.model(model_name);
    j.layers = {feature_layers(m), default_layer(m)};
  });
  s.await(job, gone);
  return job->layers;
}

std::vector<std::string> Explorer::labels(const std::string& model_name, const GoneCheck& gone) {
  Impl& s = *impl_;
  auto job = s.submit("labels|" + model_name, [&s, model_name](Job& j) {
    Model& m = s.model(model_name);
    const ModelInfo& info = m.info();
    int64_t n = known_classes(info);
    if (n == INT64_MAX) {
      const int side = info.preprocess.square_side();
      const cv::Mat black(side, side, CV_8UC3, cv::Scalar(0, 0, 0));
      const at::Tensor x = preprocess(black, info.preprocess).unsqueeze(0).to(m.device());
      if (info.task == Task::kDetect) {
        n = prediction_rows(m.raw_predictions(x), info.layout, n, info.path).size(2) - 5;
      } else {
        n = (info.task == Task::kSegment ? m.pixel_logits(x) : m.logits(x)).size(1);
      }
    }
    for (int64_t k = 0; k < n; ++k) j.labels.push_back(info.label(k));
  });
  s.await(job, gone);
  return job->labels;
}

ExplorerStats Explorer::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  ExplorerStats st = impl_->stats;
  st.cached_sets = impl_->sets.size();
  st.cache_bytes = impl_->set_bytes;
  st.queued = impl_->queue.size();
  return st;
}

}  // namespace cnnviz
