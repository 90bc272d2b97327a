// The CUDA fused Adam/AdamW and gradient statistics (see adam.h). Exactness
// with the CPU rests on three things: the scalars rounded as adam.cc rounds
// them, every fp32 operation written as an explicitly rounded intrinsic
// (__fmul_rn & co. are never contracted into FMAs nor approximated), and the
// bf16/fp16 conversions of kernels/cpu/half.h reproduced with integer ops.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/cpu/adam_kernels.h"  // StepScalars and step_scalars(), shared with the CPU
#include "kernels/cuda/adam.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/half.cuh"

namespace dsinf::kernels::cuda {
namespace {

using cpu::DType;
using cpu::adam_detail::step_scalars;
using cpu::adam_detail::StepScalars;

constexpr int kThreads = 256;         // a multiple of 32: warp reductions need full warps
constexpr int kMaxStepBlocks = 4096;  // ~4 waves of resident blocks on an H100
constexpr size_t kVec = 4;            // elements per vector access (16 B fp32, 8 B 16-bit)

// ---------------------------------------------------------------- errors --

absl::Status check_pointer(const void* p, size_t align, const char* name) {
  if (p == nullptr) return absl::InvalidArgumentError(std::string(name) + " is null");
  if (reinterpret_cast<uintptr_t>(p) % align != 0) {
    return absl::InvalidArgumentError(std::string(name) + " is misaligned for its dtype");
  }
  // A kernel touching memory the device cannot reach would poison the whole CUDA
  // context; one cheap driver query per array turns the common mistake, a
  // pageable host pointer, into an error instead.
  cudaPointerAttributes attr{};
  if (absl::Status s = cuda_status(cudaPointerGetAttributes(&attr, p), "cudaPointerGetAttributes");
      !s.ok()) {
    return s;
  }
  if (attr.type == cudaMemoryTypeUnregistered) {
    return absl::InvalidArgumentError(std::string(name) +
                                      " is not device, managed or pinned host memory");
  }
  return absl::OkStatus();
}

bool valid_dtype(DType d) { return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16; }

// ---------------------------------------------------------------- scalars --

// ------------------------------------------------------ loads and stores --

template <DType D>
__device__ __forceinline__ float load1(const void* base, size_t i) {
  if constexpr (D == DType::kF32) {
    return static_cast<const float*>(base)[i];
  } else {
    return from16<D>(static_cast<const uint16_t*>(base)[i]);
  }
}

template <DType D>
__device__ __forceinline__ void store1(void* base, size_t i, float x) {
  if constexpr (D == DType::kF32) {
    static_cast<float*>(base)[i] = x;
  } else {
    static_cast<uint16_t*>(base)[i] = static_cast<uint16_t>(to16<D>(x));
  }
}

// Elements i..i+3, i a vector boundary (the host checked the alignment).
template <DType D>
__device__ __forceinline__ void load4(const void* base, size_t i, float x[kVec]) {
  if constexpr (D == DType::kF32) {
    const float4 q = *reinterpret_cast<const float4*>(static_cast<const float*>(base) + i);
    x[0] = q.x, x[1] = q.y, x[2] = q.z, x[3] = q.w;
  } else {
    const uint2 q = *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(base) + i);
    x[0] = from16<D>(q.x & 0xffffu), x[1] = from16<D>(q.x >> 16);
    x[2] = from16<D>(q.y & 0xffffu), x[3] = from16<D>(q.y >> 16);
  }
}

template <DType D>
__device__ __forceinline__ void store4(void* base, size_t i, const float x[kVec]) {
  if constexpr (D == DType::kF32) {
    *reinterpret_cast<float4*>(static_cast<float*>(base) + i) = make_float4(x[0], x[1], x[2], x[3]);
  } else {
    *reinterpret_cast<uint2*>(static_cast<uint16_t*>(base) + i) =
        make_uint2(to16<D>(x[0]) | (to16<D>(x[1]) << 16), to16<D>(x[2]) | (to16<D>(x[3]) << 16));
  }
}

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long x) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_down_sync(0xffffffffu, x, offset);
  return x;
}

