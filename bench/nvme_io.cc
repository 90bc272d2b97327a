#include "bench/nvme_io.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/interrupt.h"
#include "bench/report.h"
#include "bench/timing.h"
#include "memory/aligned_buffer.h"

namespace dsinf::bench {
namespace {

using nvme::IoOp;

constexpr uint64_t kFreeSpaceMarginBytes = uint64_t{64} << 20;
constexpr uint64_t kMaxRingBytes = uint64_t{1} << 30;  // bounds the benchmark's own memory
constexpr uint64_t kStampsPerBlock = 16;
constexpr size_t kSector = nvme::kDirectIoAlignment;

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// The value stamped at the start of a sector: a function of the run's seed and
// the sector's file offset, so stale or misplaced data does not match.
uint64_t stamp_value(uint64_t seed, uint64_t offset) {
  uint64_t z = seed ^ (offset + 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The sectors of a block that carry a stamp: up to kStampsPerBlock, evenly
// spaced, always the first and the last.
template <typename Visit>
void for_each_stamp(size_t bytes, Visit&& visit) {
  const uint64_t sectors = bytes / kSector;
  const uint64_t stamps = std::min(sectors, kStampsPerBlock);
  for (uint64_t k = 0; k < stamps; ++k) {
    visit(stamps == 1 ? 0 : k * (sectors - 1) / (stamps - 1) * kSector);
  }
}

// One block-sized buffer of the ring and the request it carries.
struct Slot {
  std::atomic<bool> busy{false};
  std::byte* data = nullptr;
  uint64_t offset = 0;
  size_t bytes = 0;
  bool unverified = false;  // holds data read back that was not checked yet
};

class Ring {
 public:
  static absl::StatusOr<Ring> allocate(size_t block_bytes, size_t slots) {
    absl::StatusOr<memory::AlignedBuffer> buffer =
        memory::AlignedBuffer::allocate(block_bytes * slots);
    if (!buffer.ok()) return buffer.status();
    Ring ring;
    ring.buffer_ = std::move(*buffer);
    ring.slots_ = std::make_unique<Slot[]>(slots);
    ring.count_ = slots;
    for (size_t i = 0; i < slots; ++i) ring.slots_[i].data = ring.buffer_.data() + i * block_bytes;
    return ring;
  }
  Slot& slot(uint64_t block) { return slots_[block % count_]; }
  size_t count() const { return count_; }
  memory::AlignedBuffer& buffer() { return buffer_; }

 private:
  memory::AlignedBuffer buffer_;
  std::unique_ptr<Slot[]> slots_;
  size_t count_ = 0;
};

absl::Status verify_slot(Slot& slot, uint64_t seed) {
  slot.unverified = false;
  absl::Status status;
  for_each_stamp(slot.bytes, [&](size_t at) {
    uint64_t got = 0;
    std::memcpy(&got, slot.data + at, sizeof(got));
    const uint64_t want = stamp_value(seed, slot.offset + at);
    if (got != want && status.ok()) {
      status = absl::DataLossError(absl::StrCat("data read back at offset ", slot.offset + at,
                                                " is not what was written (expected stamp ", want,
                                                ", got ", got, ")"));
    }
  });
  return status;
}

struct PassTiming {
  double seconds = 0;
  double cpu_seconds = 0;
};

// Writes or reads the whole file block by block through the ring; the engine's
// submit() blocks at its in-flight bound, so the queue stays full.
absl::StatusOr<PassTiming> run_pass(nvme::IoEngine& engine, nvme::FileId file, IoOp op, Ring& ring,
                                    uint64_t size_bytes, size_t block_bytes, uint64_t seed) {
  std::mutex error_mu;
  absl::Status first_error;
  std::atomic<bool> failed{false};
  auto record = [&](const absl::Status& status) {
    std::lock_guard<std::mutex> lock(error_mu);
    if (first_error.ok()) first_error = status;
    failed.store(true);
  };
  const uint64_t blocks = (size_bytes + block_bytes - 1) / block_bytes;
  const double cpu_start = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t b = 0; b < blocks && !failed.load() && !interrupted(); ++b) {
    Slot& slot = ring.slot(b);
    slot.busy.wait(true, std::memory_order_acquire);
    if (failed.load()) break;
    if (slot.unverified) {
      if (absl::Status s = verify_slot(slot, seed); !s.ok()) {
        record(s);
        break;
      }
    }
    slot.offset = b * block_bytes;
    slot.bytes = static_cast<size_t>(std::min<uint64_t>(block_bytes, size_bytes - slot.offset));
    if (op == IoOp::kWrite) {
      for_each_stamp(slot.bytes, [&](size_t at) {
        const uint64_t value = stamp_value(seed, slot.offset + at);
        std::memcpy(slot.data + at, &value, sizeof(value));
      });
    }
    slot.busy.store(true, std::memory_order_relaxed);
    const nvme::IoRequest request{op, file, slot.offset, slot.data, slot.bytes};
    absl::Status submitted = engine.submit(request, [&, s = &slot](const nvme::IoResult& result) {
      if (!result.status.ok()) record(result.status);
      s->busy.store(false, std::memory_order_release);
      s->busy.notify_one();
    });
    if (!submitted.ok()) {
      slot.busy.store(false);
      record(submitted);
      break;
    }
    slot.unverified = op == IoOp::kRead;
  }
  engine.drain();
  PassTiming timing;
  timing.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  timing.cpu_seconds = cpu_seconds() - cpu_start;
  if (interrupted()) return absl::CancelledError("interrupted");
  if (!first_error.ok()) return first_error;
  for (size_t i = 0; i < ring.count(); ++i) {
    Slot& slot = ring.slot(i);
    if (!slot.unverified) continue;
    if (absl::Status s = verify_slot(slot, seed); !s.ok()) return s;
  }
  return timing;
}

// A fresh file of `size_bytes`, preallocated like fio's default (fallocate=native).
absl::Status create_preallocated(const std::string& path, uint64_t size_bytes) {
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return util::errno_status(errno, path, nvme::direction(IoOp::kWrite));
  absl::Status status;
  if (::fallocate(fd, 0, 0, static_cast<off_t>(size_bytes)) != 0 && errno != EOPNOTSUPP) {
    status =
        util::errno_status(errno, absl::StrCat(path, ": fallocate"), nvme::direction(IoOp::kWrite));
  }
  ::close(fd);
  return status;
}

// Incompressible content, like fio's default buffers: filled once per
// measurement, outside the timed passes, and reused for every block.
void fill_random(memory::AlignedBuffer& buffer, uint64_t seed) {
  uint64_t* words = reinterpret_cast<uint64_t*>(buffer.data());
  const size_t count = buffer.size() / sizeof(uint64_t);
  for (size_t i = 0; i < count; ++i) words[i] = stamp_value(seed, i);
}

struct Measurement {
  PassTiming write, read;
};

absl::StatusOr<Measurement> measure_once(nvme::IoEngine& engine, const std::string& file_path,
                                         Ring& ring, const NvmeRun& run) {
  if (absl::Status s = create_preallocated(file_path, run.size_bytes); !s.ok()) return s;
  absl::StatusOr<nvme::FileId> file = engine.open_file(file_path, /*create=*/false);
  if (!file.ok()) return file.status();
  const uint64_t seed = std::random_device{}() * 0x100000001ULL ^ std::random_device{}();
  fill_random(ring.buffer(), seed);
  absl::StatusOr<Measurement> m = Measurement{};
  absl::StatusOr<PassTiming> write =
      run_pass(engine, *file, IoOp::kWrite, ring, run.size_bytes, run.options.block_size, seed);
  if (!write.ok()) {
    m = write.status();
  } else {
    std::memset(ring.buffer().data(), 0, ring.buffer().size());  // nothing stale can pass
    for (size_t i = 0; i < ring.count(); ++i) ring.slot(i).unverified = false;
    absl::StatusOr<PassTiming> read =
        run_pass(engine, *file, IoOp::kRead, ring, run.size_bytes, run.options.block_size, seed);
    if (read.ok()) {
      m = Measurement{*write, *read};
    } else {
      m = read.status();
    }
  }
  const absl::Status closed = engine.close_file(*file);
  ::unlink(file_path.c_str());
  if (m.ok() && !closed.ok()) return closed;
  return m;
}

}  // namespace

absl::StatusOr<nvme::EngineKind> parse_engine_kind(const std::string& text,
                                                   const std::string& key) {
  if (text == "auto") return nvme::EngineKind::kAuto;
  if (text == "uring") return nvme::EngineKind::kUring;
  if (text == "threads") return nvme::EngineKind::kThreads;
  return absl::InvalidArgumentError(
      absl::StrCat(key, ": expected auto, uring or threads, got '", text, "'"));
}

absl::StatusOr<ScratchDir> ScratchDir::create(const std::string& parent, uint64_t needed_bytes) {
  struct stat st {};
  if (::stat(parent.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--path ", parent, ": cannot access: ", std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("--path ", parent, ": not a directory"));
  }
  if (::access(parent.c_str(), W_OK | X_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--path ", parent, ": not writable: ", std::strerror(errno)));
  }
  struct statvfs fs {};
  if (::statvfs(parent.c_str(), &fs) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--path ", parent, ": cannot read free space: ", std::strerror(errno)));
  }
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (free_bytes < needed_bytes + kFreeSpaceMarginBytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--path ", parent, ": ", free_bytes, " bytes free, the benchmark file needs ", needed_bytes,
        " plus ", kFreeSpaceMarginBytes, " to spare; pass a smaller --size"));
  }
  const std::string path = absl::StrCat(parent, "/dsinf-bench-", ::getpid());
  std::error_code ec;
  std::filesystem::remove_all(path, ec);  // a leftover of a killed run with this pid
  if (::mkdir(path.c_str(), 0700) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--path ", parent, ": cannot create ", path, ": ", std::strerror(errno)));
  }
  return ScratchDir(path);
}

ScratchDir::~ScratchDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string memory_backed_warning(const std::string& dir) {
  constexpr long kTmpfsMagic = 0x01021994;
  constexpr long kRamfsMagic = 0x858458f6;
  struct statfs fs {};
  if (::statfs(dir.c_str(), &fs) != 0) return "";
  if (fs.f_type != kTmpfsMagic && fs.f_type != kRamfsMagic) return "";
  return absl::StrCat(dir, " is on a memory-backed file system (tmpfs/ramfs): these are memory ",
                      "figures, not disk figures");
}

absl::StatusOr<NvmeResult> measure_nvme(const ScratchDir& dir, const NvmeRun& run,
                                        std::string* note) {
  absl::StatusOr<std::unique_ptr<nvme::IoEngine>> engine =
      nvme::make_engine(run.kind, run.options, note);
  if (!engine.ok()) return engine.status();
  return measure_nvme_with(**engine, dir, run, note);
}

absl::StatusOr<NvmeResult> measure_nvme_with(nvme::IoEngine& engine, const ScratchDir& dir,
                                             const NvmeRun& run, std::string* note) {
  const nvme::EngineOptions& options = run.options;
  if (run.size_bytes == 0 || run.size_bytes % kSector != 0 || options.block_size == 0 ||
      options.block_size % kSector != 0 || run.repeat < 1) {
    return absl::InvalidArgumentError(
        "size and block size must be positive multiples of 4096, repeat at least 1");
  }

  // Twice the engine's in-flight bound, so the submitter can stamp the next
  // block while the queue is full; never more than the file or kMaxRingBytes.
  const uint64_t blocks = (run.size_bytes + options.block_size - 1) / options.block_size;
  const uint64_t inflight = static_cast<uint64_t>(options.queue_depth) *
                            static_cast<uint64_t>(options.intra_op_parallelism);
  const uint64_t slots =
      std::max<uint64_t>(1, std::min({blocks, 2 * inflight, kMaxRingBytes / options.block_size}));
  if (slots < std::min(blocks, inflight) && note != nullptr) {
    *note += absl::StrCat(note->empty() ? "" : "; ", "buffers capped at ", kMaxRingBytes,
                          " bytes: at most ", slots, " requests in flight");
  }
  absl::StatusOr<Ring> ring = Ring::allocate(options.block_size, slots);
  if (!ring.ok()) return ring.status();
  // Requests need not use registered buffers; where registering fails the
  // engine still serves them, only without the zero-copy path.
  (void)engine.register_buffer(ring->buffer().data(), ring->buffer().size());

  const std::string file_path = dir.path() + "/nvme-bench.dat";
  std::vector<double> write_gbps, read_gbps, write_cpu, read_cpu;
  const double gigabytes = static_cast<double>(run.size_bytes) / 1e9;
  for (int i = 0; i < run.repeat; ++i) {
    absl::StatusOr<Measurement> m = measure_once(engine, file_path, *ring, run);
    if (!m.ok()) return m.status();
    write_gbps.push_back(gigabytes / std::max(m->write.seconds, 1e-9));
    read_gbps.push_back(gigabytes / std::max(m->read.seconds, 1e-9));
    write_cpu.push_back(m->write.cpu_seconds / gigabytes);
    read_cpu.push_back(m->read.cpu_seconds / gigabytes);
  }
  NvmeResult result;
  result.engine = engine.name();
  result.options = options;
  result.size_bytes = run.size_bytes;
  result.write_gbps = median(write_gbps);
  result.read_gbps = median(read_gbps);
  result.cpu_s_per_gb_write = median(write_cpu);
  result.cpu_s_per_gb_read = median(read_cpu);
  return result;
}

nlohmann::ordered_json to_json(const NvmeResult& r) {
  return {{"read_gbps", round_significant(r.read_gbps, 4)},
          {"write_gbps", round_significant(r.write_gbps, 4)},
          {"block_size", r.options.block_size},
          {"queue_depth", r.options.queue_depth},
          {"engine", r.engine},
          {"intra_op_parallelism", r.options.intra_op_parallelism},
          {"size_bytes", r.size_bytes},
          {"cpu_s_per_gb_read", round_significant(r.cpu_s_per_gb_read, 4)},
          {"cpu_s_per_gb_write", round_significant(r.cpu_s_per_gb_write, 4)}};
}

nlohmann::ordered_json aio_block(const nvme::EngineOptions& o) {
  return {{"block_size", o.block_size},
          {"queue_depth", o.queue_depth},
          {"intra_op_parallelism", o.intra_op_parallelism},
          {"single_submit", o.single_submit},
          {"overlap_events", o.overlap_events}};
}

}  // namespace dsinf::bench
