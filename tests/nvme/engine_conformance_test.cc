// One suite every IoEngine must pass: the pread/pwrite thread pool, io_uring,
// and the fault-injecting wrapper around each (with no faults, and with seeded
// delays and short transfers, which must not change any result).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "memory/aligned_buffer.h"
#include "memory/util/check.h"
#include "nvme/engine.h"
#include "nvme/fault_engine.h"
#include "tests/test_util.h"

namespace dsinf::nvme {
namespace {

using memory::AlignedBuffer;

constexpr size_t kPage = kDirectIoAlignment;

using dsinf::testing::TempDir;

using EngineFactory =
    std::function<absl::StatusOr<std::unique_ptr<IoEngine>>(const EngineOptions&)>;

struct EngineParam {
  std::string name;
  EngineFactory make;
};

absl::StatusOr<std::unique_ptr<IoEngine>> with_faults(
    absl::StatusOr<std::unique_ptr<IoEngine>> inner, const FaultPlan& plan) {
  if (!inner.ok()) return inner.status();
  return std::unique_ptr<IoEngine>(make_fault_engine(*std::move(inner), plan));
}

FaultPlan delays_and_short_transfers() {
  FaultPlan plan;
  plan.seed = 20240601;
  plan.probability[static_cast<int>(Fault::kShort)] = 0.2;
  plan.probability[static_cast<int>(Fault::kDelay)] = 0.2;
  plan.delay_us = 100;
  return plan;
}

std::vector<EngineParam> engine_params() {
  return {
      {"threads", make_thread_engine},
      {"uring", make_uring_engine},
      {"fault_none_threads",
       [](const EngineOptions& o) { return with_faults(make_thread_engine(o), FaultPlan{}); }},
      {"fault_none_uring",
       [](const EngineOptions& o) { return with_faults(make_uring_engine(o), FaultPlan{}); }},
      {"fault_delay_short_threads",
       [](const EngineOptions& o) {
         return with_faults(make_thread_engine(o), delays_and_short_transfers());
       }},
      {"fault_delay_short_uring",
       [](const EngineOptions& o) {
         return with_faults(make_uring_engine(o), delays_and_short_transfers());
       }},
  };
}

AlignedBuffer allocate(size_t bytes) {
  absl::StatusOr<AlignedBuffer> buffer = AlignedBuffer::allocate(bytes);
  DSINF_CHECK(buffer.ok());
  return *std::move(buffer);
}

void fill_random(std::byte* data, size_t bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    const uint64_t v = rng();
    std::memcpy(data + i, &v, 8);
  }
}

// Submits one request and waits for its callback.
IoResult run(IoEngine& engine, IoOp op, FileId file, uint64_t offset, std::byte* buffer,
             size_t bytes) {
  auto promise = std::make_shared<std::promise<IoResult>>();
  std::future<IoResult> future = promise->get_future();
  const absl::Status s = engine.submit(IoRequest{op, file, offset, buffer, bytes},
                                       [promise](const IoResult& r) { promise->set_value(r); });
  if (!s.ok()) return IoResult{s, 0};
  return future.get();
}

// Callbacks of many concurrent requests: counts them and keeps every surprise.
struct Completions {
  std::atomic<int> calls{0};
  std::mutex mu;
  std::vector<std::string> errors;

  IoCallback expect_ok(size_t bytes, std::chrono::microseconds linger = {}) {
    return [this, bytes, linger](const IoResult& r) {
      if (linger.count() > 0) std::this_thread::sleep_for(linger);
      if (!r.status.ok() || r.bytes != bytes) {
        std::lock_guard<std::mutex> lock(mu);
        errors.push_back(r.status.ToString() + " bytes " + std::to_string(r.bytes));
      }
      calls.fetch_add(1);
    };
  }
};

class EngineConformance : public ::testing::TestWithParam<EngineParam> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<IoEngine>> probe = GetParam().make(EngineOptions{});
    if (!probe.ok() && probe.status().code() == absl::StatusCode::kUnavailable) {
      GTEST_SKIP() << GetParam().name << ": " << probe.status().message();
    }
  }

  std::unique_ptr<IoEngine> make(const EngineOptions& options) {
    absl::StatusOr<std::unique_ptr<IoEngine>> engine = GetParam().make(options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? *std::move(engine) : nullptr;
  }

  FileId open(IoEngine& engine, const std::string& name) {
    absl::StatusOr<FileId> file = engine.open_file(dir_ / name, /*create=*/true);
    EXPECT_TRUE(file.ok()) << file.status();
    return file.ok() ? *file : -1;
  }

  bool faulty() const { return GetParam().name.rfind("fault", 0) == 0; }

  TempDir dir_;
};