__device__ __forceinline__ bool nonfinite(float x) {
  return (__float_as_uint(x) & 0x7f800000u) == 0x7f800000u;
}

// ------------------------------------------------------------------ step --

enum class Copy { kNone, kF32, kBF16, kF16 };

template <Copy C>
__host__ __device__ constexpr DType copy_dtype() {
  return C == Copy::kF32 ? DType::kF32 : C == Copy::kF16 ? DType::kF16 : DType::kBF16;
}

// Elements [head, head + 4 * nvec) are read and written as vectors, the rest one by one.
struct StepArgs {
  float* params;
  const void* grads;
  void* m;
  void* v;
  void* copy;
  size_t n, head, nvec;
  unsigned long long* nonfinite;
};

// One element, in the order of step_range in kernels/cpu/adam_impl.h.
__device__ __forceinline__ void adam_update(const StepScalars& s, float p0, float g_raw, float m0,
                                            float v0, float& p1, float& m1, float& v1,
                                            unsigned long long& bad) {
  float g = __fmul_rn(g_raw, s.grad_scale);
  if (!s.adam_w_mode) g = __fadd_rn(g, __fmul_rn(s.weight_decay, p0));
  m1 = __fadd_rn(__fmul_rn(s.beta1, m0), __fmul_rn(s.one_minus_beta1, g));
  v1 = __fadd_rn(__fmul_rn(s.beta2, v0), __fmul_rn(s.one_minus_beta2, __fmul_rn(g, g)));
  const float p = s.adam_w_mode ? __fmul_rn(p0, s.decay) : p0;
  p1 = __fsub_rn(p, __fdiv_rn(__fmul_rn(s.step_size, m1),
                              __fadd_rn(__fdiv_rn(__fsqrt_rn(v1), s.sqrt_bc2), s.eps)));
  if (nonfinite(g_raw)) {
    p1 = p0, m1 = m0, v1 = v0;
    ++bad;
  }
}

template <DType G, DType S, Copy C>
__global__ void __launch_bounds__(kThreads) adam_kernel(StepArgs a, StepScalars s) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  const size_t t0 = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
  unsigned long long bad = 0;
  for (size_t k = t0; k < a.nvec; k += stride) {
    const size_t i = a.head + kVec * k;
    float p0[kVec], g[kVec], m0[kVec], v0[kVec], p1[kVec], m1[kVec], v1[kVec];
    load4<DType::kF32>(a.params, i, p0);
    load4<G>(a.grads, i, g);
    load4<S>(a.m, i, m0);
    load4<S>(a.v, i, v0);
#pragma unroll
    for (size_t j = 0; j < kVec; ++j)
      adam_update(s, p0[j], g[j], m0[j], v0[j], p1[j], m1[j], v1[j], bad);
    store4<DType::kF32>(a.params, i, p1);
    store4<S>(a.m, i, m1);
    store4<S>(a.v, i, v1);
    if constexpr (C != Copy::kNone) store4<copy_dtype<C>()>(a.copy, i, p1);
  }
  // The unaligned head and the tail (everything, when the arrays cannot all be vectorised).
  const size_t vector_elements = kVec * a.nvec;
  for (size_t k = t0; k < a.n - vector_elements; k += stride) {
    const size_t i = k < a.head ? k : k + vector_elements;
    const float p0 = a.params[i];
    const float m0 = load1<S>(a.m, i);
    const float v0 = load1<S>(a.v, i);
    float p1, m1, v1;
    adam_update(s, p0, load1<G>(a.grads, i), m0, v0, p1, m1, v1, bad);
    a.params[i] = p1;
    store1<S>(a.m, i, m1);
    store1<S>(a.v, i, v1);
    if constexpr (C != Copy::kNone) store1<copy_dtype<C>()>(a.copy, i, p1);
  }
  // Non-finite gradients are rare: one atomic per warp that saw any.
  bad = warp_sum(bad);
  if (a.nonfinite != nullptr && (threadIdx.x & 31u) == 0 && bad != 0) atomicAdd(a.nonfinite, bad);
}

