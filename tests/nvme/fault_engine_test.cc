#include "nvme/fault_engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "memory/aligned_buffer.h"
#include "tests/test_util.h"

namespace dsinf::nvme {
namespace {

using memory::AlignedBuffer;

constexpr size_t kFileBytes = 64 * 1024;

using dsinf::testing::TempDir;

// Waits for one request's callback and remembers its thread.
struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  IoResult result;
  std::thread::id thread;

  IoCallback callback() {
    return [this](const IoResult& r) {
      std::lock_guard<std::mutex> lock(mu);
      result = r;
      thread = std::this_thread::get_id();
      done = true;
      cv.notify_all();
    };
  }
  IoResult wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
    return result;
  }
};

AlignedBuffer buffer_with(uint8_t seed, size_t bytes = kFileBytes) {
  AlignedBuffer b = AlignedBuffer::allocate(bytes).value();
  for (size_t i = 0; i < bytes; ++i) b.data()[i] = std::byte(static_cast<uint8_t>(i * 131 + seed));
  return b;
}

size_t differing_bits(const std::byte* a, const std::byte* b, size_t bytes) {
  size_t bits = 0;
  for (size_t i = 0; i < bytes; ++i) {
    bits += std::popcount(static_cast<unsigned>(std::to_integer<uint8_t>(a[i] ^ b[i])));
  }
  return bits;
}

class FaultEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = dir_.path() + "/data.bin";
    original_ = buffer_with(7);
    const int fd = ::open(file_.c_str(), O_RDWR | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, original_.data(), kFileBytes, 0), static_cast<ssize_t>(kFileBytes));
    ::close(fd);
  }

  std::unique_ptr<FaultEngine> make(FaultPlan plan) {
    EngineOptions options;
    options.block_size = 16 * 1024;
    options.queue_depth = 2;
    options.intra_op_parallelism = 2;
    auto engine = make_fault_engine(make_thread_engine(options).value(), std::move(plan));
    file_id_ = engine->open_file(file_, false).value();
    return engine;
  }

  IoResult run(IoEngine& engine, IoOp op, std::byte* buffer, size_t bytes = kFileBytes,
               uint64_t offset = 0) {
    Waiter waiter;
    const absl::Status s =
        engine.submit(IoRequest{op, file_id_, offset, buffer, bytes}, waiter.callback());
    if (!s.ok()) return IoResult{s, 0};
    IoResult r = waiter.wait();
    EXPECT_NE(waiter.thread, std::this_thread::get_id()) << "callback ran inside submit()";
    return r;
  }

  // The file's bytes, read without the engine.
  std::vector<std::byte> file_contents() {
    std::vector<std::byte> bytes(kFileBytes);
    const int fd = ::open(file_.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, bytes.data(), kFileBytes, 0), static_cast<ssize_t>(kFileBytes));
    ::close(fd);
    return bytes;
  }

  bool file_is_original() {
    return std::memcmp(file_contents().data(), original_.data(), kFileBytes) == 0;
  }

  static FaultPlan scheduled(std::vector<Fault> schedule) {
    FaultPlan plan;
    plan.schedule = std::move(schedule);
    return plan;
  }

  TempDir dir_;
  std::string file_;
  FileId file_id_ = -1;
  AlignedBuffer original_;
};

TEST_F(FaultEngineTest, NameWrapsInner) {
  auto engine = make(FaultPlan{});
  EXPECT_EQ(engine->name(), "fault(threads)");
}

TEST_F(FaultEngineTest, ReadEioIsDataLoss) {
  auto engine = make(scheduled({Fault::kEio}));
  AlignedBuffer in = AlignedBuffer::allocate(kFileBytes).value();
  const IoResult r = run(*engine, IoOp::kRead, in.data());
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDataLoss) << r.status;
  EXPECT_EQ(engine->counts().injected[static_cast<int>(Fault::kEio)], 1u);
}

