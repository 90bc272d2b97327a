// How the CPU reference kernels (ops.cc, decoder_ops.cc) split work over oneTBB
// threads without making any result depend on the split: a range is cut into
// disjoint sub-ranges, each output element belongs to exactly one of them, and
// the body computes an element the same way whichever task runs it. Reductions
// over rows are cut by output column instead, each column summed over the rows
// in index order.
#pragma once

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstddef>

namespace dsinf::kernels::cpu {

// Work (elements or multiply-adds) below which a range is not split into tasks, so tiny shapes
// stay serial and a task always amortises its scheduling cost.
inline constexpr size_t kTaskWork = 16384;
// Reductions over rows are partitioned into column slices of this width (a few cache lines).
inline constexpr size_t kColumnSlice = 64;

// Calls body(begin, end) over disjoint sub-ranges covering [0, count), in parallel when the work
// is large enough. Which task runs a sub-range never changes what an element's value is.
template <typename Body>
void parallel_over(size_t count, size_t work_per_item, const Body& body) {
  if (count == 0) return;
  const size_t grain = std::max<size_t>(1, kTaskWork / std::max<size_t>(1, work_per_item));
  if (count <= grain) {
    body(size_t{0}, count);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<size_t>(0, count, grain),
                    [&](const tbb::blocked_range<size_t>& r) { body(r.begin(), r.end()); });
}

// Calls body(c0, c1) over disjoint column ranges of [0, columns), each a whole number of slices,
// for a reduction over `rows` rows: the body sums its columns over all rows in index order.
template <typename Body>
void parallel_over_columns(size_t columns, size_t rows, const Body& body) {
  const size_t slices = (columns + kColumnSlice - 1) / kColumnSlice;
  parallel_over(slices, rows * kColumnSlice, [&](size_t s0, size_t s1) {
    body(s0 * kColumnSlice, std::min(columns, s1 * kColumnSlice));
  });
}

}  // namespace dsinf::kernels::cpu
