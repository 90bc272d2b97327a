// The communicator tests' data and reference (comm_test.cc, nccl_comm_test.cc):
// what each rank contributes, and the sums every rank computes alone.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace dsinf::kernels::comm {

// Rank r's element i: magnitudes spread over decades (1e-3 to 1e3) so that
// the order of the additions changes the bits.
inline float value(int rank, size_t i) {
  const double x = std::sin(0.37 * static_cast<double>(i) + 1.3 * rank);
  return static_cast<float>(x * std::pow(10.0, static_cast<double>((i + rank) % 7) - 3.0));
}

inline std::vector<float> data_of(int rank, size_t n) {
  std::vector<float> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = value(rank, i);
  return d;
}

// The sum over ranks in rank order, in fp32.
inline std::vector<float> rank_order_sum(size_t n, int size) {
  std::vector<float> sum = data_of(0, n);
  for (int r = 1; r < size; ++r) {
    for (size_t i = 0; i < n; ++i) sum[i] += value(r, i);
  }
  return sum;
}

}  // namespace dsinf::kernels::comm
