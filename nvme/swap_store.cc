// The NVMe swap store. Layout: chunk i lives in the swap file of path
// i % paths.size(), at the next free page-aligned offset of that file; the
// extents never change, so the files are sized once, up front.
//
// Chunk states (guarded per chunk, so different chunks can be written and read
// concurrently from any threads):
//   never written --write--> writing --OK--> written --write--> writing ...
//                                    --error--> write failed
// A chunk is readable only while `written`; read() of any other chunk returns
// kDataLoss at once, naming the chunk (no I/O is queued and `done` is not
// called, like any other immediate rejection). A write that fails leaves the
// chunk unreadable (kDataLoss on read) rather than keeping the previous
// version's checksums: part of the failed write may have landed, and a caller
// that missed the error must not get stale data back as good. A read and a
// write of the same chunk must not overlap; doing so is refused with
// kFailedPrecondition where it can be seen. The engine must outlive the store.
#include "nvme/swap_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/util/check.h"
#include "memory/util/crc32c.h"
#include "memory/util/process.h"

namespace dsinf::nvme {
namespace {

constexpr char kDirPrefix[] = "dsinf-swap-";
constexpr char kSwapFileName[] = "swap.bin";
// Room left on a file system beyond the swap files (directory blocks, metadata).
constexpr uint64_t kFreeSpaceMarginBytes = 4ull << 20;
constexpr int kMaxDirAttempts = 1000;

std::atomic<uint64_t> next_dir_number{0};

std::string human_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(units)) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.1f %s (%d bytes)", value, units[unit], bytes);
}

enum class ChunkPhase : uint8_t { kNeverWritten, kWriting, kWritten, kWriteFailed };

struct ChunkState {
  std::mutex mu;
  ChunkPhase phase = ChunkPhase::kNeverWritten;
  int reads_in_flight = 0;
  // One CRC32C per checksum block of the padded extent, for the data last
  // submitted for writing (valid for reads only in phase kWritten).
  std::shared_ptr<const std::vector<uint32_t>> crcs;
};

struct PathFiles {
  std::string path;  // as configured
  dev_t device = 0;
  std::string dir;   // the private directory, once created
  std::string file;  // the swap file inside it
  FileId file_id = -1;
  uint64_t bytes = 0;  // the swap file's size
};

// A pid's swap directory name: "dsinf-swap-<pid>-<n>"; returns the pid, or 0.
pid_t swap_dir_pid(const std::string& name) {
  if (name.rfind(kDirPrefix, 0) != 0) return 0;
  const char* p = name.data() + std::strlen(kDirPrefix);
  const char* end = name.data() + name.size();
  pid_t pid = 0;
  auto [after_pid, ec] = std::from_chars(p, end, pid);
  if (ec != std::errc() || pid <= 0 || after_pid == end || *after_pid != '-') return 0;
  uint64_t n = 0;
  auto [after_n, ec_n] = std::from_chars(after_pid + 1, end, n);
  if (ec_n != std::errc() || after_n != end) return 0;
  return pid;
}

// Removes the swap directories left in `path` by processes that no longer exist.
void remove_stale_directories(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> stale;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    const pid_t pid = swap_dir_pid(name);
    if (pid == 0 || pid == ::getpid()) continue;
    if (!util::process_alive(pid)) stale.push_back(path + "/" + name);
  }
  ::closedir(dir);
  for (const std::string& d : stale) {
    std::error_code ec;
    if (std::filesystem::is_directory(std::filesystem::symlink_status(d, ec))) {
      std::filesystem::remove_all(d, ec);
    }
  }
}

absl::Status with_chunk_context(const absl::Status& status, ChunkId id, const SwapExtent& e) {
  return absl::Status(status.code(), absl::StrCat("chunk ", id, " (", e.file, " offset ", e.offset,
                                                  "): ", status.message()));
}

}  // namespace

struct SwapStore::Impl {
  IoEngine* engine = nullptr;
  SwapStoreOptions options;
  std::vector<PathFiles> paths;
  std::vector<SwapExtent> extents;
  std::unique_ptr<ChunkState[]> chunks;