TEST_P(EngineConformance, RoundTripsAtManySizesOffsetsAndBlockSizes) {
  struct Variant {
    size_t block_size;
    int queue_depth, parallelism;
    bool single_submit, overlap_events;
  };
  const Variant variants[] = {{4 * kPage, 8, 1, false, true},
                              {16 * kPage, 4, 1, true, true},
                              {16 * kPage, 4, 1, false, false},
                              {256 * kPage, 8, 2, false, true}};
  const size_t pages[] = {1, 3, 17, 255, 257, 769};  // odd multiples of 4 KiB up to 3 MiB
  for (const Variant& v : variants) {
    SCOPED_TRACE(::testing::Message() << "block " << v.block_size << " single_submit "
                                      << v.single_submit << " overlap " << v.overlap_events);
    EngineOptions options;
    options.block_size = v.block_size;
    options.queue_depth = v.queue_depth;
    options.intra_op_parallelism = v.parallelism;
    options.single_submit = v.single_submit;
    options.overlap_events = v.overlap_events;
    std::unique_ptr<IoEngine> engine = make(options);
    ASSERT_NE(engine, nullptr);
    const FileId file = open(*engine, "round_trip_" + std::to_string(v.block_size));
    uint64_t offset = 0, total = 0, pieces = 0;
    for (size_t i = 0; i < std::size(pages); ++i) {
      const size_t bytes = pages[i] * kPage;
      offset += (2 * i + 1) * kPage;  // odd gaps: every request starts at a new alignment
      AlignedBuffer out = allocate(bytes), in = allocate(bytes);
      fill_random(out.data(), bytes, 1000 + i);
      IoResult w = run(*engine, IoOp::kWrite, file, offset, out.data(), bytes);
      ASSERT_TRUE(w.status.ok()) << w.status;
      EXPECT_EQ(w.bytes, bytes);
      IoResult r = run(*engine, IoOp::kRead, file, offset, in.data(), bytes);
      ASSERT_TRUE(r.status.ok()) << r.status;
      EXPECT_EQ(r.bytes, bytes);
      EXPECT_EQ(std::memcmp(out.data(), in.data(), bytes), 0) << "size " << bytes;
      offset += bytes;
      total += bytes;
      pieces += 2 * ((bytes + v.block_size - 1) / v.block_size);
    }
    if (!faulty()) {  // a fault engine splits requests on its own
      const EngineStats stats = engine->stats();
      EXPECT_EQ(stats.requests, 2 * std::size(pages));
      EXPECT_EQ(stats.pieces, pieces);
      EXPECT_EQ(stats.bytes_written, total);
      EXPECT_EQ(stats.bytes_read, total);
    }
  }
}

TEST_P(EngineConformance, SeveralFilesConcurrently) {
  EngineOptions options;
  options.block_size = 16 * kPage;
  std::unique_ptr<IoEngine> engine = make(options);
  ASSERT_NE(engine, nullptr);
  constexpr int kFiles = 3;
  constexpr size_t kBytes = 37 * kPage;
  std::vector<AlignedBuffer> out, in;
  std::vector<FileId> files;
  Completions writes;
  for (int f = 0; f < kFiles; ++f) {
    files.push_back(open(*engine, "file" + std::to_string(f)));
    out.push_back(allocate(kBytes));
    in.push_back(allocate(kBytes));
    fill_random(out[f].data(), kBytes, 77 + f);
  }
  for (int f = 0; f < kFiles; ++f) {
    ASSERT_TRUE(engine
                    ->submit(IoRequest{IoOp::kWrite, files[f], 3 * kPage, out[f].data(), kBytes},
                             writes.expect_ok(kBytes))
                    .ok());
  }
  engine->drain();
  EXPECT_EQ(writes.calls.load(), kFiles);
  Completions reads;
  for (int f = 0; f < kFiles; ++f) {
    ASSERT_TRUE(engine
                    ->submit(IoRequest{IoOp::kRead, files[f], 3 * kPage, in[f].data(), kBytes},
                             reads.expect_ok(kBytes))
                    .ok());
  }
  engine->drain();
  EXPECT_EQ(reads.calls.load(), kFiles);
  EXPECT_TRUE(writes.errors.empty() && reads.errors.empty());
  for (int f = 0; f < kFiles; ++f) {
    EXPECT_EQ(std::memcmp(out[f].data(), in[f].data(), kBytes), 0) << "file " << f;
  }
}

