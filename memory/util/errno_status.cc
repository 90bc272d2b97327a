#include "memory/util/errno_status.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dsinf::util {

absl::Status errno_status(int err, const std::string& context, IoDirection direction) {
  const bool data = direction != IoDirection::kOther;
  const char* what = direction == IoDirection::kRead ? ": read failed: " : ": write failed: ";
  const std::string message = absl::StrCat(context, data ? what : ": ", std::strerror(err));
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(message);
    case EIO:
    case ENODATA:
      return direction == IoDirection::kRead ? absl::DataLossError(message)
                                             : absl::UnavailableError(message);
    case EAGAIN:
    case EBUSY:
    case EINTR:
      return absl::UnavailableError(message);
    case EINVAL:
      return absl::InvalidArgumentError(
          data ? absl::StrCat(message, " (the device refused the request's alignment or size)")
               : message);
    case EBADF:
      return absl::InvalidArgumentError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ENOENT:
      return absl::NotFoundError(message);
    case ENOTDIR:
    case EISDIR:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace dsinf::util
