// Wall-clock intervals, for the timings runs report.
#ifndef CNNVIZ_CORE_STOPWATCH_H_
#define CNNVIZ_CORE_STOPWATCH_H_

#include <chrono>

namespace cnnviz {

using Clock = std::chrono::steady_clock;

// Milliseconds from `start` to now.
inline double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_STOPWATCH_H_
