#include "actors/uploader.h"

#include "actors/system.h"
#include "memory/util/trace.h"

namespace dsinf::actors {

using kernels::Stream;

absl::Status upload_chunk(kernels::Backend* backend, kernels::DType working, const UploadJob& job) {
  const bool widen = working != kernels::DType::kF32;
  void* target = widen ? job.area : static_cast<void*>(job.slot.data);
  absl::Status st = backend->copy_to_device(target, job.src.data, job.bytes, Stream::kUpload);
  if (st.ok() && widen) {
    st = backend->convert(job.area, working, job.slot.data, kernels::DType::kF32, job.elements,
                          Stream::kUpload);
  }
  if (st.ok()) st = backend->synchronize(Stream::kUpload);
  return st;
}

namespace {

uploader_actor::behavior_type uploader(uploader_actor::pointer self, kernels::Backend* backend,
                                       kernels::DType working) {
  (void)self;
  return {[=](upload_atom, chunk_index c, UploadJob job) -> caf::result<absl::Status> {
    trace::Scope span(trace::Lane::kCopyIn, "upload", static_cast<int64_t>(c));
    return upload_chunk(backend, working, job);
  }};
}

}  // namespace

uploader_actor spawn_uploader(ActorSystem& system, kernels::Backend* backend,
                              kernels::DType working) {
  return system.get().spawn<caf::detached>(uploader, backend, working);
}

}  // namespace dsinf::actors
