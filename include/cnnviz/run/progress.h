// Progress on a terminal, and the end-of-run summary.
#ifndef CNNVIZ_RUN_PROGRESS_H_
#define CNNVIZ_RUN_PROGRESS_H_

#include <chrono>
#include <iosfwd>
#include <mutex>
#include <string>
#include <vector>

namespace cnnviz {

// A one-line progress bar with images/s and ETA, redrawn at most 10 times a
// second, only when `enabled` (the CLI enables it when stderr is a terminal
// and --quiet is not given). Messages printed through note() go on their own
// line above the bar. Every member may be called from any thread.
class Progress {
 public:
  Progress(std::ostream& err, size_t total, bool enabled);
  ~Progress();

  void done(size_t n = 1);
  void skipped(size_t n = 1);
  void failed(const std::string& reason);  // also noted on its own line
  void note(const std::string& line);      // a message line ("cnnviz: ..." added)

  // "cnnviz: 98 done, 2 skipped, 1 failed of 101 in 12.3 s (8.0 images/s)",
  // the rate only when images were done (the failures were printed as they
  // came). Printed whether or not the bar is enabled.
  void summary(bool interrupted);

  size_t failures() const;

 private:
  void print(const std::string& line);  // these three: with mutex_ held
  void draw(bool force);
  void clear();

  mutable std::mutex mutex_;
  std::ostream& err_;
  size_t total_;
  bool enabled_;
  size_t done_ = 0, skipped_ = 0;
  std::vector<std::string> failed_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false;
};

// True on a terminal.
bool stderr_is_terminal();

// SIGINT/SIGTERM handling: after install_interrupt_handler(), the first
// signal sets interrupted() and the run stops at the next batch boundary
// with a consistent manifest; a second one ends the process at once.
void install_interrupt_handler();
bool interrupted();

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_PROGRESS_H_
