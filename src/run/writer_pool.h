// Threads that render and write a run's files while the network computes
// the next batch.
#ifndef CNNVIZ_SRC_RUN_WRITER_POOL_H_
#define CNNVIZ_SRC_RUN_WRITER_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cnnviz {

// Jobs run on `threads` worker threads in submission order. The queue is
// bounded: submit() blocks while `capacity` jobs wait, so a fast producer
// cannot pile up maps in memory. The workers run at a lower priority (nice
// 10), so that on a busy machine the network's threads keep their cores and
// writing fills the gaps. Jobs must not start LibTorch work (its OpenMP
// team would be per thread); rendering (render.h) does not.
//
// The first exception a job throws is kept: the jobs still queued are
// dropped, and submit() and wait() rethrow it.
class WriterPool {
 public:
  // threads: at least 1; capacity: at least 1.
  WriterPool(size_t threads, size_t capacity);
  ~WriterPool();  // runs the queued jobs (none after a failure), then joins
  WriterPool(const WriterPool&) = delete;
  WriterPool& operator=(const WriterPool&) = delete;

  void submit(std::function<void()> job);
  // Until every submitted job has finished.
  void wait();
  // Rethrows a job's exception, if one failed.
  void check();

  size_t threads() const { return workers_.size(); }
  // Wall time the workers spent in jobs, summed over workers (ms), and the
  // CPU time they used.
  double busy_ms() const;
  double cpu_ms() const;

 private:
  void work(size_t index);

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::function<void()>> queue_;
  size_t capacity_;
  size_t running_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
  std::vector<double> busy_ms_, cpu_ms_;  // per worker
  std::vector<std::thread> workers_;
};

}  // namespace cnnviz

#endif  // CNNVIZ_SRC_RUN_WRITER_POOL_H_
