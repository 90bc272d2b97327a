// The CUDA optimizer step for optimizer state kept on the device: the same two
// passes as the CPU Adam (kernels/cpu/adam.h), on device memory.
//
//   1. grad_stats() adds the gradients' sum of squares and non-finite count
//      into a DeviceGradStats in device memory;
//   2. fused_adam_step() updates the fp32 weights, m and v (and writes the
//      optional bf16/fp16/fp32 copy) and adds the non-finite count into a
//      device counter.
//
// Both only queue work on the given stream: nothing on the hot path waits for
// the device. read_counter() / read_grad_stats() copy a result back and wait.
//
// fused_adam_step is bit-identical to cpu::fused_adam_step (every path): the
// same fp32 scalars, the same IEEE operations in the same order (no fused
// multiply-add, correctly rounded divide and sqrt, denormals kept) and the
// conversions of kernels/cpu/half.h, done with the same integer operations.
// The one exception is the payload of a NaN produced by the arithmetic itself
// (state already inf/NaN, or m and v overflowing): x86 and CUDA make different
// default NaNs. A non-finite gradient is detected before any of that and keeps
// the element's weight, m and v exactly, as on the CPU.
//
// This header needs no CUDA headers; a stream is a cudaStream_t passed as void*.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cpu/adam.h"

namespace dsinf::kernels::cuda {

// A cudaStream_t; nullptr is the default stream.
using StreamHandle = void*;

// One step over device_buffers (the layout and dtypes of cpu::AdamBuffers; every
// pointer is device, managed or pinned host memory). If nonfinite_counter (a
// device pointer) is not null, the count of inf/NaN gradients is atomically
// added to it. n == 0 is a no-op. Errors: InvalidArgument for bad arguments
// (null, misaligned or plain pageable host pointers, fp16 moments, step < 1 with
// bias correction), Internal for a CUDA failure, naming the call.
absl::Status fused_adam_step(const cpu::AdamBuffers& device_buffers, const AdamHyper& hyper,
                             StreamHandle stream, unsigned long long* nonfinite_counter);

// Blocks of the sum of squares: a constant, so the summation order (below) is
// the same on every device.
inline constexpr int kStatsBlocks = 1024;

// grad_stats' accumulator, in device memory. Zero it (reset_grad_stats) before
// the first chunk of a step; calls on it must be ordered (same stream).
struct DeviceGradStats {
  double sum_squares;
  unsigned long long nonfinite;
  double block_sums[kStatsBlocks];  // scratch of one call
};

// Adds the sum of squares (in double, of the gradients as stored) and the count
// of inf/NaN entries of grads (device, n elements of dtype) into *stats.
// Summation order: the elements are split into 4-element vectors (plus the
// unaligned head and tail elements); with B = min(kStatsBlocks, ceil(units /
// 256)) blocks of 256 threads, each thread sums, in increasing order, the units
// a grid-stride loop gives it; each block adds its threads' sums in a fixed
// tree (halving the stride); one block then adds the B block sums in a fixed
// tree, and the total is added to stats->sum_squares. The order depends only on
// n and the pointer's alignment, so the result is deterministic on any device,
// but it is not the CPU's order: the two agree to rounding (~1e-15 relative).
absl::Status grad_stats(const void* grads, cpu::DType dtype, size_t n, StreamHandle stream,
                        DeviceGradStats* stats);

// Queue the zeroing of a counter / of stats' sum and count.
absl::Status reset_counter(unsigned long long* counter, StreamHandle stream);
absl::Status reset_grad_stats(DeviceGradStats* stats, StreamHandle stream);

// Copy a result back; these wait for the stream's work before them.
absl::StatusOr<uint64_t> read_counter(const unsigned long long* counter, StreamHandle stream);
absl::StatusOr<cpu::GradStats> read_grad_stats(const DeviceGradStats* stats, StreamHandle stream);

}  // namespace dsinf::kernels::cuda
