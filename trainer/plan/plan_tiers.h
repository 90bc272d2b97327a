// dsinf plan's bandwidths: --tiers FILE, else the cache
// ($XDG_CACHE_HOME/dsinf/tiers.json or ~/.cache/dsinf/tiers.json), else a
// quick in-process measurement written to the cache.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/config/config.h"
#include "trainer/plan/plan_report.h"

namespace dsinf::trainer {

struct Bandwidths {
  TierBandwidths tiers;
  std::string source;       // "file", "cache" or "measured"
  std::string where;        // the file read or written, if any
  std::string cpu_source;   // where cpu_gflops came from
  std::string nvme_reason;  // why NVMe is unknown, when it is
};

absl::StatusOr<Bandwidths> resolve_bandwidths(const Config& config, const PlanOptions& options,
                                              const std::optional<TierBandwidths>& file_tiers,
                                              bool uses_nvme, std::ostream& log);

}  // namespace dsinf::trainer
