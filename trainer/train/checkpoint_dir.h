// The checkpoint folder's names and bookkeeping, shared by the writer and the
// reader (checkpoint.cc): file names by step and rank, the "latest" pointer.
// find_latest_checkpoint and remove_stale_temporaries (checkpoint.h) live
// beside them in checkpoint_dir.cc.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace dsinf::trainer {

// "ckpt-<step, 8 digits>.dsinf": a checkpoint, or a partitioned one's manifest.
std::string checkpoint_name(int64_t step);
// Rank r's part of a checkpoint saved by `world` ranks.
std::string part_name(int64_t step, int rank, int world);
// Step number of "ckpt-<digits>.dsinf", or -1.
int64_t parse_checkpoint_name(const std::string& name);
// Points "<output_dir>/latest" at `name`, atomically.
absl::Status point_latest(const std::string& output_dir, const std::string& name);

}  // namespace dsinf::trainer