TEST_F(FaultEngineTest, WriteEioIsUnavailableAndNothingLands) {
  auto engine = make(scheduled({Fault::kEio}));
  AlignedBuffer out = buffer_with(99);
  const IoResult r = run(*engine, IoOp::kWrite, out.data());
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  engine->drain();
  EXPECT_TRUE(file_is_original());
}

TEST_F(FaultEngineTest, WriteEnospcIsResourceExhaustedAndReadsAreUnaffected) {
  auto engine = make(scheduled({Fault::kEnospc, Fault::kEnospc}));
  AlignedBuffer out = buffer_with(99);
  const IoResult w = run(*engine, IoOp::kWrite, out.data());
  EXPECT_EQ(w.status.code(), absl::StatusCode::kResourceExhausted) << w.status;
  EXPECT_TRUE(file_is_original());
  AlignedBuffer in = AlignedBuffer::allocate(kFileBytes).value();
  const IoResult r = run(*engine, IoOp::kRead, in.data());
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(std::memcmp(in.data(), original_.data(), kFileBytes), 0);
  EXPECT_EQ(engine->counts().injected[static_cast<int>(Fault::kEnospc)], 1u);
}

TEST_F(FaultEngineTest, ShortTransfersAreSplitAndJoined) {
  auto engine = make(scheduled({Fault::kShort, Fault::kShort}));
  AlignedBuffer out = buffer_with(42);
  const IoResult w = run(*engine, IoOp::kWrite, out.data());
  ASSERT_TRUE(w.status.ok()) << w.status;
  EXPECT_EQ(w.bytes, kFileBytes);
  AlignedBuffer in = AlignedBuffer::allocate(kFileBytes).value();
  const IoResult r = run(*engine, IoOp::kRead, in.data());
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.bytes, kFileBytes);
  EXPECT_EQ(std::memcmp(in.data(), out.data(), kFileBytes), 0);
  engine->drain();
  EXPECT_EQ(engine->counts().injected[static_cast<int>(Fault::kShort)], 2u);
  EXPECT_EQ(engine->stats().requests, 4u);  // each request reached the inner engine as two
}

TEST_F(FaultEngineTest, DelayedRequestsCompleteWithCorrectData) {
  FaultPlan plan = scheduled({Fault::kDelay, Fault::kDelay});
  plan.delay_us = 2000;
  auto engine = make(plan);
  AlignedBuffer out = buffer_with(5);
  const IoResult w = run(*engine, IoOp::kWrite, out.data());
  ASSERT_TRUE(w.status.ok()) << w.status;
  AlignedBuffer in = AlignedBuffer::allocate(kFileBytes).value();
  const IoResult r = run(*engine, IoOp::kRead, in.data());
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.bytes, kFileBytes);
  EXPECT_EQ(std::memcmp(in.data(), out.data(), kFileBytes), 0);
  EXPECT_EQ(engine->counts().injected[static_cast<int>(Fault::kDelay)], 2u);
}

TEST_F(FaultEngineTest, BitFlipOnReadFlipsExactlyOneBit) {
  auto engine = make(scheduled({Fault::kBitFlip, Fault::kBitFlip}));
  // On a write a bit flip does not apply: the data lands intact.
  const IoResult w = run(*engine, IoOp::kWrite, original_.data());
  ASSERT_TRUE(w.status.ok()) << w.status;
  EXPECT_TRUE(file_is_original());
  AlignedBuffer in = AlignedBuffer::allocate(kFileBytes).value();
  const IoResult r = run(*engine, IoOp::kRead, in.data());
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(differing_bits(in.data(), original_.data(), kFileBytes), 1u);
  EXPECT_EQ(engine->counts().injected[static_cast<int>(Fault::kBitFlip)], 1u);
}