TEST_P(EngineConformance, MalformedRequestsAreRejectedAtSubmit) {
  std::unique_ptr<IoEngine> engine = make(EngineOptions{});
  ASSERT_NE(engine, nullptr);
  const FileId file = open(*engine, "malformed");
  AlignedBuffer buffer = allocate(4 * kPage);
  std::byte* b = buffer.data();
  const IoRequest bad[] = {
      {IoOp::kWrite, file, 0, b + 512, kPage},  // misaligned buffer
      {IoOp::kWrite, file, 512, b, kPage},      // misaligned offset
      {IoOp::kRead, file, 0, b, kPage + 512},   // misaligned size
      {IoOp::kRead, file, 0, b, 0},             // empty
      {IoOp::kRead, file, 0, nullptr, kPage},   // no buffer
      {IoOp::kRead, -1, 0, b, kPage},           // unknown file ids
      {IoOp::kWrite, file + 1000, 0, b, kPage},
  };
  std::atomic<int> calls{0};
  for (const IoRequest& request : bad) {
    const absl::Status s = engine->submit(request, [&](const IoResult&) { calls.fetch_add(1); });
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
  engine->drain();
  EXPECT_EQ(calls.load(), 0);
}

TEST_P(EngineConformance, ReadPastTheEndIsOutOfRange) {
  for (size_t block : {kPage, 256 * kPage}) {
    EngineOptions options;
    options.block_size = block;
    std::unique_ptr<IoEngine> engine = make(options);
    ASSERT_NE(engine, nullptr);
    const FileId file = open(*engine, "short_" + std::to_string(block));
    AlignedBuffer buffer = allocate(8 * kPage);
    ASSERT_TRUE(run(*engine, IoOp::kWrite, file, 0, buffer.data(), 2 * kPage).status.ok());
    // Wholly past the end, and straddling it.
    EXPECT_EQ(run(*engine, IoOp::kRead, file, 16 * kPage, buffer.data(), kPage).status.code(),
              absl::StatusCode::kOutOfRange);
    EXPECT_EQ(run(*engine, IoOp::kRead, file, kPage, buffer.data(), 4 * kPage).status.code(),
              absl::StatusCode::kOutOfRange);
    // One piece came back short (one page of four) and its remainder was reissued.
    if (!faulty() && block > 4 * kPage) {
      EXPECT_GE(engine->stats().resubmits, 1u);
    }
  }
}

TEST_P(EngineConformance, HundredsOfConcurrentRequestsAllComplete) {
  for (int parallelism : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << "intra_op_parallelism " << parallelism);
    EngineOptions options;
    options.block_size = 8 * kPage;
    options.queue_depth = 4;
    options.intra_op_parallelism = parallelism;
    std::unique_ptr<IoEngine> engine = make(options);
    ASSERT_NE(engine, nullptr);
    const FileId file = open(*engine, "concurrent_" + std::to_string(parallelism));
    constexpr int kRequests = 300;
    constexpr size_t kMaxBytes = 16 * kPage;
    AlignedBuffer out = allocate(kRequests * kMaxBytes), in = allocate(kRequests * kMaxBytes);
    fill_random(out.data(), out.size(), parallelism);
    auto bytes_of = [](int i) { return static_cast<size_t>(i % 16 + 1) * kPage; };
    Completions writes, reads;
    for (int i = 0; i < kRequests; ++i) {
      const size_t at = i * kMaxBytes;
      ASSERT_TRUE(engine
                      ->submit(IoRequest{IoOp::kWrite, file, at, out.data() + at, bytes_of(i)},
                               writes.expect_ok(bytes_of(i)))
                      .ok());
    }
    engine->drain();
    // Reads from three submitting threads at once.
    std::atomic<int> rejected{0};
    std::vector<std::thread> submitters;
    for (int t = 0; t < 3; ++t) {
      submitters.emplace_back([&, t] {
        for (int i = t; i < kRequests; i += 3) {
          const size_t at = i * kMaxBytes;
          const IoRequest request{IoOp::kRead, file, at, in.data() + at, bytes_of(i)};
          if (!engine->submit(request, reads.expect_ok(bytes_of(i))).ok()) rejected.fetch_add(1);
        }
      });
    }
    for (std::thread& t : submitters) t.join();
    engine->drain();
    EXPECT_EQ(rejected.load(), 0);
    EXPECT_EQ(writes.calls.load(), kRequests);
    EXPECT_EQ(reads.calls.load(), kRequests);
    EXPECT_TRUE(writes.errors.empty()) << writes.errors.front();
    EXPECT_TRUE(reads.errors.empty()) << reads.errors.front();
    for (int i = 0; i < kRequests; ++i) {
      const size_t at = i * kMaxBytes;
      ASSERT_EQ(std::memcmp(out.data() + at, in.data() + at, bytes_of(i)), 0) << "request " << i;
    }
  }
}

