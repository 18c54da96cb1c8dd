#include "cnnviz/run/progress.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <ostream>

namespace cnnviz {

namespace {

std::atomic<bool> g_interrupted{false};

extern "C" void on_signal(int sig) {
  if (g_interrupted.exchange(true)) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool interrupted() { return g_interrupted.load(); }

Progress::Progress(std::ostream& err, size_t total, bool enabled)
    : err_(err), total_(total), enabled_(enabled), start_(std::chrono::steady_clock::now()) {
  last_draw_ = start_;
  draw(true);  // 0/N at once, so that a terminal shows the run has started
}

Progress::~Progress() {
  std::lock_guard<std::mutex> lock(mutex_);
  clear();
}

void Progress::done(size_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  done_ += n;
  draw(false);
}

void Progress::skipped(size_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  skipped_ += n;
  draw(false);
}

void Progress::failed(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  failed_.push_back(reason);
  print(reason);
}

void Progress::note(const std::string& line) {
  std::lock_guard<std::mutex> lock(mutex_);
  print(line);
}

size_t Progress::failures() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failed_.size();
}

void Progress::print(const std::string& line) {
  clear();
  err_ << "cnnviz: " << line << "\n";
  draw(true);
}

void Progress::clear() {
  if (enabled_ && drawn_) {
    err_ << "\r\033[K" << std::flush;
    drawn_ = false;
  }
}

void Progress::draw(bool force) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const size_t finished = done_ + skipped_ + failed_.size();
  const double elapsed = seconds_since(start_);
  const double rate = elapsed > 0 ? (done_ + failed_.size()) / elapsed : 0.0;
  const double eta = rate > 0 ? (total_ - finished) / rate : 0.0;
  constexpr int kWidth = 30;
  const int filled = total_ ? static_cast<int>(kWidth * finished / total_) : kWidth;
  char line[160];
  std::snprintf(line, sizeof(line), "\r[%-*s] %zu/%zu  %.1f img/s  ETA %d:%02d", kWidth,
                std::string(filled, '#').c_str(), finished, total_, rate,
                static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
  err_ << line << "\033[K" << std::flush;
  drawn_ = true;
}

void Progress::summary(bool was_interrupted) {
  std::lock_guard<std::mutex> lock(mutex_);
  clear();
  const double elapsed = seconds_since(start_);
  char line[200];
  std::snprintf(line, sizeof(line), "cnnviz: %s%zu done, %zu skipped, %zu failed of %zu in %.1f s",
                was_interrupted ? "interrupted: " : "", done_, skipped_, failed_.size(), total_,
                elapsed);
  err_ << line;
  // A rate only for work done; each failure was reported once, as it came.
  if (done_ > 0 && elapsed > 0) {
    std::snprintf(line, sizeof(line), " (%.1f images/s)", static_cast<double>(done_) / elapsed);
    err_ << line;
  }
  err_ << "\n";
}

}  // namespace cnnviz
