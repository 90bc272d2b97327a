#include "memory/util/exit_code.h"

namespace dsinf::util {

int exit_code(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kPermissionDenied:   // a path that may not be written
    case absl::StatusCode::kDataLoss:           // a checksum mismatch, data read back wrong
    case absl::StatusCode::kUnavailable:        // a disk write failed (EIO)
    case absl::StatusCode::kResourceExhausted:  // a disk or a memory budget is full
      return kExitBadInput;
    case absl::StatusCode::kCancelled:
      return kExitInterrupted;
    default:
      return kExitFailure;
  }
}

}  // namespace dsinf::util
