// `dsinf plan --world-size N`: what each of N data-parallel ranks holds (the
// partition of actors/runtime/partition.h) and the bytes its runtime
// reserves on each tier -- plan_memory over that rank's layouts, as the
// training runtime computes it, with the device buffers a rank at stage 3
// receives other ranks' chunks into and the host staging of its exchanges.
#pragma once

#include <ostream>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/runtime/partition.h"
#include "actors/runtime/placement.h"
#include "memory/chunk_layout.h"
#include "nlohmann/json.hpp"

namespace dsinf::trainer {

// One JSON object per rank ({"rank", "chunks": [first, last] or null,
// "param_bytes", "grad_bytes", "optimizer_bytes", "device_bytes", "parameter_slots",
// "host_bytes", "exchange_bytes", "nvme_bytes"}), printed as lines on `out`. kInvalidArgument
// when a rank's share does not fit the budgets.
absl::StatusOr<nlohmann::ordered_json> plan_ranks(const actors::Placement& placement,
                                                  const actors::MemoryBudgets& budgets,
                                                  const std::vector<memory::ChunkLayout>& layouts,
                                                  size_t activation_bytes,
                                                  const actors::ExchangeStaging& exchange,
                                                  int world, int stage,
                                                  std::ostream& out);

}  // namespace dsinf::trainer