  // Also the clean-up after a failed create(): removes whatever was made.
  ~Impl() {
    for (PathFiles& p : paths) {
      if (p.file_id >= 0) (void)engine->close_file(p.file_id);  // drains first
      if (!p.dir.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(p.dir, ec);
      }
    }
  }

  absl::Status check_paths();
  absl::Status check_free_space() const;
  absl::Status create_files();
  std::vector<uint32_t> checksums(const std::byte* data, size_t bytes) const;
};

absl::Status SwapStore::Impl::check_paths() {
  const std::string& key = options.config_key;
  if (options.paths.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": no swap directory is configured"));
  }
  if (options.checksum_block_bytes == 0) {
    return absl::InvalidArgumentError("swap store: checksum_block_bytes must be positive");
  }
  for (const std::string& path : options.paths) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": ", path, " cannot be used for swap: ", std::strerror(errno)));
    }
    if (!S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(key, ": ", path, " is not a directory"));
    }
    if (::access(path.c_str(), W_OK | X_OK) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": ", path, " is not writable: ", std::strerror(errno)));
    }
    PathFiles& p = paths.emplace_back();
    p.path = path;
    p.device = st.st_dev;
  }
  return absl::OkStatus();
}

// Paths on one file system share its free space, so each is checked against
// what all of them together will put there.
absl::Status SwapStore::Impl::check_free_space() const {
  std::map<dev_t, uint64_t> needed_bytes;
  std::map<dev_t, int> paths_on_device;
  for (const PathFiles& p : paths) {
    needed_bytes[p.device] += p.bytes + kFreeSpaceMarginBytes;
    ++paths_on_device[p.device];
  }
  for (const PathFiles& p : paths) {
    struct statvfs vfs;
    if (::statvfs(p.path.c_str(), &vfs) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          options.config_key, ": ", p.path, ": cannot read free space: ", std::strerror(errno)));
    }
    const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    const uint64_t need = needed_bytes[p.device];
    if (free_bytes < need) {
      const std::string shared =
          paths_on_device[p.device] > 1
              ? absl::StrCat(" (", paths_on_device[p.device], " paths share this file system)")
              : "";
      return absl::ResourceExhaustedError(
          absl::StrCat(options.config_key, ": ", p.path, " has ", human_bytes(free_bytes),
                       " free but the swap needs ", human_bytes(need), shared, " (short by ",
                       human_bytes(need - free_bytes), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status SwapStore::Impl::create_files() {
  const std::string& key = options.config_key;
  for (PathFiles& p : paths) {
    for (int attempt = 0; p.dir.empty(); ++attempt) {
      const std::string dir =
          absl::StrCat(p.path, "/", kDirPrefix, ::getpid(), "-", next_dir_number.fetch_add(1));
      if (::mkdir(dir.c_str(), 0700) == 0) {
        p.dir = dir;
        break;
      }
      const int err = errno;
      if (err == EEXIST && attempt < kMaxDirAttempts) continue;
      if (err == EACCES || err == EPERM || err == EROFS) {
        return absl::InvalidArgumentError(
            absl::StrCat(key, ": ", p.path, " is not writable: ", std::strerror(err)));
      }
      if (err == ENOSPC || err == EDQUOT) {
        return absl::ResourceExhaustedError(
            absl::StrCat(key, ": ", dir, ": cannot create: ", std::strerror(err)));
      }
      return absl::InternalError(
          absl::StrCat(key, ": ", dir, ": cannot create: ", std::strerror(err)));
    }
    ::chmod(p.dir.c_str(), 0700);  // exact mode whatever the umask
    p.file = absl::StrCat(p.dir, "/", kSwapFileName);
    absl::StatusOr<FileId> file = engine->open_file(p.file, /*create=*/true);
    if (!file.ok()) {
      return absl::Status(file.status().code(),
                          absl::StrCat(key, ": ", p.path, ": ", file.status().message()));
    }
    p.file_id = *file;
    ::chmod(p.file.c_str(), 0600);
    if (p.bytes == 0) continue;
    const int fd = ::open(p.file.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      return absl::InternalError(absl::StrCat(key, ": ", p.file, ": ", std::strerror(errno)));
    }
    int err = 0;
    if (::fallocate(fd, 0, 0, static_cast<off_t>(p.bytes)) != 0) {
      err = errno;
      if (err == EOPNOTSUPP || err == ENOSYS) {
        err = ::ftruncate(fd, static_cast<off_t>(p.bytes)) == 0 ? 0 : errno;
      }
    }
    ::close(fd);
    if (err != 0) {
      const std::string what = absl::StrCat(key, ": ", p.file, ": cannot reserve ",
                                            human_bytes(p.bytes), " for the swap file");
      if (err == ENOSPC || err == EDQUOT || err == EFBIG) {
        return absl::ResourceExhaustedError(absl::StrCat(what, ": ", std::strerror(err)));
      }
      return util::errno_status(err, what, direction(IoOp::kWrite));
    }
  }
  return absl::OkStatus();
}

std::vector<uint32_t> SwapStore::Impl::checksums(const std::byte* data, size_t bytes) const {
  const size_t block = options.checksum_block_bytes;
  std::vector<uint32_t> crcs;
  crcs.reserve((bytes + block - 1) / block);
  for (size_t at = 0; at < bytes; at += block) {
    crcs.push_back(util::crc32c(data + at, std::min(block, bytes - at)));
  }
  return crcs;
}

absl::StatusOr<std::unique_ptr<SwapStore>> SwapStore::create(IoEngine* engine,
                                                             const SwapStoreOptions& options) {
  DSINF_CHECK_MSG(engine != nullptr, "SwapStore::create needs an engine");
  auto impl = std::make_unique<Impl>();
  impl->engine = engine;
  impl->options = options;
  if (absl::Status s = impl->check_paths(); !s.ok()) return s;

  const size_t n = impl->paths.size();
  impl->extents.reserve(options.chunk_bytes.size());
  for (size_t i = 0; i < options.chunk_bytes.size(); ++i) {
    PathFiles& p = impl->paths[i % n];
    // A chunk of 0 bytes still gets a page, so every request is well-formed.
    const size_t padded =
        std::max(memory::align_up(options.chunk_bytes[i], kDirectIoAlignment), kDirectIoAlignment);
    impl->extents.push_back(SwapExtent{i % n, "", p.bytes, padded});
    p.bytes += padded;
  }
  impl->chunks = std::make_unique<ChunkState[]>(options.chunk_bytes.size());

  for (const PathFiles& p : impl->paths) remove_stale_directories(p.path);
  if (absl::Status s = impl->check_free_space(); !s.ok()) return s;
  if (absl::Status s = impl->create_files(); !s.ok()) return s;  // ~Impl removes what was made
  for (SwapExtent& e : impl->extents) e.file = impl->paths[e.path_index].file;
  return std::unique_ptr<SwapStore>(new SwapStore(std::move(impl)));
}

SwapStore::SwapStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SwapStore::~SwapStore() = default;

absl::Status SwapStore::write(ChunkId id, const std::byte* data, IoCallback done) {
  if (id >= impl_->extents.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("swap write of chunk ", id, ": the store has ", impl_->extents.size()));
  }
  const SwapExtent& e = impl_->extents[id];
  ChunkState& chunk = impl_->chunks[id];
  // Checked before the I/O is queued: what lands on disk is what was summed.
  auto crcs = std::make_shared<const std::vector<uint32_t>>(impl_->checksums(data, e.bytes));
  ChunkPhase previous_phase;
  std::shared_ptr<const std::vector<uint32_t>> previous_crcs;
  {
    std::lock_guard<std::mutex> lock(chunk.mu);
    if (chunk.phase == ChunkPhase::kWriting || chunk.reads_in_flight > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "swap write of chunk ", id, " overlaps another read or write of the same chunk (",
          chunk.phase == ChunkPhase::kWriting ? "a write" : "a read", " in flight)"));
    }
    previous_phase = chunk.phase;
    previous_crcs = std::move(chunk.crcs);
    chunk.phase = ChunkPhase::kWriting;
    chunk.crcs = std::move(crcs);
  }
  const IoRequest request{IoOp::kWrite, impl_->paths[e.path_index].file_id, e.offset,
                          const_cast<std::byte*>(data), e.bytes};
  absl::Status s =
      impl_->engine->submit(request, [&e, &chunk, id, done = std::move(done)](const IoResult& r) {
        {
          std::lock_guard<std::mutex> lock(chunk.mu);
          chunk.phase = r.status.ok() ? ChunkPhase::kWritten : ChunkPhase::kWriteFailed;
          if (!r.status.ok()) chunk.crcs.reset();
        }
        done(r.status.ok() ? r : IoResult{with_chunk_context(r.status, id, e), r.bytes});
      });
  if (!s.ok()) {  // nothing was queued: the chunk keeps what it had
    std::lock_guard<std::mutex> lock(chunk.mu);
    chunk.phase = previous_phase;
    chunk.crcs = std::move(previous_crcs);
    return with_chunk_context(s, id, e);
  }
  return absl::OkStatus();
}

