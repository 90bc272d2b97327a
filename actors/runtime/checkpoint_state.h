// What a checkpoint holds of the model and the optimizer, wherever those
// bytes live (device, host or NVMe): each chunk of each class (kParamClass
// the fp32 weights, kMClass and kVClass Adam's moments) as the chunk layout's
// bytes(). A frozen chunk has its parameters only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

namespace dsinf::actors {

inline constexpr int kParamClass = 0, kMClass = 1, kVClass = 2;

class CheckpointState {
 public:
  virtual ~CheckpointState() = default;
  virtual absl::Status read_class(int cls, size_t chunk, std::byte* host) = 0;
  virtual absl::Status write_class(int cls, size_t chunk, const std::byte* host) = 0;
  virtual bool has_optimizer() const = 0;  // false: parameters only (eval, export)
  // Chunk c's m and v live here (a chunk frozen, or owned by another rank: no).
  virtual bool holds_optimizer_state(size_t c) const { return has_optimizer(); }
  virtual int64_t optimizer_steps() const = 0;
  virtual void set_optimizer_steps(int64_t steps) = 0;

  // Saving in the background, while training goes on. begin_snapshot(), on
  // the session's thread between steps, fixes the state after the steps done
  // so far; read_snapshot() then reads it from another thread, chunk by chunk
  // in order, snapshot_chunk_read(c) saying chunk c is done, and end_snapshot()
  // lets it go (also after an error). Updates of later steps wait, chunk by
  // chunk, until the snapshot has read the chunk: no full copy is made and no
  // step waits for the whole save.
  virtual bool saves_in_background() const = 0;
  virtual void begin_snapshot() = 0;
  virtual absl::Status read_snapshot(int cls, size_t chunk, std::byte* host) = 0;
  virtual void snapshot_chunk_read(size_t chunk) = 0;
  virtual void end_snapshot() = 0;
};

}  // namespace dsinf::actors