// Outcome of each of `n` page reads: 0 clean, 1 failed, 2 one bit flipped.
std::vector<int> outcomes(IoEngine& engine, const AlignedBuffer& original, FileId file, int n) {
  AlignedBuffer in = AlignedBuffer::allocate(n * kDirectIoAlignment).value();
  std::vector<IoResult> results(n);
  std::atomic<int> completed{0};
  for (int i = 0; i < n; ++i) {
    const uint64_t offset = (i % (kFileBytes / kDirectIoAlignment)) * kDirectIoAlignment;
    const absl::Status s =
        engine.submit(IoRequest{IoOp::kRead, file, offset, in.data() + i * kDirectIoAlignment,
                                kDirectIoAlignment},
                      [&results, &completed, i](const IoResult& r) {
                        results[i] = r;
                        completed.fetch_add(1);
                      });
    EXPECT_TRUE(s.ok()) << s;
  }
  engine.drain();
  EXPECT_EQ(completed.load(), n);
  std::vector<int> out(n);
  for (int i = 0; i < n; ++i) {
    const uint64_t offset = (i % (kFileBytes / kDirectIoAlignment)) * kDirectIoAlignment;
    if (!results[i].status.ok()) {
      EXPECT_EQ(results[i].status.code(), absl::StatusCode::kDataLoss);
      out[i] = 1;
      continue;
    }
    const size_t bits = differing_bits(in.data() + i * kDirectIoAlignment, original.data() + offset,
                                       kDirectIoAlignment);
    EXPECT_LE(bits, 1u);
    out[i] = bits == 0 ? 0 : 2;
  }
  return out;
}

TEST_F(FaultEngineTest, SeededFaultsAreDeterministic) {
  FaultPlan plan;
  plan.seed = 1234;
  plan.probability[static_cast<int>(Fault::kEio)] = 0.25;
  plan.probability[static_cast<int>(Fault::kBitFlip)] = 0.25;
  plan.probability[static_cast<int>(Fault::kDelay)] = 0.2;
  plan.delay_us = 100;
  constexpr int kRequests = 96;
  std::vector<int> first, second, other_seed;
  FaultCounts first_counts;
  {
    auto engine = make(plan);
    first = outcomes(*engine, original_, file_id_, kRequests);
    first_counts = engine->counts();
  }
  {
    auto engine = make(plan);
    second = outcomes(*engine, original_, file_id_, kRequests);
    for (int f = 0; f < 6; ++f) EXPECT_EQ(engine->counts().injected[f], first_counts.injected[f]);
  }
  plan.seed = 99;
  {
    auto engine = make(plan);
    other_seed = outcomes(*engine, original_, file_id_, kRequests);
  }
  EXPECT_EQ(first, second);
  EXPECT_NE(first, other_seed);
  EXPECT_GT(std::count(first.begin(), first.end(), 0), 0);
  EXPECT_GT(std::count(first.begin(), first.end(), 1), 0);
  EXPECT_GT(std::count(first.begin(), first.end(), 2), 0);
  EXPECT_EQ(first_counts.injected[static_cast<int>(Fault::kEio)],
            static_cast<uint64_t>(std::count(first.begin(), first.end(), 1)));
  EXPECT_EQ(first_counts.injected[static_cast<int>(Fault::kBitFlip)],
            static_cast<uint64_t>(std::count(first.begin(), first.end(), 2)));
  EXPECT_GT(first_counts.injected[static_cast<int>(Fault::kDelay)], 0u);
}

TEST_F(FaultEngineTest, ScheduleOverridesProbability) {
  FaultPlan plan = scheduled({Fault::kNone, Fault::kBitFlip});
  plan.probability[static_cast<int>(Fault::kEio)] = 1.0;
  auto engine = make(plan);
  EXPECT_EQ(outcomes(*engine, original_, file_id_, 4), (std::vector<int>{0, 2, 1, 1}));
  const FaultCounts c = engine->counts();
  EXPECT_EQ(c.injected[static_cast<int>(Fault::kNone)], 0u);
  EXPECT_EQ(c.injected[static_cast<int>(Fault::kBitFlip)], 1u);
  EXPECT_EQ(c.injected[static_cast<int>(Fault::kEio)], 2u);
  EXPECT_EQ(c.injected[static_cast<int>(Fault::kShort)], 0u);
}