absl::Status SwapStore::read(ChunkId id, std::byte* data, IoCallback done) {
  if (id >= impl_->extents.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("swap read of chunk ", id, ": the store has ", impl_->extents.size()));
  }
  const SwapExtent& e = impl_->extents[id];
  ChunkState& chunk = impl_->chunks[id];
  std::shared_ptr<const std::vector<uint32_t>> crcs;
  {
    std::lock_guard<std::mutex> lock(chunk.mu);
    switch (chunk.phase) {
      case ChunkPhase::kNeverWritten:
        return absl::DataLossError(
            absl::StrCat("swap chunk ", id, " of ", e.file, " was never written"));
      case ChunkPhase::kWriteFailed:
        return absl::DataLossError(absl::StrCat("swap chunk ", id, " of ", e.file,
                                                " cannot be read: its last write failed"));
      case ChunkPhase::kWriting:
        return absl::FailedPreconditionError(
            absl::StrCat("swap read of chunk ", id, " overlaps a write of the same chunk"));
      case ChunkPhase::kWritten:
        break;
    }
    crcs = chunk.crcs;
    ++chunk.reads_in_flight;
  }
  const size_t block = impl_->options.checksum_block_bytes;
  const IoRequest request{IoOp::kRead, impl_->paths[e.path_index].file_id, e.offset, data, e.bytes};
  absl::Status s = impl_->engine->submit(request, [&e, &chunk, id, data, block, crcs,
                                                   done = std::move(done)](const IoResult& r) {
    IoResult result = r;
    if (!r.status.ok()) {
      result.status = with_chunk_context(r.status, id, e);
    } else {
      for (size_t k = 0; k < crcs->size(); ++k) {
        const size_t at = k * block;
        if (util::crc32c(data + at, std::min(block, e.bytes - at)) != (*crcs)[k]) {
          result.status =
              absl::DataLossError(absl::StrCat("checksum mismatch in chunk ", id, ", block ", k,
                                               " of ", e.file, " (offset ", e.offset + at, ")"));
          break;
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(chunk.mu);
      --chunk.reads_in_flight;
    }
    done(result);
  });
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(chunk.mu);
    --chunk.reads_in_flight;
    return with_chunk_context(s, id, e);
  }
  return absl::OkStatus();
}

const SwapExtent& SwapStore::extent(ChunkId id) const {
  DSINF_CHECK_MSG(id < impl_->extents.size(), "swap chunk id out of range");
  return impl_->extents[id];
}

size_t SwapStore::num_chunks() const { return impl_->extents.size(); }

std::vector<std::string> SwapStore::directories() const {
  std::vector<std::string> dirs;
  for (const PathFiles& p : impl_->paths) dirs.push_back(p.dir);
  return dirs;
}

uint64_t SwapStore::bytes_on_disk() const {
  uint64_t bytes = 0;
  for (const PathFiles& p : impl_->paths) bytes += p.bytes;
  return bytes;
}

}  // namespace dsinf::nvme
