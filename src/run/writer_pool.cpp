#include "writer_pool.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "threads.h"

namespace cnnviz {

WriterPool::WriterPool(size_t threads, size_t capacity) : capacity_(std::max<size_t>(1, capacity)) {
  threads = std::max<size_t>(1, threads);
  busy_ms_.assign(threads, 0.0);
  cpu_ms_.assign(threads, 0.0);
  for (size_t i = 0; i < threads; ++i) workers_.emplace_back([this, i] { work(i); });
}

WriterPool::~WriterPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void WriterPool::work(size_t index) {
  lower_thread_priority();
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping, and nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    changed_.notify_all();  // room in the queue
    const auto start = std::chrono::steady_clock::now();
    const double cpu = thread_cpu_ms();
    std::exception_ptr failure;
    try {
      job();
    } catch (...) {
      failure = std::current_exception();
    }
    job = nullptr;  // release what it holds before saying it is done
    {
      std::lock_guard<std::mutex> lock(mutex_);
      busy_ms_[index] +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      cpu_ms_[index] += thread_cpu_ms() - cpu;
      --running_;
      if (failure && !error_) {
        error_ = failure;
        queue_.clear();
      }
    }
    changed_.notify_all();
  }
}

void WriterPool::submit(std::function<void()> job) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return queue_.size() < capacity_ || error_; });
  if (error_) std::rethrow_exception(error_);
  queue_.push_back(std::move(job));
  lock.unlock();
  changed_.notify_all();
}

void WriterPool::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return (queue_.empty() && running_ == 0) || error_; });
  if (error_) {
    // Let the jobs already running finish before the caller tears down what
    // they use.
    changed_.wait(lock, [&] { return running_ == 0; });
    std::rethrow_exception(error_);
  }
}

void WriterPool::check() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (error_) std::rethrow_exception(error_);
}

double WriterPool::busy_ms() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::accumulate(busy_ms_.begin(), busy_ms_.end(), 0.0);
}

double WriterPool::cpu_ms() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::accumulate(cpu_ms_.begin(), cpu_ms_.end(), 0.0);
}

}  // namespace cnnviz
