// Timing shared by the benchmarks: medians of repeated passes, so one slow pass
// (a page fault storm, a noisy neighbour) does not move the figure.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/interrupt.h"

namespace dsinf::bench {

inline double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Runs `pass` once untimed, then `passes` times; the median seconds of one pass.
// kCancelled when interrupted (see interrupt.h).
template <typename Pass>
absl::StatusOr<double> median_seconds(int passes, Pass&& pass) {
  pass();
  std::vector<double> seconds;
  for (int i = 0; i < passes; ++i) {
    if (interrupted()) return absl::CancelledError("interrupted");
    const auto start = std::chrono::steady_clock::now();
    pass();
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return std::max(median(seconds), 1e-9);
}

}  // namespace dsinf::bench
