#include "actors/uploader.h"

#include "actors/system.h"
#include "memory/util/trace.h"

namespace dsinf::actors {
namespace {

uploader_actor::behavior_type uploader(uploader_actor::pointer self, kernels::Backend* backend) {
  (void)self;
  return {[=](upload_atom, chunk_index c, DeviceBuffer dst, HostBuffer src,
              uint64_t bytes) -> caf::result<absl::Status> {
    trace::Scope span(trace::Lane::kCopyIn, "upload", static_cast<int64_t>(c));
    absl::Status st = backend->copy_to_device(dst.data, src.data, bytes, kernels::Stream::kUpload);
    if (st.ok()) st = backend->synchronize(kernels::Stream::kUpload);
    return st;
  }};
}

}  // namespace

uploader_actor spawn_uploader(ActorSystem& system, kernels::Backend* backend) {
  return system.get().spawn<caf::detached>(uploader, backend);
}

}  // namespace dsinf::actors
