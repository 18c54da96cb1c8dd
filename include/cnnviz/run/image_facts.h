// What the runs that take each image once (segment, detect) report of
// every image beside their own results, and how they tally a run.
#ifndef CNNVIZ_RUN_IMAGE_FACTS_H_
#define CNNVIZ_RUN_IMAGE_FACTS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace cnnviz {

struct ImageFacts {
  std::string image;
  std::optional<std::string> error;  // why the image failed
  bool grey = false;                 // the source has no colour
  int width = 0, height = 0;         // of the source image
  int input_width = 0, input_height = 0;
};

// One result per image (each an ImageFacts), in input order.
template <typename Result>
struct PerImageSummary {
  std::vector<Result> results;
  size_t failed = 0;
  bool interrupted = false;
  double run_ms = 0, network_ms = 0;
};

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_IMAGE_FACTS_H_
