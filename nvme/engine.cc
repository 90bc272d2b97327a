#include "nvme/engine.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "nvme/engine_internal.h"

namespace dsinf::nvme {

absl::Status validate_request(const IoRequest& request) {
  const auto addr = reinterpret_cast<uintptr_t>(request.buffer);
  if (request.buffer == nullptr) return absl::InvalidArgumentError("I/O request has no buffer");
  if (request.bytes == 0) return absl::InvalidArgumentError("I/O request of 0 bytes");
  if (addr % kDirectIoAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("misaligned I/O buffer: address ", addr,
                                                   " is not a multiple of ", kDirectIoAlignment));
  }
  if (request.offset % kDirectIoAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("misaligned I/O offset ", request.offset,
                                                   ": not a multiple of ", kDirectIoAlignment));
  }
  if (request.bytes % kDirectIoAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("misaligned I/O size ", request.bytes,
                                                   ": not a multiple of ", kDirectIoAlignment));
  }
  return absl::OkStatus();
}

namespace internal {

absl::StatusOr<int> open_direct(const std::string& path, bool create) {
  const int flags = O_RDWR | O_DIRECT | O_CLOEXEC | (create ? O_CREAT : 0);
  const int fd = ::open(path.c_str(), flags, 0600);
  if (fd >= 0) return fd;
  const int err = errno;
  if (err == EINVAL) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the file system does not support O_DIRECT (direct I/O)"));
  }
  if (err == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(err)));
  if (err == EACCES || err == EPERM || err == EROFS) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": ", std::strerror(err)));
  }
  return absl::InternalError(absl::StrCat(path, ": cannot open: ", std::strerror(err)));
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<IoEngine>> make_engine(EngineKind kind, const EngineOptions& options,
                                                      std::string* note) {
  if (kind == EngineKind::kThreads) return make_thread_engine(options);
  absl::StatusOr<std::unique_ptr<IoEngine>> uring = make_uring_engine(options);
  if (uring.ok() || kind == EngineKind::kUring) return uring;
  if (note != nullptr) {
    *note = absl::StrCat("io_uring is not available (", uring.status().message(),
                         "); using the pread/pwrite thread pool");
  }
  return make_thread_engine(options);
}

}  // namespace dsinf::nvme
