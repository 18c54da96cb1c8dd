#include "cnnviz/runtime.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace cnnviz {
namespace {

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// Page faults taken by filling a tensor of `bytes` after one of the same
// size was filled and freed: what a batch pays for its activations when the
// previous batch's are gone.
long faults_on_reallocation(int64_t bytes) {
  {
    at::Tensor first = at::empty({bytes}, at::kByte);
    std::memset(first.data_ptr(), 1, static_cast<size_t>(bytes));
  }
  const long before = minor_faults();
  at::Tensor second = at::empty({bytes}, at::kByte);
  std::memset(second.data_ptr(), 2, static_cast<size_t>(bytes));
  return minor_faults() - before;
}

TEST(RuntimeTest, FreedTensorMemoryIsReusedWithoutPageFaults) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "reuse_freed_memory() tunes glibc's malloc only";
#endif
  const char* system = std::getenv("CNNVIZ_SYSTEM_MALLOC");
  if (system && *system && std::string(system) != "0") {
    GTEST_SKIP() << "CNNVIZ_SYSTEM_MALLOC is set";
  }
  constexpr int64_t kBytes = int64_t{64} << 20;
  const long pages = static_cast<long>(kBytes / sysconf(_SC_PAGESIZE));

  // The control, in a child process with malloc as it starts: glibc unmaps a
  // freed 64 MiB block, so its successor faults in every page again.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(faults_on_reallocation(kBytes) > pages / 2 ? 0 : 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the default malloc already reused the block";

  ASSERT_TRUE(reuse_freed_memory());
  EXPECT_LT(faults_on_reallocation(kBytes), pages / 10);
}

}  // namespace
}  // namespace cnnviz
