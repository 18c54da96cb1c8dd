#include "loader.h"

#include <condition_variable>
#include <mutex>
#include <thread>

#include "cnnviz/io/image.h"
#include "threads.h"

namespace cnnviz {

struct BatchLoader::State {
  std::vector<std::string> paths;
  Preprocessing preprocessing;
  LoaderOptions options;

  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::optional<LoadedImage>> slots;  // filled by the workers
  size_t next_claim = 0;                          // next index a worker takes
  size_t next_deliver = 0;                        // first index not yet returned by next()
  bool stopping = false;
  std::vector<std::thread> workers;

  LoadedImage load(size_t i) const {
    const double start = thread_cpu_ms();
    LoadedImage img;
    img.index = i;
    img.path = paths[i];
    try {
      cv::Mat rgb = read_image_rgb(paths[i], options.max_pixels);
      img.box = crop_box(rgb.cols, rgb.rows, preprocessing);
      img.input = preprocess(rgb, preprocessing);
      img.grey = is_grey(rgb);
      if (options.keep_rgb) img.rgb = std::move(rgb);
    } catch (const Error& e) {
      img.error = with_image_name(e, paths[i]);
    } catch (const std::exception& e) {  // e.g. out of memory on a huge image
      img.error = Error(ErrorCode::kInput, "image '" + paths[i] + "': " + first_line(e.what()));
    }
    img.load_cpu_ms = thread_cpu_ms() - start;
    return img;
  }

  void work() {
    // Decoding and preprocessing use no LibTorch parallelism (see
    // preprocess()), so these threads never touch the network's thread pool.
    lower_thread_priority();
    for (;;) {
      size_t i;
      {
        std::unique_lock<std::mutex> lock(mutex);
        const size_t window = options.prefetch * options.batch_size;
        changed.wait(lock, [&] {
          return stopping || next_claim >= paths.size() || next_claim < next_deliver + window;
        });
        if (stopping || next_claim >= paths.size()) return;
        i = next_claim++;
      }
      LoadedImage img = load(i);
      {
        std::lock_guard<std::mutex> lock(mutex);
        slots[i] = std::move(img);
      }
      changed.notify_all();
    }
  }
};

BatchLoader::BatchLoader(std::vector<std::string> paths, Preprocessing preprocessing,
                         LoaderOptions options)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.paths = std::move(paths);
  s.preprocessing = preprocessing;
  s.options = options;
  if (s.options.batch_size == 0) s.options.batch_size = 1;
  if (s.options.prefetch == 0) s.options.prefetch = 1;
  s.slots.resize(s.paths.size());
  size_t workers = options.workers > 0 ? static_cast<size_t>(options.workers)
                                       : std::max(1u, std::thread::hardware_concurrency());
  workers = std::min(workers, std::max<size_t>(1, s.paths.size()));
  for (size_t w = 0; w < workers; ++w) s.workers.emplace_back([&s] { s.work(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stopping = true;
  }
  state_->changed.notify_all();
  for (std::thread& t : state_->workers) t.join();
}

std::vector<LoadedImage> BatchLoader::next() {
  State& s = *state_;
  std::vector<LoadedImage> batch;
  std::unique_lock<std::mutex> lock(s.mutex);
  const size_t end = std::min(s.next_deliver + s.options.batch_size, s.paths.size());
  for (size_t i = s.next_deliver; i < end; ++i) {
    s.changed.wait(lock, [&] { return s.slots[i].has_value(); });
    batch.push_back(std::move(*s.slots[i]));
    s.slots[i].reset();
  }
  s.next_deliver = end;
  lock.unlock();
  s.changed.notify_all();
  return batch;
}

std::vector<LoadedImage*> place_loaded(std::vector<LoadedImage>& batch, const LoadList& list,
                                       const std::function<void(LoadedImage&)>& failed) {
  std::vector<LoadedImage*> ok;
  for (LoadedImage& img : batch) {
    img.index = list.positions[img.index];
    if (img.error) {
      failed(img);
    } else {
      ok.push_back(&img);
    }
  }
  return ok;
}

}  // namespace cnnviz
