// Host memory tiers for `dsinf bench tiers`: the bandwidth of an in-place
// update kernel over arrays far larger than the last-level cache (the shape of
// the optimizer step), and of copies between pageable and aligned buffers (the
// shape of staging for swaps and device transfers). All cores, via oneTBB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace dsinf::bench {

struct HostOptions {
  size_t array_bytes = size_t{256} << 20;  // per array and per copy buffer
  int passes = 5;                          // timed passes after one warm-up; the median counts
};

struct HostBandwidth {
  size_t array_bytes = 0;
  int threads = 0;
  int passes = 0;
  // a[i] += s * b[i] over float arrays, 12 bytes per element (read a, read b, write a).
  double update_gbps = 0;
  // memcpy in parallel slices, bytes copied counted once.
  double pageable_to_aligned_gbps = 0;
  double aligned_to_pageable_gbps = 0;
};

// 256 MiB, raised to 4x the last-level cache where that is larger and lowered
// so the two buffers take at most a quarter of the available memory.
size_t default_array_bytes();
// The last-level cache of all online CPUs together in bytes, 0 if unknown.
size_t last_level_cache_bytes();

// The in-place update kernel behind the host memory ceiling, for benchmarks
// that interleave its passes with their own (so drift in the machine's memory
// bandwidth moves both alike).
class UpdateCeiling {
 public:
  // Two float arrays of array_bytes each, first touched by the threads that update them.
  static absl::StatusOr<UpdateCeiling> create(size_t array_bytes);
  // a[i] += s * b[i] over the arrays, all cores, on the CPU's widest vector path
  // (kernels::cpu::axpy).
  void pass();
  double bytes_per_pass() const { return 12.0 * static_cast<double>(n_); }

 private:
  std::unique_ptr<float[]> a_;
  std::unique_ptr<float[]> b_;
  size_t n_ = 0;
};

// a[i] += s * b[i] over two arrays of options.array_bytes, all cores: the host
// memory ceiling of in-place updates, GB/s counting 12 bytes per element.
// kCancelled when interrupted (see interrupt.h), kResourceExhausted when the
// arrays cannot be allocated.
absl::StatusOr<double> measure_update_gbps(const HostOptions& options);

// kCancelled when interrupted (see interrupt.h), kResourceExhausted when the
// buffers cannot be allocated.
absl::StatusOr<HostBandwidth> measure_host(const HostOptions& options);

}  // namespace dsinf::bench
