// An engine that wraps another and injects faults: EIO, ENOSPC, short
// transfers, delays and bit flips in data read, by a seeded probability or a
// fixed schedule. The tests run every failure path through it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "nvme/engine.h"

namespace dsinf::nvme {

enum class Fault : uint8_t {
  kNone,
  kEio,      // the request fails with EIO (kDataLoss on read, kUnavailable on write)
  kEnospc,   // a write fails with ENOSPC (kResourceExhausted); on a read: no fault
  kShort,    // the inner engine transfers an aligned prefix first, then the rest
  kDelay,    // completion is delayed by delay_us
  kBitFlip,  // a read completes OK but one bit of the buffer is flipped
};

struct FaultPlan {
  uint64_t seed = 1;
  // Each request independently gets fault f with probability probability[f]
  // (indexed by Fault); their sum must be <= 1.
  double probability[6] = {0, 0, 0, 0, 0, 0};
  // Or: the n-th submitted request (0-based) gets schedule[n] (overrides probability).
  std::vector<Fault> schedule;
  // When set, the schedule counts only requests of this operation (the n-th
  // read, say): reads issued ahead by a prefetcher do not shift a write's index.
  std::optional<IoOp> schedule_op;
  uint32_t delay_us = 200;
};

struct FaultCounts {
  uint64_t injected[6] = {0, 0, 0, 0, 0, 0};  // by Fault
};

class FaultEngine : public IoEngine {
 public:
  virtual FaultCounts counts() const = 0;
};

std::unique_ptr<FaultEngine> make_fault_engine(std::unique_ptr<IoEngine> inner, FaultPlan plan);

}  // namespace dsinf::nvme