TEST_F(FaultEngineTest, RejectionsAreForwardedUnchangedAndDrawNoFault) {
  auto engine = make(scheduled({Fault::kEio, Fault::kEio}));
  AlignedBuffer in = AlignedBuffer::allocate(2 * kFileBytes).value();
  bool called = false;
  const absl::Status misaligned =
      engine->submit(IoRequest{IoOp::kRead, file_id_, 0, in.data() + 512, kFileBytes},
                     [&](const IoResult&) { called = true; });
  EXPECT_EQ(misaligned.code(), absl::StatusCode::kInvalidArgument);
  const absl::Status bad_file =
      engine->submit(IoRequest{IoOp::kWrite, file_id_ + 7, 0, in.data(), kFileBytes},
                     [&](const IoResult&) { called = true; });
  EXPECT_EQ(bad_file.code(), absl::StatusCode::kInvalidArgument);
  engine->drain();
  EXPECT_FALSE(called);
  EXPECT_EQ(engine->counts().injected[static_cast<int>(Fault::kEio)], 0u);
  EXPECT_TRUE(file_is_original());
  // The rejected requests took no place in the schedule: the next one gets schedule[0].
  const IoResult r = run(*engine, IoOp::kRead, in.data());
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDataLoss) << r.status;
  EXPECT_EQ(engine->counts().injected[static_cast<int>(Fault::kEio)], 1u);
}

FaultPlan always_delayed() {
  FaultPlan plan;
  plan.probability[static_cast<int>(Fault::kDelay)] = 1.0;
  plan.delay_us = 50000;
  return plan;
}

TEST_F(FaultEngineTest, DrainWaitsForDelayedCompletions) {
  auto engine = make(always_delayed());
  AlignedBuffer in = AlignedBuffer::allocate(8 * kDirectIoAlignment).value();
  std::atomic<int> completed{0};
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(engine
                    ->submit(IoRequest{IoOp::kRead, file_id_, 0, in.data() + i * kDirectIoAlignment,
                                       kDirectIoAlignment},
                             [&](const IoResult& r) {
                               EXPECT_TRUE(r.status.ok());
                               completed.fetch_add(1);
                             })
                    .ok());
  }
  engine->drain();
  EXPECT_EQ(completed.load(), 8);
}

TEST_F(FaultEngineTest, DestroyingCallsEveryPendingCallback) {
  auto engine = make(always_delayed());
  AlignedBuffer in = AlignedBuffer::allocate(8 * kDirectIoAlignment).value();
  std::atomic<int> completed{0};
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(engine
                    ->submit(IoRequest{IoOp::kRead, file_id_, 0, in.data() + i * kDirectIoAlignment,
                                       kDirectIoAlignment},
                             [&](const IoResult&) { completed.fetch_add(1); })
                    .ok());
  }
  engine.reset();
  EXPECT_EQ(completed.load(), 8);
}

TEST_F(FaultEngineTest, CloseFileWaitsForDelayedCompletions) {
  auto engine = make(always_delayed());
  AlignedBuffer in = AlignedBuffer::allocate(kDirectIoAlignment).value();
  std::atomic<int> completed{0};
  ASSERT_TRUE(engine
                  ->submit(IoRequest{IoOp::kRead, file_id_, 0, in.data(), kDirectIoAlignment},
                           [&](const IoResult&) { completed.fetch_add(1); })
                  .ok());
  EXPECT_TRUE(engine->close_file(file_id_).ok());
  EXPECT_EQ(completed.load(), 1);
}

}  // namespace
}  // namespace dsinf::nvme
