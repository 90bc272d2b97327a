// The CPU Adam kernels written once over a vector policy V; each path's source
// file (adam_scalar.cc, adam_avx2.cc, adam_avx512*.cc) includes this with its
// own policy and compiler flags. Everything here has internal linkage, so no
// function compiled for one instruction set can be picked by the linker for
// another. Only include this from those files.
//
// A policy V provides: F (a vector of kWidth floats), M (a lane mask),
// load/store/stream for f32, bf16 and f16 (stream only on addresses aligned to
// the vector's size), set1, add, sub, mul, div, sqrt (IEEE, no fusing),
// nonfinite, any, count, blend(mask, if_set, otherwise), fence (after streamed
// stores), and for the sum of
// squares Acc (8 double lanes), acc_zero, acc_add_squares (kWidth floats, a
// multiple of 8, element j into lane j % 8 in order), acc_lanes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/adam_kernels.h"
#include "kernels/cpu/half.h"
#include "kernels/cpu/ops.h"

namespace dsinf::kernels::cpu::adam_detail {
namespace {

// One element at a time; the tail of every vector path and the whole scalar path.
struct ScalarPolicy {
  using F = float;
  using M = bool;
  static constexpr size_t kWidth = 1;
  static F load_f32(const float* p) { return *p; }
  static void store_f32(float* p, F x) { *p = x; }
  static void stream_f32(float* p, F x) { *p = x; }
  static F load_bf16(const uint16_t* p) { return bf16_to_float(*p); }
  static void store_bf16(uint16_t* p, F x) { *p = float_to_bf16(x); }
  static void stream_bf16(uint16_t* p, F x) { *p = float_to_bf16(x); }
  static F load_f16(const uint16_t* p) { return f16_to_float(*p); }
  static void store_f16(uint16_t* p, F x) { *p = float_to_f16(x); }
  static void stream_f16(uint16_t* p, F x) { *p = float_to_f16(x); }
  static F set1(float x) { return x; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F mul(F a, F b) { return a * b; }
  static F div(F a, F b) { return a / b; }
  static F sqrt(F a) { return __builtin_sqrtf(a); }
  static M nonfinite(F x) { return (std::bit_cast<uint32_t>(x) & 0x7f800000u) == 0x7f800000u; }
  static bool any(M m) { return m; }
  static size_t count(M m) { return m ? 1 : 0; }
  static F blend(M m, F if_set, F otherwise) { return m ? if_set : otherwise; }
};

template <DType D>
using Storage = std::conditional_t<D == DType::kF32, float, uint16_t>;

template <class V, DType D>
typename V::F load(const void* base, size_t i) {
  const Storage<D>* p = static_cast<const Storage<D>*>(base) + i;
  if constexpr (D == DType::kF32) return V::load_f32(p);
  if constexpr (D == DType::kBF16) return V::load_bf16(p);
  if constexpr (D == DType::kF16) return V::load_f16(p);
}

template <class V, DType D>
void store(void* base, size_t i, typename V::F x) {
  Storage<D>* p = static_cast<Storage<D>*>(base) + i;
  if constexpr (D == DType::kF32) V::store_f32(p, x);
  if constexpr (D == DType::kBF16) V::store_bf16(p, x);
  if constexpr (D == DType::kF16) V::store_f16(p, x);
}

// A store that bypasses the cache: the copy for the device is not read again here.
template <class V, DType D>
void stream(void* base, size_t i, typename V::F x) {
  Storage<D>* p = static_cast<Storage<D>*>(base) + i;
  if constexpr (D == DType::kF32) V::stream_f32(p, x);
  if constexpr (D == DType::kBF16) V::stream_bf16(p, x);
  if constexpr (D == DType::kF16) V::stream_f16(p, x);
}

// A hint to fetch element i of an array: on the read-only gradient pass the
// hardware prefetchers alone leave a core well short of memory bandwidth (the
// step's several streams keep enough in flight without it). Computed as an integer, as
// the element may lie past the end (a prefetch never faults).
template <DType D>
void prefetch(const void* base, size_t i) {
  __builtin_prefetch(
      reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(base) + i * sizeof(Storage<D>)));
}

// The copy of the new weights: none, or one of the three dtypes.
enum class Copy { kNone, kF32, kBF16, kF16 };

template <Copy C>
constexpr DType copy_dtype() {
  if constexpr (C == Copy::kF32) return DType::kF32;
  if constexpr (C == Copy::kF16) return DType::kF16;
  return DType::kBF16;
}

// The operation order is that of the reference cpu::adam_step<float> (ops.cc).
template <class V, DType G, DType S, Copy C, bool kAdamW>
size_t step_range(const AdamBuffers& b, const StepScalars& s, size_t i, size_t end) {
  using F = typename V::F;
  const F grad_scale = V::set1(s.grad_scale);
  const F weight_decay = V::set1(s.weight_decay);
  const F beta1 = V::set1(s.beta1);
  const F beta2 = V::set1(s.beta2);
  const F one_minus_beta1 = V::set1(s.one_minus_beta1);
  const F one_minus_beta2 = V::set1(s.one_minus_beta2);
  const F decay = V::set1(s.decay);
  const F step_size = V::set1(s.step_size);
  const F sqrt_bc2 = V::set1(s.sqrt_bc2);
  const F eps = V::set1(s.eps);
  constexpr size_t kCopyBytes = C == Copy::kF32 ? 4 : 2;
  const bool stream_copy =
      C != Copy::kNone &&
      reinterpret_cast<uintptr_t>(static_cast<const char*>(b.params_copy) + i * kCopyBytes) %
              (V::kWidth * kCopyBytes) ==
          0;
  size_t nonfinite = 0;
  for (; i + V::kWidth <= end; i += V::kWidth) {
    const F p0 = V::load_f32(b.params + i);
    const F g_raw = load<V, G>(b.grads, i);
    const F m0 = load<V, S>(b.m, i);
    const F v0 = load<V, S>(b.v, i);
    F g = V::mul(g_raw, grad_scale);
    if constexpr (!kAdamW) g = V::add(g, V::mul(weight_decay, p0));
    F m1 = V::add(V::mul(beta1, m0), V::mul(one_minus_beta1, g));
    F v1 = V::add(V::mul(beta2, v0), V::mul(one_minus_beta2, V::mul(g, g)));
    F p = p0;
    if constexpr (kAdamW) p = V::mul(p, decay);
    F p1 = V::sub(p, V::div(V::mul(step_size, m1), V::add(V::div(V::sqrt(v1), sqrt_bc2), eps)));
    const typename V::M bad = V::nonfinite(g_raw);
    if (V::any(bad)) [[unlikely]] {
      nonfinite += V::count(bad);
      p1 = V::blend(bad, p0, p1);
      m1 = V::blend(bad, m0, m1);
      v1 = V::blend(bad, v0, v1);
    }
    V::store_f32(b.params + i, p1);
    store<V, S>(b.m, i, m1);
    store<V, S>(b.v, i, v1);
    if constexpr (C != Copy::kNone) {
      if (stream_copy) {
        stream<V, copy_dtype<C>()>(b.params_copy, i, p1);
      } else {
        store<V, copy_dtype<C>()>(b.params_copy, i, p1);
      }
    }
  }
  if constexpr (!std::is_same_v<V, ScalarPolicy>) {
    if (i < end) nonfinite += step_range<ScalarPolicy, G, S, C, kAdamW>(b, s, i, end);
    // Streamed stores are weakly ordered: fence them before the slice reports done.
    if (stream_copy) V::fence();
  }
  return nonfinite;
}

// Turns the runtime dtypes into template arguments.
template <class Fn>
auto with_dtype(DType d, Fn&& fn) {
  switch (d) {
    case DType::kBF16:
      return fn(std::integral_constant<DType, DType::kBF16>{});
    case DType::kF16:
      return fn(std::integral_constant<DType, DType::kF16>{});
    case DType::kF32:
      break;
  }
  return fn(std::integral_constant<DType, DType::kF32>{});
}

template <class Fn>
auto with_copy(const AdamBuffers& b, Fn&& fn) {
  if (b.params_copy == nullptr) return fn(std::integral_constant<Copy, Copy::kNone>{});
  switch (b.copy_dtype) {
    case DType::kBF16:
      return fn(std::integral_constant<Copy, Copy::kBF16>{});
    case DType::kF16:
      return fn(std::integral_constant<Copy, Copy::kF16>{});
    case DType::kF32:
      break;
  }
  return fn(std::integral_constant<Copy, Copy::kF32>{});
}

template <class V>
size_t step_kernel(const AdamBuffers& b, const StepScalars& s, size_t begin, size_t end) {
  return with_dtype(b.grad_dtype, [&](auto g) {
    // bf16 or fp32 moments only (adam.cc checks).
    auto on_state = [&](auto st) {
      return with_copy(b, [&](auto c) {
        if (s.adam_w_mode)
          return step_range<V, decltype(g)::value, decltype(st)::value, decltype(c)::value, true>(
              b, s, begin, end);
        return step_range<V, decltype(g)::value, decltype(st)::value, decltype(c)::value, false>(
            b, s, begin, end);
      });
    };
    if (b.state_dtype == DType::kBF16)
      return on_state(std::integral_constant<DType, DType::kBF16>{});
    return on_state(std::integral_constant<DType, DType::kF32>{});
  });
}

// Elements [i, end) of one block into lanes[(i - block start) % 8]; end - i a multiple of
// kWidth except in a block's tail.
template <class V, DType D>
size_t stats_block(const void* grads, size_t begin, size_t end, double* block_sum) {
  size_t nonfinite = 0;
  size_t i = begin;
  double lanes[8] = {};
  if constexpr (!std::is_same_v<V, ScalarPolicy>) {
    typename V::Acc acc;
    V::acc_zero(acc);
    for (; i + V::kWidth <= end; i += V::kWidth) {
      const typename V::F x = load<V, D>(grads, i);
      nonfinite += V::count(V::nonfinite(x));
      V::acc_add_squares(acc, x);
    }
    V::acc_lanes(acc, lanes);
  }
  for (; i < end; ++i) {
    const float x = load<ScalarPolicy, D>(grads, i);
    nonfinite += ScalarPolicy::count(ScalarPolicy::nonfinite(x));
    const double d = static_cast<double>(x);
    lanes[(i - begin) % 8] += d * d;
  }
  double sum = 0;
  for (double lane : lanes) sum += lane;
  *block_sum = sum;
  return nonfinite;
}

// kInterleave whole blocks at once, one accumulator each: the same additions in
// the same order per block as stats_block, without one long chain of dependent
// double adds limiting the pass to less than memory speed.
template <class V, DType D>
size_t stats_blocks_interleaved(const void* grads, size_t first_block, double* block_sums) {
  constexpr size_t kInterleave = 4;
  typename V::Acc acc[kInterleave];
  for (typename V::Acc& a : acc) V::acc_zero(a);
  size_t nonfinite = 0;
  const size_t base = first_block * kSumSquaresBlock;
  for (size_t i = 0; i < kSumSquaresBlock; i += V::kWidth) {
    for (size_t k = 0; k < kInterleave; ++k) {
      prefetch<D>(grads, base + (k + kInterleave) * kSumSquaresBlock + i);
      const typename V::F x = load<V, D>(grads, base + k * kSumSquaresBlock + i);
      nonfinite += V::count(V::nonfinite(x));
      V::acc_add_squares(acc[k], x);
    }
  }
  for (size_t k = 0; k < kInterleave; ++k) {
    double lanes[8];
    V::acc_lanes(acc[k], lanes);
    double sum = 0;
    for (double lane : lanes) sum += lane;
    block_sums[first_block + k] = sum;
  }
  return nonfinite;
}

template <class V>
size_t stats_kernel(const void* grads, DType dtype, size_t n, size_t block_begin, size_t block_end,
                    double* block_sums) {
  return with_dtype(dtype, [&](auto d) {
    constexpr DType kD = decltype(d)::value;
    size_t nonfinite = 0;
    size_t blk = block_begin;
    if constexpr (!std::is_same_v<V, ScalarPolicy>) {
      static_assert(kSumSquaresBlock % V::kWidth == 0);
      const size_t full_blocks = n / kSumSquaresBlock;
      for (; blk + 4 <= block_end && blk + 4 <= full_blocks; blk += 4) {
        nonfinite += stats_blocks_interleaved<V, kD>(grads, blk, block_sums);
      }
    }
    for (; blk < block_end; ++blk) {
      const size_t begin = blk * kSumSquaresBlock;
      const size_t end = begin + kSumSquaresBlock < n ? begin + kSumSquaresBlock : n;
      nonfinite += stats_block<V, kD>(grads, begin, end, &block_sums[blk]);
    }
    return nonfinite;
  });
}

template <class V, DType S, DType D>
void convert_range(const void* src, void* dst, float scale, size_t i, size_t end) {
  const typename V::F s = V::set1(scale);
  for (; i + V::kWidth <= end; i += V::kWidth) store<V, D>(dst, i, V::mul(load<V, S>(src, i), s));
  if constexpr (!std::is_same_v<V, ScalarPolicy>) {
    convert_range<ScalarPolicy, S, D>(src, dst, scale, i, end);
  }
}

template <class V>
void convert_kernel(const void* src, DType src_dtype, void* dst, DType dst_dtype, float scale,
                    size_t begin, size_t end) {
  with_dtype(src_dtype, [&](auto s) {
    with_dtype(dst_dtype, [&](auto d) {
      convert_range<V, decltype(s)::value, decltype(d)::value>(src, dst, scale, begin, end);
    });
  });
}

template <class V>
void axpy_kernel(float* a, const float* b, float s, size_t i, size_t end) {
  const typename V::F sv = V::set1(s);
  for (; i + V::kWidth <= end; i += V::kWidth) {
    V::store_f32(a + i, V::add(V::load_f32(a + i), V::mul(sv, V::load_f32(b + i))));
  }
  if constexpr (!std::is_same_v<V, ScalarPolicy>) axpy_kernel<ScalarPolicy>(a, b, s, i, end);
}

template <class V>
const KernelTable* kernel_table() {
  static const KernelTable table{&step_kernel<V>, &stats_kernel<V>, &convert_kernel<V>,
                                 &axpy_kernel<V>};
  return &table;
}

}  // namespace
}  // namespace dsinf::kernels::cpu::adam_detail