struct Array {
  const void* ptr;  // null: absent
  size_t bytes;     // per element
};

// Where the vector part starts (head) and how many vectors it has, given every
// array's alignment; {n, 0} (all scalar) when the arrays are misaligned
// differently, e.g. chunks cut at odd offsets.
template <size_t N>
void vector_split(size_t n, const Array (&arrays)[N], size_t* head, size_t* nvec) {
  const auto addr = [](const Array& a) { return reinterpret_cast<uintptr_t>(a.ptr); };
  const size_t first_vec_bytes = kVec * arrays[0].bytes;
  size_t h =
      (first_vec_bytes - addr(arrays[0]) % first_vec_bytes) % first_vec_bytes / arrays[0].bytes;
  bool aligned = h <= n;
  for (const Array& a : arrays) {
    if (a.ptr != nullptr && (addr(a) + h * a.bytes) % (kVec * a.bytes) != 0) aligned = false;
  }
  *head = aligned ? h : n;
  *nvec = aligned ? (n - h) / kVec : 0;
}

unsigned grid_for(size_t units, int max_blocks) {
  const size_t blocks = (units + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<size_t>(blocks, 1, max_blocks));
}

template <DType G, DType S, Copy C>
absl::Status launch_step(const StepArgs& a, const StepScalars& s, cudaStream_t stream) {
  const unsigned grid = grid_for(a.nvec + (a.n - kVec * a.nvec), kMaxStepBlocks);
  adam_kernel<G, S, C><<<grid, kThreads, 0, stream>>>(a, s);
  return launch_status("launch of adam_kernel");
}

// Runtime dtypes to template arguments, one level at a time.
template <DType G, DType S>
absl::Status dispatch_copy(const cpu::AdamBuffers& b, const StepArgs& a, const StepScalars& s,
                           cudaStream_t st) {
  if (b.params_copy == nullptr) return launch_step<G, S, Copy::kNone>(a, s, st);
  switch (b.copy_dtype) {
    case DType::kF32:
      return launch_step<G, S, Copy::kF32>(a, s, st);
    case DType::kBF16:
      return launch_step<G, S, Copy::kBF16>(a, s, st);
    case DType::kF16:
      return launch_step<G, S, Copy::kF16>(a, s, st);
  }
  return absl::InvalidArgumentError("bad copy dtype");
}

template <DType G>
absl::Status dispatch_state(const cpu::AdamBuffers& b, const StepArgs& a, const StepScalars& s,
                            cudaStream_t st) {
  if (b.state_dtype == DType::kBF16) return dispatch_copy<G, DType::kBF16>(b, a, s, st);
  return dispatch_copy<G, DType::kF32>(b, a, s, st);
}

// ------------------------------------------------------------ grad stats --

template <DType D>
__global__ void __launch_bounds__(kThreads)
    stats_kernel(const void* grads, size_t n, size_t head, size_t nvec, DeviceGradStats* stats) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  const size_t t0 = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
  double sum = 0;
  unsigned long long bad = 0;
  const auto add = [&](float x) {
    const double d = x;  // exact; __d*_rn keep the double ops unfused too
    sum = __dadd_rn(sum, __dmul_rn(d, d));
    bad += nonfinite(x) ? 1 : 0;
  };
  for (size_t k = t0; k < nvec; k += stride) {
    float x[kVec];
    load4<D>(grads, head + kVec * k, x);
#pragma unroll
    for (size_t j = 0; j < kVec; ++j) add(x[j]);
  }
  const size_t vector_elements = kVec * nvec;
  for (size_t k = t0; k < n - vector_elements; k += stride) {
    add(load1<D>(grads, k < head ? k : k + vector_elements));
  }
  __shared__ double partial[kThreads];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half)
      partial[threadIdx.x] = __dadd_rn(partial[threadIdx.x], partial[threadIdx.x + half]);
    __syncthreads();
  }
  if (threadIdx.x == 0) stats->block_sums[blockIdx.x] = partial[0];
  bad = warp_sum(bad);
  if ((threadIdx.x & 31u) == 0 && bad != 0) atomicAdd(&stats->nonfinite, bad);
}

