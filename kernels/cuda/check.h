// CUDA status checks shared by the CUDA backend's files: every runtime call's
// cudaError_t and every launch become an absl::Status naming the call.
#pragma once

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace dsinf::kernels::cuda {

inline std::string error_text(cudaError_t err) {
  return absl::StrCat(cudaGetErrorName(err), ": ", cudaGetErrorString(err));
}

// kInternal naming the call; OK for cudaSuccess. The error reported is
// consumed, so a later launch check on this thread does not report it again
// (errors that poison the context stay anyway).
inline absl::Status cuda_status(cudaError_t err, absl::string_view what) {
  if (err == cudaSuccess) return absl::OkStatus();
  (void)cudaGetLastError();
  return absl::InternalError(absl::StrCat("CUDA ", what, " failed: ", error_text(err)));
}

// A launch reports a bad configuration (or no device) only through cudaGetLastError.
inline absl::Status launch_status(absl::string_view kernel) {
  return cuda_status(cudaGetLastError(), kernel);
}

}  // namespace dsinf::kernels::cuda

#define DSINF_CUDA_RETURN_IF_ERROR(expr)      \
  do {                                        \
    if (absl::Status _s = (expr); !_s.ok()) { \
      return _s;                              \
    }                                         \
  } while (0)
