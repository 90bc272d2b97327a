// Residency of every chunk copy (one tensor class of one chunk): where its
// data lives and which transfer is moving it. Every move goes through
// ResidencyTable::transition, so a copy is never read while in flight, never
// uploaded twice and never dropped while it is the only one.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace dsinf::memory {

enum class Residency : uint8_t {
  kAbsent,  // not materialised anywhere yet, or released
  kOnNvme,
  kReading,  // NVMe -> host in flight
  kOnHost,
  kUploading,  // host -> device in flight
  kOnDevice,
  kDownloading,  // device -> host in flight
  kWriting,      // host -> NVMe in flight
};
inline constexpr size_t kResidencyCount = 8;

// "absent", "on_nvme", "reading", ... (the names used in DESIGN.md and logs).
const char* residency_name(Residency state);

// The edges of the state machine, including the releases (to kAbsent) and
// the failed-I/O edges Reading -> OnNvme and Writing -> OnHost, where the
// transfer failed and its source copy is still valid.
bool is_legal(Residency from, Residency to);

// A fixed number of entries, all kAbsent at construction. Thread-safe:
// each entry is one atomic moved by compare-exchange, so concurrent actors
// racing on the same entry see exactly one winner.
class ResidencyTable {
 public:
  explicit ResidencyTable(size_t entries);
  // One entry per name; names (e.g. "h.3/m") only appear in error messages.
  explicit ResidencyTable(std::vector<std::string> names);
  ResidencyTable(const ResidencyTable&) = delete;
  ResidencyTable& operator=(const ResidencyTable&) = delete;

  // Moves entry `id` from `from` to `to`. kFailedPrecondition, with the entry,
  // its actual state and the edge named, when the edge is illegal or the
  // entry is not in `from` (e.g. another thread moved it first); the state is
  // then unchanged. An id out of range is a programmer error (DSINF_CHECK).
  absl::Status transition(size_t id, Residency from, Residency to);

  Residency state(size_t id) const;
  size_t size() const { return states_.size(); }
  // How many successful transitions took this edge (uploads, reads, ...).
  uint64_t count(Residency from, Residency to) const;

 private:
  std::string entry_label(size_t id) const;

  std::vector<std::string> names_;  // empty, or one per entry
  std::vector<std::atomic<Residency>> states_;
  std::atomic<uint64_t> edge_counts_[kResidencyCount][kResidencyCount] = {};
};

}  // namespace dsinf::memory