// One block: the block sums in a fixed order, added to the accumulator.
__global__ void __launch_bounds__(kThreads)
    stats_finish_kernel(DeviceGradStats* stats, int blocks) {
  double sum = 0;
  for (int b = threadIdx.x; b < blocks; b += kThreads) sum = __dadd_rn(sum, stats->block_sums[b]);
  __shared__ double partial[kThreads];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half)
      partial[threadIdx.x] = __dadd_rn(partial[threadIdx.x], partial[threadIdx.x + half]);
    __syncthreads();
  }
  if (threadIdx.x == 0) stats->sum_squares = __dadd_rn(stats->sum_squares, partial[0]);
}

template <DType D>
absl::Status launch_stats(const void* grads, size_t n, cudaStream_t stream,
                          DeviceGradStats* stats) {
  const Array arrays[] = {{grads, cpu::dtype_bytes(D)}};
  size_t head, nvec;
  vector_split(n, arrays, &head, &nvec);
  const unsigned grid = grid_for(nvec + (n - kVec * nvec), kStatsBlocks);
  stats_kernel<D><<<grid, kThreads, 0, stream>>>(grads, n, head, nvec, stats);
  if (absl::Status s = launch_status("launch of stats_kernel"); !s.ok()) return s;
  stats_finish_kernel<<<1, kThreads, 0, stream>>>(stats, static_cast<int>(grid));
  return launch_status("launch of stats_finish_kernel");
}

}  // namespace

absl::Status fused_adam_step(const cpu::AdamBuffers& b, const AdamHyper& hyper, StreamHandle stream,
                             unsigned long long* nonfinite_counter) {
  if (hyper.bias_correction && hyper.step < 1) {
    return absl::InvalidArgumentError("Adam steps are 1-based");
  }
  if (b.state_dtype != DType::kF32 && b.state_dtype != DType::kBF16) {
    return absl::InvalidArgumentError("Adam moments are fp32 or bf16");
  }
  if (!valid_dtype(b.grad_dtype) || (b.params_copy != nullptr && !valid_dtype(b.copy_dtype))) {
    return absl::InvalidArgumentError("bad gradient or copy dtype");
  }
  if (b.n == 0) return absl::OkStatus();
  const size_t state_bytes = cpu::dtype_bytes(b.state_dtype);
  for (const absl::Status& s :
       {check_pointer(b.params, 4, "params"),
        check_pointer(b.grads, cpu::dtype_bytes(b.grad_dtype), "grads"),
        check_pointer(b.m, state_bytes, "m"), check_pointer(b.v, state_bytes, "v"),
        b.params_copy ? check_pointer(b.params_copy, cpu::dtype_bytes(b.copy_dtype), "params_copy")
                      : absl::OkStatus(),
        nonfinite_counter ? check_pointer(nonfinite_counter, 8, "nonfinite_counter")
                          : absl::OkStatus()}) {
    if (!s.ok()) return s;
  }

  StepArgs a{b.params, b.grads, b.m, b.v, b.params_copy, b.n, 0, 0, nonfinite_counter};
  const Array arrays[] = {{b.params, 4},
                          {b.grads, cpu::dtype_bytes(b.grad_dtype)},
                          {b.m, state_bytes},
                          {b.v, state_bytes},
                          {b.params_copy, cpu::dtype_bytes(b.copy_dtype)}};
  vector_split(b.n, arrays, &a.head, &a.nvec);
  const StepScalars s = step_scalars(hyper);
  const auto st = static_cast<cudaStream_t>(stream);
  switch (b.grad_dtype) {
    case DType::kF32:
      return dispatch_state<DType::kF32>(b, a, s, st);
    case DType::kBF16:
      return dispatch_state<DType::kBF16>(b, a, s, st);
    case DType::kF16:
      return dispatch_state<DType::kF16>(b, a, s, st);
  }
  return absl::InvalidArgumentError("bad gradient dtype");
}

