// The writer threads: every job runs once, the queue stays bounded, and the
// first failure stops the rest and reaches the caller.
#include "run/writer_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "cnnviz/core/error.h"
#include "test_util.h"

namespace cnnviz {
namespace {

TEST(WriterPoolTest, RunsEveryJobOnce) {
  std::atomic<int> sum{0};
  {
    WriterPool pool(3, 4);
    for (int i = 1; i <= 100; ++i) pool.submit([&sum, i] { sum += i; });
    pool.wait();
    EXPECT_EQ(sum.load(), 5050);
    EXPECT_EQ(pool.threads(), 3u);
    EXPECT_GE(pool.busy_ms(), 0.0);
  }
  // The destructor runs what is still queued.
  {
    WriterPool pool(1, 10);
    for (int i = 0; i < 10; ++i) pool.submit([&sum] { ++sum; });
  }
  EXPECT_EQ(sum.load(), 5060);
}

TEST(WriterPoolTest, SubmitBlocksWhileTheQueueIsFull) {
  WriterPool pool(1, 2);
  std::atomic<bool> release{false};
  std::atomic<int> started{0};
  auto blocker = [&] {
    ++started;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  pool.submit(blocker);  // runs
  while (started == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  pool.submit(blocker);  // queued
  pool.submit(blocker);  // queued: the queue is full
  std::atomic<bool> fourth{false};
  std::thread producer([&] {
    pool.submit([] {});
    fourth = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(fourth.load()) << "submit did not wait for room";
  release = true;
  producer.join();
  pool.wait();
  EXPECT_TRUE(fourth.load());
}

TEST(WriterPoolTest, FirstFailureDropsTheRestAndIsRethrown) {
  WriterPool pool(1, 100);
  std::atomic<int> ran{0};
  std::atomic<bool> go{false};
  pool.submit([&] {
    while (!go) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    throw Error(ErrorCode::kOutput, "cannot write 'x.png': No space left on device");
  });
  for (int i = 0; i < 20; ++i) pool.submit([&ran] { ++ran; });
  go = true;
  test::expect_error([&] { pool.wait(); }, ErrorCode::kOutput, "No space left");
  EXPECT_EQ(ran.load(), 0);
  test::expect_error([&] { pool.check(); }, ErrorCode::kOutput, "x.png");
  test::expect_error([&] { pool.submit([] {}); }, ErrorCode::kOutput, "x.png");
}

}  // namespace
}  // namespace cnnviz
