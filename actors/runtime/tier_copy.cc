#include "actors/runtime/tier_copy.h"

#include <cstring>

#include "memory/util/check.h"

namespace dsinf::actors {

using kernels::Stream;

absl::StatusOr<float*> host_view(kernels::Backend& backend, const ClassHome& home, size_t c,
                                 size_t bytes, std::byte* staging) {
  DSINF_CHECK_MSG(home.tier != Tier::kNvme, "NVMe homes are read through nvme_swap");
  if (home.tier == Tier::kHost) return reinterpret_cast<float*>(home.host[c]);
  if (absl::Status s = backend.copy_to_host(staging, home.device[c], bytes, Stream::kDownload);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = backend.synchronize(Stream::kDownload); !s.ok()) return s;
  return reinterpret_cast<float*>(staging);
}

absl::Status copy_into_home(kernels::Backend& backend, ClassHome& home, size_t c, size_t bytes,
                            const float* src) {
  DSINF_CHECK_MSG(home.tier != Tier::kNvme, "NVMe homes are written through nvme_swap");
  if (home.tier == Tier::kHost) {
    if (reinterpret_cast<const std::byte*>(src) != home.host[c]) {
      std::memcpy(home.host[c], src, bytes);
    }
    return absl::OkStatus();
  }
  if (absl::Status s = backend.copy_to_device(home.device[c], src, bytes, Stream::kUpload);
      !s.ok()) {
    return s;
  }
  return backend.synchronize(Stream::kUpload);
}

absl::Status put_working(kernels::Backend& backend, ChunkStore& store, size_t c, const void* src) {
  ClassHome& params = store.params();
  if (!store.reduced() || params.tier != Tier::kDevice) {
    return copy_into_home(backend, params, c, store.working_bytes(c), static_cast<const float*>(src));
  }
  const size_t n = store.numel(c);
  const kernels::DType type = store.working_dtype();
  if (absl::Status s = backend.copy_to_device(store.param_area(), src,
                                              n * kernels::dtype_bytes(type), Stream::kUpload);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = backend.convert(store.param_area(), type, params.device[c],
                                       kernels::DType::kF32, n, Stream::kUpload);
      !s.ok()) {
    return s;
  }
  return backend.synchronize(Stream::kUpload);
}

}  // namespace dsinf::actors