absl::Status grad_stats(const void* grads, DType dtype, size_t n, StreamHandle stream,
                        DeviceGradStats* stats) {
  if (!valid_dtype(dtype)) return absl::InvalidArgumentError("bad gradient dtype");
  if (n == 0) return absl::OkStatus();
  if (absl::Status s = check_pointer(grads, cpu::dtype_bytes(dtype), "grads"); !s.ok()) return s;
  if (absl::Status s = check_pointer(stats, alignof(DeviceGradStats), "stats"); !s.ok()) return s;
  const auto st = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kF32:
      return launch_stats<DType::kF32>(grads, n, st, stats);
    case DType::kBF16:
      return launch_stats<DType::kBF16>(grads, n, st, stats);
    case DType::kF16:
      return launch_stats<DType::kF16>(grads, n, st, stats);
  }
  return absl::InvalidArgumentError("bad gradient dtype");
}

absl::Status reset_counter(unsigned long long* counter, StreamHandle stream) {
  if (absl::Status s = check_pointer(counter, 8, "counter"); !s.ok()) return s;
  return cuda_status(
      cudaMemsetAsync(counter, 0, sizeof(*counter), static_cast<cudaStream_t>(stream)),
      "cudaMemsetAsync (counter)");
}

absl::Status reset_grad_stats(DeviceGradStats* stats, StreamHandle stream) {
  if (absl::Status s = check_pointer(stats, alignof(DeviceGradStats), "stats"); !s.ok()) return s;
  // Only the accumulator: the scratch is written before it is read.
  return cuda_status(cudaMemsetAsync(stats, 0, offsetof(DeviceGradStats, block_sums),
                                     static_cast<cudaStream_t>(stream)),
                     "cudaMemsetAsync (grad stats)");
}

absl::StatusOr<uint64_t> read_counter(const unsigned long long* counter, StreamHandle stream) {
  if (absl::Status s = check_pointer(counter, 8, "counter"); !s.ok()) return s;
  const auto st = static_cast<cudaStream_t>(stream);
  unsigned long long value = 0;
  if (absl::Status s =
          cuda_status(cudaMemcpyAsync(&value, counter, sizeof(value), cudaMemcpyDeviceToHost, st),
                      "cudaMemcpyAsync (counter)");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = cuda_status(cudaStreamSynchronize(st), "cudaStreamSynchronize"); !s.ok()) {
    return s;
  }
  return uint64_t{value};
}

absl::StatusOr<cpu::GradStats> read_grad_stats(const DeviceGradStats* stats, StreamHandle stream) {
  if (absl::Status s = check_pointer(stats, alignof(DeviceGradStats), "stats"); !s.ok()) return s;
  const auto st = static_cast<cudaStream_t>(stream);
  struct {
    double sum_squares;
    unsigned long long nonfinite;
  } host{};
  static_assert(offsetof(DeviceGradStats, block_sums) == sizeof(host));
  if (absl::Status s =
          cuda_status(cudaMemcpyAsync(&host, stats, sizeof(host), cudaMemcpyDeviceToHost, st),
                      "cudaMemcpyAsync (grad stats)");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = cuda_status(cudaStreamSynchronize(st), "cudaStreamSynchronize"); !s.ok()) {
    return s;
  }
  cpu::GradStats out;
  out.sum_squares = host.sum_squares;
  out.nonfinite = static_cast<size_t>(host.nonfinite);
  return out;
}

}  // namespace dsinf::kernels::cuda
