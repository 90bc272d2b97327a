#include "memory/util/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "memory/util/errno_status.h"

namespace dsinf::util {

absl::Status sync_parent_dir(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  const std::string dir = parent.empty() ? std::string(".") : parent;
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_status(errno, absl::StrCat(dir, ": cannot open directory"));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return errno_status(err, absl::StrCat(dir, ": fsync of directory failed"));
  return absl::OkStatus();
}

absl::StatusOr<AtomicFileWriter> AtomicFileWriter::open(const std::string& path) {
  // The temporary sits beside the target so the rename stays within one file system.
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const std::string tmp = absl::StrCat(dir, ".", name, ".tmp.", ::getpid());
  // A leftover of a process with this pid goes; then the temporary is new,
  // never a link someone left at its name, and its mode is the user's umask's.
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) {
    return errno_status(errno, absl::StrCat(path, ": cannot replace ", tmp));
  }
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0) return errno_status(errno, absl::StrCat(path, ": cannot create ", tmp));
  return AtomicFileWriter(path, tmp, fd);
}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& other) noexcept
    : path_(std::move(other.path_)),
      tmp_path_(std::move(other.tmp_path_)),
      fd_(std::exchange(other.fd_, -1)),
      written_(other.written_),
      committed_(std::exchange(other.committed_, true)) {}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

absl::Status AtomicFileWriter::write(const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, std::min<size_t>(bytes, size_t{1} << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status(errno, absl::StrCat(tmp_path_, ": write failed"));
    if (n == 0) return errno_status(EIO, absl::StrCat(tmp_path_, ": write made no progress"));
    p += n;
    bytes -= static_cast<size_t>(n);
    written_ += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::commit() {
  if (::fsync(fd_) != 0) return errno_status(errno, absl::StrCat(tmp_path_, ": fsync failed"));
  if (::close(std::exchange(fd_, -1)) != 0)
    return errno_status(errno, absl::StrCat(tmp_path_, ": close failed"));
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    return errno_status(errno, absl::StrCat(path_, ": rename failed"));
  }
  committed_ = true;
  return sync_parent_dir(path_);
}

}  // namespace dsinf::util
