#include "nvme/swap_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "memory/aligned_buffer.h"
#include "nvme/fault_engine.h"
#include "tests/test_util.h"

namespace dsinf::nvme {
namespace {

namespace fs = std::filesystem;
using memory::AlignedBuffer;

using dsinf::testing::TempDir;

// Collects callbacks; wait(n) blocks until n of them ran.
class Completions {
 public:
  IoCallback slot(IoResult* out) {
    return [this, out](const IoResult& r) {
      std::lock_guard<std::mutex> lock(mu_);
      *out = r;
      ++done_;
      cv_.notify_all();
    };
  }
  void wait(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int done_ = 0;
};

IoResult write_sync(SwapStore& store, ChunkId id, const std::byte* data) {
  Completions c;
  IoResult r;
  if (absl::Status s = store.write(id, data, c.slot(&r)); !s.ok()) return IoResult{s, 0};
  c.wait(1);
  return r;
}

IoResult read_sync(SwapStore& store, ChunkId id, std::byte* data) {
  Completions c;
  IoResult r;
  if (absl::Status s = store.read(id, data, c.slot(&r)); !s.ok()) return IoResult{s, 0};
  c.wait(1);
  return r;
}

AlignedBuffer chunk_data(size_t bytes, uint32_t seed) {
  AlignedBuffer b = AlignedBuffer::allocate(memory::align_up(bytes + 1, 4096)).value();
  for (size_t i = 0; i < bytes; ++i)
    b.data()[i] = std::byte(static_cast<uint8_t>(i * 7 + seed * 13));
  return b;
}

bool contains(const absl::Status& s, const std::string& text) {
  return absl::StrContains(s.message(), text);
}

std::unique_ptr<IoEngine> thread_engine() {
  EngineOptions options;
  options.block_size = 64 * 1024;
  options.queue_depth = 4;
  return make_thread_engine(options).value();
}

std::unique_ptr<FaultEngine> fault_engine(std::vector<Fault> schedule) {
  FaultPlan plan;
  plan.schedule = std::move(schedule);
  return make_fault_engine(thread_engine(), plan);
}

class SwapStoreTest : public ::testing::Test {
 protected:
  SwapStoreOptions options(std::vector<size_t> chunk_bytes, int paths = 2) {
    SwapStoreOptions o;
    o.paths = {a_.path(), b_.path()};
    o.paths.resize(paths);
    o.chunk_bytes = std::move(chunk_bytes);
    o.checksum_block_bytes = 8192;
    return o;
  }
  static bool empty_dir(const std::string& path) { return fs::is_empty(path); }

  TempDir a_, b_;
};

// Writes all chunks at once, reads them back at once, checks layout and data.
void round_trip(IoEngine* engine, const SwapStoreOptions& opts) {
  auto store = SwapStore::create(engine, opts);
  ASSERT_TRUE(store.ok()) << store.status();
  const size_t n = opts.chunk_bytes.size();
  ASSERT_EQ((*store)->num_chunks(), n);
  const std::vector<std::string> dirs = (*store)->directories();
  ASSERT_EQ(dirs.size(), opts.paths.size());

  std::vector<uint64_t> next_offset(opts.paths.size(), 0);
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const SwapExtent& e = (*store)->extent(i);
    const size_t p = i % opts.paths.size();
    EXPECT_EQ(e.path_index, p) << "chunk " << i;
    EXPECT_EQ(e.file, dirs[p] + "/swap.bin");
    EXPECT_EQ(e.offset, next_offset[p]);
    EXPECT_EQ(e.bytes, std::max<size_t>(memory::align_up(opts.chunk_bytes[i], 4096), 4096));
    next_offset[p] += e.bytes;
    total += e.bytes;
  }
  EXPECT_EQ((*store)->bytes_on_disk(), total);
  for (size_t p = 0; p < dirs.size(); ++p)
    EXPECT_EQ(fs::file_size(dirs[p] + "/swap.bin"), next_offset[p]);

  std::vector<AlignedBuffer> out, in;
  std::vector<IoResult> results(n);
  Completions writes;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(chunk_data(opts.chunk_bytes[i], i));
    ASSERT_TRUE((*store)->write(i, out.back().data(), writes.slot(&results[i])).ok());
  }
  writes.wait(n);
  for (size_t i = 0; i < n; ++i) ASSERT_TRUE(results[i].status.ok()) << results[i].status;
  Completions reads;
  for (size_t i = 0; i < n; ++i) {
    in.push_back(AlignedBuffer::allocate((*store)->extent(i).bytes).value());
    ASSERT_TRUE((*store)->read(i, in.back().data(), reads.slot(&results[i])).ok());
  }
  reads.wait(n);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status;
    EXPECT_EQ(std::memcmp(in[i].data(), out[i].data(), opts.chunk_bytes[i]), 0) << "chunk " << i;
  }
  store->reset();
  for (const std::string& d : dirs) EXPECT_FALSE(fs::exists(d)) << d;
}

