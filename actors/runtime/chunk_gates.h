// Where the threads of a run meet: the per-chunk gate of the model thread
// (a chunk's parameters are used, and its gradients reset, only once its
// update of the latest step is done), the optimizer's progress (commands sent
// and finished, the last step finished, its first error), and the snapshot a
// background save is reading (later updates of a chunk wait until the save
// has read it). The optimizer actor only reports here and asks without
// waiting; the model thread and the save thread wait here.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/status/status.h"

namespace dsinf::actors {

class ChunkGates {
 public:
  explicit ChunkGates(size_t chunks) : updated_step_(chunks, 0) {}

  // ---- the steps ----
  // A new optimizer step is issued: returns its number (1-based).
  int64_t issue_step();
  int64_t steps() const;
  // A restored run is at `steps`: every chunk is current for it.
  void restore(int64_t steps);
  // Chunk c's update of `step` is in its homes.
  void chunk_done(size_t c, int64_t step);
  // The model thread: blocks until chunk c is updated for the latest step
  // issued, or the optimizer failed (its error).
  absl::Status wait_updated(size_t c);

  // ---- the optimizer's commands ----
  void command_sent();
  // A command is over (its I/O drained); `status` its outcome. A step's end
  // also records `finished_step` (0: not a step).
  void command_done(const absl::Status& status, int64_t finished_step = 0);
  // Blocks until every command sent is over; the optimizer's first error.
  absl::Status wait_idle();

  // ---- a background save's snapshot ----
  // Fixes the snapshot at the steps issued so far.
  void begin_snapshot();
  // The save thread: blocks until the snapshot's own step has finished.
  absl::Status wait_snapshot_step();
  void snapshot_chunk_read(size_t c);
  void end_snapshot();
  // Whether the update of `step` may rewrite chunk c now (no snapshot of an
  // earlier step still has to read it). Never blocks.
  bool snapshot_allows(size_t c, int64_t step) const;
  // Time the optimizer spent waiting for a snapshot, in seconds.
  void add_snapshot_wait_ns(int64_t ns);
  double snapshot_wait_s() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int64_t> updated_step_;
  int64_t step_count_ = 0;
  int64_t finished_step_ = 0;
  uint64_t sent_ = 0, done_ = 0;
  absl::Status error_;
  bool snapshot_active_ = false;
  int64_t snapshot_step_ = 0;
  size_t snapshot_read_ = 0;
  int64_t snapshot_wait_ns_ = 0;
};

}  // namespace dsinf::actors
