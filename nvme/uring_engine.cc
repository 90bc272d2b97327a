// The io_uring engine: written by the NVMe engine work; until then it reports
// that no ring is available so make_engine falls back to the thread pool.
#include "nvme/engine.h"

namespace dsinf::nvme {

absl::StatusOr<std::unique_ptr<IoEngine>> make_uring_engine(const EngineOptions&) {
  return absl::UnavailableError("the io_uring engine is not built yet");
}

}  // namespace dsinf::nvme