const std::vector<size_t> kOddSizes = {1, 4096,  4097,   10000, 65536 + 123, 300000, 7,
                                       0, 24577, 131072, 8191,  99999,       5000,   12288};

TEST_F(SwapStoreTest, RoundTripAcrossTwoPathsWithThreadEngine) {
  auto engine = thread_engine();
  round_trip(engine.get(), options(kOddSizes));
  EXPECT_TRUE(empty_dir(a_.path()));
  EXPECT_TRUE(empty_dir(b_.path()));
}

TEST_F(SwapStoreTest, RoundTripAcrossTwoPathsWithUringEngine) {
  EngineOptions engine_options;
  engine_options.block_size = 64 * 1024;
  auto engine = make_uring_engine(engine_options);
  if (!engine.ok()) GTEST_SKIP() << "io_uring engine unavailable: " << engine.status();
  round_trip(engine->get(), options(kOddSizes));
}

TEST_F(SwapStoreTest, ConcurrentChunksFromSeveralThreads) {
  auto engine = thread_engine();
  auto store = SwapStore::create(engine.get(), options(std::vector<size_t>(8, 20000)));
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<std::thread> threads;
  for (ChunkId t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (ChunkId id = t; id < 8; id += 4) {
          AlignedBuffer out = chunk_data(20000, id * 100 + round);
          AlignedBuffer in = AlignedBuffer::allocate(20480).value();
          EXPECT_TRUE(write_sync(**store, id, out.data()).status.ok());
          EXPECT_TRUE(read_sync(**store, id, in.data()).status.ok());
          EXPECT_EQ(std::memcmp(in.data(), out.data(), 20000), 0);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
}

TEST_F(SwapStoreTest, FlippedBitIsDataLossThenChunkReadsOk) {
  // Request 0 writes chunk 1, request 1 reads it with a bit flipped, request 2 reads it clean.
  auto engine = fault_engine({Fault::kNone, Fault::kBitFlip, Fault::kNone});
  auto store = SwapStore::create(engine.get(), options({5000, 50000}));
  ASSERT_TRUE(store.ok()) << store.status();
  AlignedBuffer out = chunk_data(50000, 3);
  AlignedBuffer in = AlignedBuffer::allocate(53248).value();
  ASSERT_TRUE(write_sync(**store, 1, out.data()).status.ok());
  const IoResult bad = read_sync(**store, 1, in.data());
  EXPECT_EQ(bad.status.code(), absl::StatusCode::kDataLoss) << bad.status;
  EXPECT_TRUE(contains(bad.status, "checksum mismatch in chunk 1, block ")) << bad.status;
  EXPECT_TRUE(contains(bad.status, (*store)->extent(1).file)) << bad.status;
  EXPECT_EQ(engine->counts().injected[static_cast<int>(Fault::kBitFlip)], 1u);
  const IoResult good = read_sync(**store, 1, in.data());
  ASSERT_TRUE(good.status.ok()) << good.status;
  EXPECT_EQ(std::memcmp(in.data(), out.data(), 50000), 0);
}

TEST_F(SwapStoreTest, CorruptionOnDiskIsDataLoss) {
  auto engine = thread_engine();
  auto store = SwapStore::create(engine.get(), options({4096, 30000}));
  ASSERT_TRUE(store.ok()) << store.status();
  AlignedBuffer out = chunk_data(30000, 9);
  ASSERT_TRUE(write_sync(**store, 1, out.data()).status.ok());
  const SwapExtent& e = (*store)->extent(1);
  const int fd = ::open(e.file.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const char garbage[] = "not what was written";
  const uint64_t at = e.offset + 2 * 8192 + 100;  // inside checksum block 2
  ASSERT_EQ(::pwrite(fd, garbage, sizeof(garbage), at), static_cast<ssize_t>(sizeof(garbage)));
  ::fsync(fd);
  ::close(fd);
  AlignedBuffer in = AlignedBuffer::allocate(e.bytes).value();
  const IoResult r = read_sync(**store, 1, in.data());
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDataLoss) << r.status;
  EXPECT_TRUE(contains(r.status, "chunk 1, block 2 of " + e.file)) << r.status;
  EXPECT_TRUE(contains(r.status, absl::StrCat("offset ", e.offset + 2 * 8192))) << r.status;
}

TEST_F(SwapStoreTest, NeverWrittenChunkIsDataLoss) {
  auto engine = thread_engine();
  auto store = SwapStore::create(engine.get(), options({4096, 4096, 4096, 4096}));
  ASSERT_TRUE(store.ok()) << store.status();
  AlignedBuffer in = AlignedBuffer::allocate(4096).value();
  const IoResult r = read_sync(**store, 3, in.data());
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDataLoss) << r.status;
  EXPECT_TRUE(contains(r.status, "chunk 3 ")) << r.status;
  EXPECT_TRUE(contains(r.status, "never written")) << r.status;
}

struct WriteFailureCase {
  Fault fault;
  absl::StatusCode code;
};

class SwapStoreWriteFailureTest : public SwapStoreTest,
                                  public ::testing::WithParamInterface<WriteFailureCase> {};

TEST_P(SwapStoreWriteFailureTest, FailedWriteLeavesChunkUnreadable) {
  // A good version first, then a failing write of a new version.
  auto engine = fault_engine({Fault::kNone, GetParam().fault});
  std::vector<std::string> dirs;
  {
    auto store = SwapStore::create(engine.get(), options({10000}));
    ASSERT_TRUE(store.ok()) << store.status();
    dirs = (*store)->directories();
    AlignedBuffer v1 = chunk_data(10000, 1), v2 = chunk_data(10000, 2);
    ASSERT_TRUE(write_sync(**store, 0, v1.data()).status.ok());
    const IoResult w = write_sync(**store, 0, v2.data());
    EXPECT_EQ(w.status.code(), GetParam().code) << w.status;
    EXPECT_TRUE(contains(w.status, "chunk 0")) << w.status;
    // Neither the stale version nor anything else reads back as good.
    AlignedBuffer in = AlignedBuffer::allocate(12288).value();
    const IoResult r = read_sync(**store, 0, in.data());
    EXPECT_EQ(r.status.code(), absl::StatusCode::kDataLoss) << r.status;
    EXPECT_TRUE(contains(r.status, "chunk 0 ")) << r.status;
    EXPECT_TRUE(contains(r.status, "last write failed")) << r.status;
    // A later successful write makes it readable again.
    ASSERT_TRUE(write_sync(**store, 0, v2.data()).status.ok());
    ASSERT_TRUE(read_sync(**store, 0, in.data()).status.ok());
    EXPECT_EQ(std::memcmp(in.data(), v2.data(), 10000), 0);
  }
  for (const std::string& d : dirs) EXPECT_FALSE(fs::exists(d)) << d;
  EXPECT_TRUE(empty_dir(a_.path()));
}

INSTANTIATE_TEST_SUITE_P(
    Faults, SwapStoreWriteFailureTest,
    ::testing::Values(WriteFailureCase{Fault::kEio, absl::StatusCode::kUnavailable},
                      WriteFailureCase{Fault::kEnospc, absl::StatusCode::kResourceExhausted}));

TEST_F(SwapStoreTest, OverlappingReadAndWriteOfOneChunkIsRefused) {
  // The first write fails at once on the fault engine's completion thread and
  // its callback holds that thread, so the second write stays in flight.
  auto engine = fault_engine({Fault::kEio, Fault::kEio});
  auto store = SwapStore::create(engine.get(), options({4096, 4096}));
  ASSERT_TRUE(store.ok()) << store.status();
  AlignedBuffer data = chunk_data(4096, 1);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  Completions c;
  IoResult first, second;
  IoCallback first_done = c.slot(&first);
  ASSERT_TRUE((*store)
                  ->write(0, data.data(),
                          [&](const IoResult& r) {
                            std::unique_lock<std::mutex> lock(mu);
                            cv.wait(lock, [&] { return release; });
                            first_done(r);
                          })
                  .ok());
  ASSERT_TRUE((*store)->write(1, data.data(), c.slot(&second)).ok());
  EXPECT_EQ((*store)->read(1, data.data(), [](const IoResult&) {}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*store)->write(1, data.data(), [](const IoResult&) {}).code(),
            absl::StatusCode::kFailedPrecondition);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  c.wait(2);
  EXPECT_EQ(second.status.code(), absl::StatusCode::kUnavailable);
}

TEST_F(SwapStoreTest, PrivateDirectoryAndFileModes) {
  auto engine = thread_engine();
  auto store = SwapStore::create(engine.get(), options({4096, 8192}));
  ASSERT_TRUE(store.ok()) << store.status();
  for (const std::string& d : (*store)->directories()) {
    EXPECT_TRUE(absl::StrContains(d, absl::StrCat("/dsinf-swap-", ::getpid(), "-"))) << d;
    struct stat st;
    ASSERT_EQ(::stat(d.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u) << d;
    ASSERT_EQ(::stat((d + "/swap.bin").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << d;
  }
  EXPECT_EQ(fs::path((*store)->directories()[0]).parent_path(), fs::path(a_.path()));
  EXPECT_EQ(fs::path((*store)->directories()[1]).parent_path(), fs::path(b_.path()));
}

TEST_F(SwapStoreTest, TooSmallDiskIsResourceExhaustedAndCreatesNothing) {
  auto engine = thread_engine();
  SwapStoreOptions o = options({size_t{1} << 50, 4096});
  o.config_key = "offload.nvme_path";
  auto store = SwapStore::create(engine.get(), o);
  ASSERT_EQ(store.status().code(), absl::StatusCode::kResourceExhausted) << store.status();
  EXPECT_TRUE(contains(store.status(), "offload.nvme_path: " + a_.path() + " has "))
      << store.status();
  EXPECT_TRUE(contains(store.status(), "short by")) << store.status();
  EXPECT_TRUE(contains(store.status(), "PiB")) << store.status();
  EXPECT_TRUE(empty_dir(a_.path()));
  EXPECT_TRUE(empty_dir(b_.path()));
}

TEST_F(SwapStoreTest, MissingPathOrFileIsInvalidArgument) {
  auto engine = thread_engine();
  SwapStoreOptions o = options({4096});
  o.config_key = "offload.nvme_path";
  o.paths = {a_.path(), a_.path() + "/missing"};
  auto store = SwapStore::create(engine.get(), o);
  ASSERT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument) << store.status();
  EXPECT_TRUE(contains(store.status(), "offload.nvme_path")) << store.status();
  EXPECT_TRUE(contains(store.status(), a_.path() + "/missing")) << store.status();
  EXPECT_TRUE(empty_dir(a_.path()));

  std::ofstream(b_.path() + "/plain") << "x";
  o.paths = {b_.path() + "/plain"};
  store = SwapStore::create(engine.get(), o);
  ASSERT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument) << store.status();
  EXPECT_TRUE(contains(store.status(), "offload.nvme_path")) << store.status();
}

// Checks the refusal of a read-only directory as an unprivileged user (root
// may write anywhere, so a root test run drops to nobody in a child process).
TEST_F(SwapStoreTest, NonWritablePathIsInvalidArgument) {
  const std::string path = a_.path() + "/readonly";
  ASSERT_TRUE(fs::create_directory(path));
  ::chmod(a_.path().c_str(), 0755);
  ::chmod(path.c_str(), 0555);
  auto check = [&] {
    auto engine = thread_engine();
    SwapStoreOptions o;
    o.paths = {path};
    o.chunk_bytes = {4096};
    auto store = SwapStore::create(engine.get(), o);
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return store.status().code() == absl::StatusCode::kInvalidArgument &&
           contains(store.status(), "nvme_path: " + path + " is not writable");
  };
  if (::geteuid() != 0) {
    EXPECT_TRUE(check());
  } else {
    EXPECT_EXIT(
        {
          if (::setgid(65534) != 0 || ::setuid(65534) != 0) std::_Exit(2);
          std::_Exit(check() ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "is not writable");
  }
  EXPECT_TRUE(empty_dir(path));
}

TEST_F(SwapStoreTest, StaleDirectoryOfDeadProcessIsRemoved) {
  const pid_t child = ::fork();
  if (child == 0) std::_Exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);  // `child` is now a pid of no process
  // A killed process whose parent is gone stays a zombie where pid 1 never
  // reaps (containers): its directory is stale too.
  const pid_t zombie = ::fork();
  if (zombie == 0) std::_Exit(0);
  ASSERT_GT(zombie, 0);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, zombie, &info, WEXITED | WNOWAIT), 0);
  const std::string stale = absl::StrCat(a_.path(), "/dsinf-swap-", child, "-0");
  const std::string stale_zombie = absl::StrCat(a_.path(), "/dsinf-swap-", zombie, "-1");
  const std::string live = absl::StrCat(a_.path(), "/dsinf-swap-", ::getppid(), "-3");
  const std::string other = a_.path() + "/dsinf-swap-keep";
  for (const std::string& d : {stale, stale_zombie, live, other}) {
    ASSERT_TRUE(fs::create_directory(d));
    std::ofstream(d + "/swap.bin") << "old";
  }
  auto engine = thread_engine();
  auto store = SwapStore::create(engine.get(), options({4096}, 1));
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(stale_zombie));
  ASSERT_EQ(::waitpid(zombie, nullptr, 0), zombie);
  EXPECT_TRUE(fs::exists(live + "/swap.bin"));
  EXPECT_TRUE(fs::exists(other + "/swap.bin"));
}

}  // namespace
}  // namespace dsinf::nvme
