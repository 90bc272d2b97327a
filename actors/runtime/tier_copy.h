// Moving one chunk of a class between host memory and its home when that home
// is the device or the host: a device copy waited for, or a memcpy. NVMe homes
// are the nvme_swap actor's (actors/nvme_swap.h).
#pragma once

#include <cstddef>

#include "absl/status/statusor.h"
#include "actors/runtime/chunk_store.h"
#include "kernels/backend.h"

namespace dsinf::actors {

// Chunk c of `home` readable on the host: its host block itself, or the
// device copy downloaded into `staging` (`bytes`).
absl::StatusOr<float*> host_view(kernels::Backend& backend, const ClassHome& home, size_t c,
                                 size_t bytes, std::byte* staging);
// Chunk c of `home` from host memory (nothing to do when src is its own block).
absl::Status copy_into_home(kernels::Backend& backend, ClassHome& home, size_t c, size_t bytes,
                            const float* src);
// Chunk c's working parameters from host memory in the working dtype into
// their host or device home; on the device a 16-bit copy goes through the
// store's param_area and is widened into the fp32 home (waited for).
absl::Status put_working(kernels::Backend& backend, ChunkStore& store, size_t c, const void* src);

}  // namespace dsinf::actors
