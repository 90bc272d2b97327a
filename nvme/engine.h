// The asynchronous file I/O interface every swap and benchmark goes through.
// One neutral request struct; each engine (io_uring, a pread/pwrite thread
// pool, a fault-injecting wrapper) turns it into its own operations. Requests
// are O_DIRECT: buffer, offset and size are multiples of kDirectIoAlignment.
// An engine splits a request into pieces of at most block_size bytes and keeps
// at most queue_depth pieces in flight per ring (or thread); submit() blocks
// while that bound is reached, so memory and kernel queues stay bounded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "memory/aligned_buffer.h"
#include "memory/util/errno_status.h"

namespace dsinf::nvme {

inline constexpr size_t kDirectIoAlignment = memory::kChunkAlignment;

enum class IoOp : uint8_t { kRead, kWrite };

// The DeepSpeed `aio` block, with DeepSpeed's defaults.
struct EngineOptions {
  size_t block_size = 1048576;   // a request is split into pieces of at most this many bytes
  int queue_depth = 8;           // pieces in flight per ring or thread
  int intra_op_parallelism = 1;  // rings (io_uring) or worker threads (thread pool)
  bool single_submit = false;    // submit each piece on its own instead of in batches
  bool overlap_events = true;  // keep submitting while reaping; false: submit a batch, reap it all
};

// A file opened through an engine (index into its file table).
using FileId = int;

struct IoRequest {
  IoOp op = IoOp::kRead;
  FileId file = -1;
  uint64_t offset = 0;          // multiple of kDirectIoAlignment
  std::byte* buffer = nullptr;  // aligned to kDirectIoAlignment
  size_t bytes = 0;             // multiple of kDirectIoAlignment, > 0
};

// How a request ended. `bytes` is what was transferred; on success it equals
// the request's size (short transfers are resubmitted inside the engine).
// Codes: kInvalidArgument misaligned or bad file (EINVAL: "alignment"),
// kResourceExhausted ENOSPC/EDQUOT/EFBIG, kDataLoss EIO on read / checksum,
// kUnavailable EIO on write or EAGAIN retries exhausted, kOutOfRange a read
// past the end of the file, kPermissionDenied EACCES/EPERM/EROFS, kInternal else.
struct IoResult {
  absl::Status status;
  size_t bytes = 0;
};

// Called exactly once per accepted request, on an engine thread. It must not
// block for long and must not call submit() (which may block on the in-flight
// bound the engine thread is needed to release), drain(), or destroy the engine.
using IoCallback = std::function<void(const IoResult&)>;

struct EngineStats {
  uint64_t requests = 0;   // completed requests
  uint64_t pieces = 0;     // block-sized operations issued to the kernel
  uint64_t resubmits = 0;  // pieces reissued after a short transfer, EAGAIN or EINTR
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
};

class IoEngine {
 public:
  // Drains everything in flight, then closes its files.
  virtual ~IoEngine() = default;
  virtual std::string name() const = 0;  // "uring", "threads", "fault(<inner>)"
  virtual const EngineOptions& options() const = 0;

  // Opens a file for O_DIRECT reads and writes (created with mode 0600 when
  // `create`). kInvalidArgument if the file system refuses O_DIRECT.
  virtual absl::StatusOr<FileId> open_file(const std::string& path, bool create) = 0;
  // Closes a file; drains its requests first.
  virtual absl::Status close_file(FileId file) = 0;
  // Registers buffers for zero-copy fixed-buffer I/O where the engine can
  // (io_uring); a no-op elsewhere. Requests need not use registered buffers.
  // The kernel keeps the registered pages pinned: a registered buffer must
  // outlive the engine (there is no unregister).
  virtual absl::Status register_buffer(std::byte* data, size_t bytes) = 0;

  // Queues a request. A misaligned or malformed request is rejected at once
  // with kInvalidArgument and `done` is not called. Otherwise returns OkStatus
  // and `done` runs once the request completes or fails. Blocks while the
  // engine's in-flight bound is reached.
  virtual absl::Status submit(const IoRequest& request, IoCallback done) = 0;
  // Blocks until every accepted request has completed and its callback returned.
  virtual void drain() = 0;
  virtual EngineStats stats() const = 0;
};

// The checks every engine applies in submit(): alignment of buffer, offset and
// size, a non-empty size. Returns kInvalidArgument naming what is misaligned.
absl::Status validate_request(const IoRequest& request);
// The errno map's direction for an I/O operation (memory/util/errno_status.h).
inline util::IoDirection direction(IoOp op) {
  return op == IoOp::kRead ? util::IoDirection::kRead : util::IoDirection::kWrite;
}

enum class EngineKind { kAuto, kUring, kThreads };

absl::StatusOr<std::unique_ptr<IoEngine>> make_uring_engine(const EngineOptions& options);
absl::StatusOr<std::unique_ptr<IoEngine>> make_thread_engine(const EngineOptions& options);
// kAuto: io_uring, else (the kernel or container refuses a ring) the thread
// pool; `note` then says why, for the log, once.
absl::StatusOr<std::unique_ptr<IoEngine>> make_engine(EngineKind kind, const EngineOptions& options,
                                                      std::string* note);

}  // namespace dsinf::nvme
