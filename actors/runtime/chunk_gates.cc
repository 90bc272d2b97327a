#include "actors/runtime/chunk_gates.h"

#include "memory/util/check.h"

namespace dsinf::actors {

int64_t ChunkGates::issue_step() {
  std::lock_guard<std::mutex> lock(mu_);
  return ++step_count_;
}

int64_t ChunkGates::steps() const {
  std::lock_guard<std::mutex> lock(mu_);
  return step_count_;
}

void ChunkGates::restore(int64_t steps) {
  std::lock_guard<std::mutex> lock(mu_);
  step_count_ = steps;
  finished_step_ = steps;
  updated_step_.assign(updated_step_.size(), steps);
}

void ChunkGates::chunk_done(size_t c, int64_t step) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    updated_step_[c] = step;
  }
  cv_.notify_all();
}

absl::Status ChunkGates::wait_updated(size_t c) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return updated_step_[c] >= step_count_ || !error_.ok(); });
  return error_;
}

void ChunkGates::command_sent() {
  std::lock_guard<std::mutex> lock(mu_);
  ++sent_;
}

void ChunkGates::command_done(const absl::Status& status, int64_t finished_step) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++done_;
    error_.Update(status);
    if (status.ok() && finished_step > finished_step_) finished_step_ = finished_step;
  }
  cv_.notify_all();
}

absl::Status ChunkGates::wait_idle() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_ == sent_; });
  return error_;
}

void ChunkGates::begin_snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  DSINF_CHECK(!snapshot_active_);
  snapshot_active_ = true;
  snapshot_step_ = step_count_;
  snapshot_read_ = 0;
}

absl::Status ChunkGates::wait_snapshot_step() {
  // Later steps wait for this reader (snapshot_allows), so this cannot stall.
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return finished_step_ >= snapshot_step_ || !error_.ok(); });
  return error_;
}

void ChunkGates::snapshot_chunk_read(size_t c) {
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_read_ = c + 1;
}

void ChunkGates::end_snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_active_ = false;
}

bool ChunkGates::snapshot_allows(size_t c, int64_t step) const {
  std::lock_guard<std::mutex> lock(mu_);
  return !snapshot_active_ || step <= snapshot_step_ || snapshot_read_ > c;
}

void ChunkGates::add_snapshot_wait_ns(int64_t ns) {
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_wait_ns_ += ns;
}

double ChunkGates::snapshot_wait_s() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<double>(snapshot_wait_ns_) * 1e-9;
}

}  // namespace dsinf::actors