TEST_P(EngineConformance, DrainReturnsOnlyAfterEveryCallbackReturned) {
  EngineOptions options;
  options.block_size = 2 * kPage;
  options.queue_depth = 4;
  std::unique_ptr<IoEngine> engine = make(options);
  ASSERT_NE(engine, nullptr);
  const FileId file = open(*engine, "drain");
  constexpr int kRequests = 64;
  AlignedBuffer buffer = allocate(kRequests * 4 * kPage);
  Completions done;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(engine
                    ->submit(IoRequest{IoOp::kWrite, file, i * 4 * kPage,
                                       buffer.data() + i * 4 * kPage, 4 * kPage},
                             done.expect_ok(4 * kPage, std::chrono::microseconds(300)))
                    .ok());
  }
  engine->drain();
  EXPECT_EQ(done.calls.load(), kRequests);
  EXPECT_TRUE(done.errors.empty());
}

TEST_P(EngineConformance, DestroyingTheEngineCompletesEveryRequestFirst) {
  constexpr int kRequests = 64;
  AlignedBuffer buffer = allocate(kRequests * 4 * kPage);  // outlives the engine
  Completions done;
  {
    EngineOptions options;
    options.block_size = 2 * kPage;
    options.queue_depth = 2;
    std::unique_ptr<IoEngine> engine = make(options);
    ASSERT_NE(engine, nullptr);
    const FileId file = open(*engine, "destroy");
    for (int i = 0; i < kRequests; ++i) {
      ASSERT_TRUE(engine
                      ->submit(IoRequest{IoOp::kWrite, file, i * 4 * kPage,
                                         buffer.data() + i * 4 * kPage, 4 * kPage},
                               done.expect_ok(4 * kPage, std::chrono::microseconds(200)))
                      .ok());
    }
  }
  EXPECT_EQ(done.calls.load(), kRequests);
  EXPECT_TRUE(done.errors.empty());
}

TEST_P(EngineConformance, CloseFileThenReopen) {
  std::unique_ptr<IoEngine> engine = make(EngineOptions{});
  ASSERT_NE(engine, nullptr);
  const FileId file = open(*engine, "close");
  AlignedBuffer out = allocate(5 * kPage), in = allocate(5 * kPage);
  fill_random(out.data(), out.size(), 5);
  ASSERT_TRUE(run(*engine, IoOp::kWrite, file, 0, out.data(), out.size()).status.ok());
  EXPECT_TRUE(engine->close_file(file).ok());
  std::atomic<int> calls{0};
  EXPECT_EQ(engine
                ->submit(IoRequest{IoOp::kRead, file, 0, in.data(), kPage},
                         [&](const IoResult&) { calls.fetch_add(1); })
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->close_file(file).code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<FileId> again = engine->open_file(dir_ / "close", /*create=*/false);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(run(*engine, IoOp::kRead, *again, 0, in.data(), in.size()).status.ok());
  EXPECT_EQ(std::memcmp(out.data(), in.data(), out.size()), 0);
  EXPECT_EQ(calls.load(), 0);
}

TEST_P(EngineConformance, OpeningAMissingFileWithoutCreateIsNotFound) {
  std::unique_ptr<IoEngine> engine = make(EngineOptions{});
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->open_file(dir_ / "missing", /*create=*/false).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(EngineConformance, RegisteredAndUnregisteredBuffersRoundTrip) {
  // Registered regions must outlive the engine: declared before it.
  AlignedBuffer registered = allocate(64 * kPage), plain = allocate(64 * kPage);
  EngineOptions options;
  options.block_size = 8 * kPage;
  std::unique_ptr<IoEngine> engine = make(options);
  ASSERT_NE(engine, nullptr);
  ASSERT_TRUE(engine->register_buffer(registered.data(), 32 * kPage).ok());
  const FileId file = open(*engine, "registered");
  fill_random(registered.data(), registered.size(), 9);
  // Wholly inside the registered part, then straddling its end.
  ASSERT_TRUE(run(*engine, IoOp::kWrite, file, 0, registered.data(), 64 * kPage).status.ok());
  ASSERT_TRUE(run(*engine, IoOp::kRead, file, 0, plain.data(), 64 * kPage).status.ok());
  EXPECT_EQ(std::memcmp(registered.data(), plain.data(), plain.size()), 0);
  AlignedBuffer copy = allocate(64 * kPage);
  std::memcpy(copy.data(), registered.data(), copy.size());
  std::memset(registered.data(), 0, registered.size());
  ASSERT_TRUE(
      run(*engine, IoOp::kRead, file, 0, registered.data() + 4 * kPage, 60 * kPage).status.ok());
  EXPECT_EQ(std::memcmp(registered.data() + 4 * kPage, copy.data(), 60 * kPage), 0);
}

INSTANTIATE_TEST_SUITE_P(AllEngines, EngineConformance, ::testing::ValuesIn(engine_params()),
                         [](const ::testing::TestParamInfo<EngineParam>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace dsinf::nvme
