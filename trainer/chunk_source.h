// Where the model finds each chunk's parameters and leaves each chunk's
// gradients during a forward or backward pass. The model visits chunks in a
// fixed program (embed, blocks 0..L-1, ln_f, embed for the logits; backward in
// reverse, embed twice); a source decides where the bytes live between visits:
// all on the device (stage 0), or streamed from host or NVMe by the offload
// runtime. The math does not depend on the source: a gradient visit is always
// computed into a zeroed buffer and then added into the chunk's accumulator,
// which starts each step at +0, by the same float addition wherever it lives.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dsinf::trainer {

class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  // Device pointer to chunk c's parameters (its ChunkLayout), valid until release_params(c).
  virtual absl::StatusOr<const float*> acquire_params(size_t c) = 0;
  virtual absl::Status release_params(size_t c) = 0;
  // `visit` (device, chunk c's layout) holds one visit's gradient of chunk c:
  // add it into the chunk's accumulator. `visit` may be reused once this returns.
  virtual absl::Status accumulate_grads(size_t c, const float* visit) = 0;

  // Outside the passes: chunk c's parameters from host memory (initialisation,
  // loading weights), and chunk c's parameters or accumulated gradients into
  // host memory (export). Both numel_padded floats.
  virtual absl::Status write_params(size_t c, const float* host) = 0;
  virtual absl::Status read_chunk(size_t c, bool gradients, float* host) = 0;
};

}  // namespace dsinf::trainer
