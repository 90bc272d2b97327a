// errno as a status whose code says what the caller should do -- the one map
// of the project, for file operations and for swap I/O alike:
//   ENOSPC, EDQUOT, EFBIG          kResourceExhausted (the disk is full)
//   EIO, ENODATA                   kDataLoss on a read, kUnavailable otherwise
//   EAGAIN, EBUSY, EINTR           kUnavailable (retry)
//   EINVAL, EBADF                  kInvalidArgument (on a read or write: the
//                                  device refused the alignment or size)
//   EACCES, EPERM, EROFS           kPermissionDenied
//   ENOENT                         kNotFound
//   ENOTDIR, EISDIR                kFailedPrecondition
//   anything else                  kInternal
#pragma once

#include <string>

#include "absl/status/status.h"

namespace dsinf::util {

// What failed: a read or a write of data (the message says "read failed" or
// "write failed"), or another file operation (open, fsync, rename, ...).
enum class IoDirection { kOther, kRead, kWrite };

// The message is "<context>: <strerror>", or "<context>: read failed: <strerror>".
absl::Status errno_status(int err, const std::string& context,
                          IoDirection direction = IoDirection::kOther);

}  // namespace dsinf::util
