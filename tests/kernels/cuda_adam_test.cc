// The CUDA fused Adam against the CPU scalar path bit for bit (every dtype
// combination, aligned and misaligned chunks, non-finite gradients), its
// gradient statistics against the CPU's, and its argument checking. Every test
// skips when there is no CUDA device (or no driver).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/adam.h"
#include "kernels/cpu/half.h"
#include "kernels/cuda/adam.h"

namespace dsinf::kernels::cpu {
// Readable test parameters in gtest's output.
void PrintTo(DType d, std::ostream* os) { *os << dtype_name(d); }
}  // namespace dsinf::kernels::cpu

namespace dsinf::kernels::cuda {
namespace {

using cpu::AdamBuffers;
using cpu::DType;

constexpr size_t kSizes[] = {1, 3, 17, 1000, 65537, (size_t{1} << 20) + 5};
constexpr DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      GTEST_SKIP() << "no CUDA device: " << cudaGetErrorName(err) << ": "
                   << cudaGetErrorString(err);
    }
    if (count == 0) GTEST_SKIP() << "no CUDA device: cudaGetDeviceCount returned 0";
  }
};

// Values stored as `dtype`, as raw bytes so comparisons are bitwise.
struct HostArray {
  DType dtype = DType::kF32;
  std::vector<uint8_t> bytes;

  static HostArray make(DType d, size_t n) {
    return {d, std::vector<uint8_t>(n * cpu::dtype_bytes(d))};
  }
  void* data() { return bytes.empty() ? nullptr : bytes.data(); }
  void set(size_t i, float x) {
    if (dtype == DType::kF32) {
      std::memcpy(&bytes[4 * i], &x, 4);
    } else {
      const uint16_t h = dtype == DType::kBF16 ? cpu::float_to_bf16(x) : cpu::float_to_f16(x);
      std::memcpy(&bytes[2 * i], &h, 2);
    }
  }
  uint32_t bits(size_t i) const {
    uint32_t b = 0;
    std::memcpy(&b, &bytes[cpu::dtype_bytes(dtype) * i], cpu::dtype_bytes(dtype));
    return b;
  }
};

struct Problem {
  size_t n = 0;
  HostArray params, grads, m, v, copy;  // copy.bytes empty: no copy

  AdamBuffers buffers() {
    return {n,
            reinterpret_cast<float*>(params.data()),
            grads.data(),
            grads.dtype,
            m.data(),
            v.data(),
            m.dtype,
            copy.data(),
            copy.dtype};
  }
};

// Moments as after a few steps; a few weights that exercise the conversions'
// edges (fp32 subnormal: bf16 flushes it; fp16 subnormal; fp16 overflow).
Problem make_problem(size_t n, DType grad, DType state, std::optional<DType> copy, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Problem p{n,
            HostArray::make(DType::kF32, n),
            HostArray::make(grad, n),
            HostArray::make(state, n),
            HostArray::make(state, n),
            HostArray::make(copy.value_or(DType::kF32), copy ? n : 0)};
  for (size_t i = 0; i < n; ++i) {
    p.params.set(i, 0.05f * normal(rng));
    p.grads.set(i, (grad == DType::kF16 ? 1024.0f : 1.0f) * 1e-2f * normal(rng));
    const float g = 1e-2f * normal(rng);
    p.m.set(i, 0.5f * g);
    p.v.set(i, 0.3f * g * g + 1e-7f);
  }
  const float edges[] = {1e-40f, -3e-6f, 7e4f};
  for (size_t k = 0; k < 3 && k + 1 < n; ++k) p.params.set(k + 1, edges[k]);
  return p;
}

AdamHyper make_hyper(bool adam_w_mode, int64_t step, bool bias_correction, DType grad) {
  AdamHyper h;
  h.lr = 3e-3f;
  h.weight_decay = 0.1f;
  h.adam_w_mode = adam_w_mode;
  h.bias_correction = bias_correction;
  h.step = step;
  h.grad_scale = (grad == DType::kF16 ? 1.0f / 1024.0f : 1.0f) * 0.75f;  // unscale x clip
  return h;
}

// Device memory holding a host array at an element offset from a 256-byte aligned allocation.
class DeviceArray {
 public:
  DeviceArray(const HostArray& host, size_t offset_elements)
      : offset_(offset_elements * cpu::dtype_bytes(host.dtype)), bytes_(host.bytes.size()) {
    if (bytes_ == 0) return;
    EXPECT_EQ(cudaMalloc(&base_, offset_ + bytes_), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(get(), host.bytes.data(), bytes_, cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceArray() { cudaFree(base_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  void* get() const { return bytes_ == 0 ? nullptr : static_cast<char*>(base_) + offset_; }
  void download(HostArray& host) const {
    if (bytes_ != 0) {
      EXPECT_EQ(cudaMemcpy(host.bytes.data(), get(), bytes_, cudaMemcpyDeviceToHost), cudaSuccess);
    }
  }

 private:
  void* base_ = nullptr;
  size_t offset_, bytes_;
};

// A device counter, zeroed.
struct DeviceCounter {
  unsigned long long* ptr = nullptr;
  DeviceCounter() {
    EXPECT_EQ(cudaMalloc(&ptr, sizeof(*ptr)), cudaSuccess);
    EXPECT_TRUE(reset_counter(ptr, nullptr).ok());
  }
  ~DeviceCounter() { cudaFree(ptr); }
};

struct Offsets {
  size_t params = 0, grads = 0, m = 0, v = 0, copy = 0;
};

// Runs the step on the device on a copy of `io` and writes the results back into it.
uint64_t step_on_device(Problem& io, const AdamHyper& h, Offsets off = {}) {
  DeviceArray params(io.params, off.params), grads(io.grads, off.grads), m(io.m, off.m),
      v(io.v, off.v), copy(io.copy, off.copy);
  DeviceCounter counter;
  const AdamBuffers b{io.n,         static_cast<float*>(params.get()),
                      grads.get(),  io.grads.dtype,
                      m.get(),      v.get(),
                      io.m.dtype,   copy.get(),
                      io.copy.dtype};
  const absl::Status status = fused_adam_step(b, h, nullptr, counter.ptr);
  EXPECT_TRUE(status.ok()) << status;
  const absl::StatusOr<uint64_t> nonfinite = read_counter(counter.ptr, nullptr);
  EXPECT_TRUE(nonfinite.ok()) << nonfinite.status();
  params.download(io.params);
  m.download(io.m);
  v.download(io.v);
  copy.download(io.copy);
  return nonfinite.value_or(~uint64_t{0});
}

void expect_bits_equal(const HostArray& cpu, const HostArray& gpu, const char* what) {
  ASSERT_EQ(cpu.bytes.size(), gpu.bytes.size());
  if (cpu.bytes == gpu.bytes) return;
  const size_t n = cpu.bytes.size() / cpu::dtype_bytes(cpu.dtype);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(cpu.bits(i), gpu.bits(i)) << what << " differs first at element " << i;
  }
}

void expect_same_as_cpu(const Problem& in, const AdamHyper& h, Offsets off,
                        const std::vector<size_t>& bad_positions) {
  Problem cpu_out = in, gpu_out = in;
  const size_t cpu_bad = cpu::fused_adam_step(cpu_out.buffers(), h, cpu::Isa::kScalar);
  const uint64_t gpu_bad = step_on_device(gpu_out, h, off);
  EXPECT_EQ(cpu_bad, bad_positions.size());
  EXPECT_EQ(gpu_bad, bad_positions.size());
  expect_bits_equal(cpu_out.params, gpu_out.params, "params");
  expect_bits_equal(cpu_out.m, gpu_out.m, "m");
  expect_bits_equal(cpu_out.v, gpu_out.v, "v");
  expect_bits_equal(cpu_out.copy, gpu_out.copy, "params_copy");
  // A non-finite gradient leaves its element as it was; its copy is the old weight.
  for (size_t i : bad_positions) {
    EXPECT_EQ(gpu_out.params.bits(i), in.params.bits(i)) << "element " << i;
    EXPECT_EQ(gpu_out.m.bits(i), in.m.bits(i)) << "element " << i;
    EXPECT_EQ(gpu_out.v.bits(i), in.v.bits(i)) << "element " << i;
    if (!in.copy.bytes.empty()) {
      HostArray expected = HostArray::make(in.copy.dtype, 1);
      float p;
      std::memcpy(&p, &in.params.bytes[4 * i], 4);
      expected.set(0, p);
      EXPECT_EQ(gpu_out.copy.bits(i), expected.bits(0)) << "element " << i;
    }
  }
}

// inf, -inf and NaN at the first, middle and last element (fewer when n is small).
std::vector<size_t> inject_nonfinite(HostArray& grads, size_t n) {
  const float bad[] = {std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity(),
                       std::numeric_limits<float>::quiet_NaN()};
  std::vector<size_t> positions;
  for (size_t i : {size_t{0}, n / 2, n - 1}) {
    if (positions.empty() || positions.back() != i) positions.push_back(i);
  }
  for (size_t k = 0; k < positions.size(); ++k) grads.set(positions[k], bad[k]);
  return positions;
}

// grad dtype, moment dtype, copy dtype (none: nullopt), AdamW.
using Combo = std::tuple<DType, DType, std::optional<DType>, bool>;

class CudaAdamCombo : public CudaTest, public ::testing::WithParamInterface<Combo> {};

TEST_P(CudaAdamCombo, BitIdenticalToCpuScalarPath) {
  const auto [grad, state, copy, adamw] = GetParam();
  for (size_t k = 0; k < std::size(kSizes); ++k) {
    const size_t n = kSizes[k];
    SCOPED_TRACE("n=" + std::to_string(n));
    const AdamHyper h = make_hyper(adamw, static_cast<int64_t>(k + 1), k % 2 == 0, grad);
    Problem in = make_problem(n, grad, state, copy, static_cast<uint32_t>(n));
    expect_same_as_cpu(in, h, {}, {});
    const std::vector<size_t> bad = inject_nonfinite(in.grads, n);
    expect_same_as_cpu(in, h, {}, bad);
  }
}

std::string combo_name(const ::testing::TestParamInfo<Combo>& info) {
  const auto [grad, state, copy, adamw] = info.param;
  return std::string("grad_") + cpu::dtype_name(grad) + "_moments_" + cpu::dtype_name(state) +
         "_copy_" + (copy ? cpu::dtype_name(*copy) : "none") + (adamw ? "_adamw" : "_l2");
}

INSTANTIATE_TEST_SUITE_P(
    AllDtypes, CudaAdamCombo,
    ::testing::Combine(::testing::ValuesIn(kDTypes), ::testing::Values(DType::kF32, DType::kBF16),
                       ::testing::Values(std::optional<DType>(), std::optional(DType::kBF16),
                                         std::optional(DType::kF16), std::optional(DType::kF32)),
                       ::testing::Bool()),
    combo_name);

using CudaAdam = CudaTest;

// Chunks cut at odd offsets: the vector part starts after a scalar head when all
// arrays are misaligned alike, and everything runs scalar when they differ.
TEST_F(CudaAdam, MisalignedChunksMatchCpu) {
  for (DType d : {DType::kF32, DType::kBF16}) {
    for (const Offsets off : {Offsets{1, 1, 1, 1, 1}, Offsets{3, 3, 3, 3, 3},
                              Offsets{0, 1, 0, 0, 0}, Offsets{2, 2, 2, 2, 1}}) {
      for (size_t n : {size_t{5}, size_t{1000}, size_t{65537}}) {
        SCOPED_TRACE(std::string(cpu::dtype_name(d)) + " n=" + std::to_string(n) +
                     " params offset " + std::to_string(off.params) + " grads offset " +
                     std::to_string(off.grads));
        Problem in = make_problem(n, d, d, d, 7);
        const std::vector<size_t> bad = inject_nonfinite(in.grads, n);
        expect_same_as_cpu(in, make_hyper(true, 3, true, d), off, bad);
      }
    }
  }
}

TEST_F(CudaAdam, GradStatsMatchCpu) {
  DeviceGradStats* stats = nullptr;
  ASSERT_EQ(cudaMalloc(&stats, sizeof(DeviceGradStats)), cudaSuccess);
  for (DType d : kDTypes) {
    for (size_t n : kSizes) {
      for (bool with_bad : {false, true}) {
        SCOPED_TRACE(std::string(cpu::dtype_name(d)) + " n=" + std::to_string(n) +
                     (with_bad ? " with non-finite" : ""));
        Problem in = make_problem(n, d, DType::kF32, std::nullopt, static_cast<uint32_t>(n + 1));
        const size_t bad = with_bad ? inject_nonfinite(in.grads, n).size() : 0;
        const cpu::GradStats want = cpu::grad_stats(in.grads.data(), d, n, cpu::Isa::kScalar);
        DeviceArray grads(in.grads, 0);
        ASSERT_TRUE(reset_grad_stats(stats, nullptr).ok());
        ASSERT_TRUE(grad_stats(grads.get(), d, n, nullptr, stats).ok());
        const absl::StatusOr<cpu::GradStats> got = read_grad_stats(stats, nullptr);
        ASSERT_TRUE(got.ok()) << got.status();
        EXPECT_EQ(got->nonfinite, bad);
        EXPECT_EQ(want.nonfinite, bad);
        if (with_bad) {
          EXPECT_FALSE(std::isfinite(got->sum_squares));
          continue;
        }
        EXPECT_NEAR(got->sum_squares, want.sum_squares, 1e-12 * want.sum_squares);
        // A second chunk accumulates, in the same order: exactly twice the first.
        ASSERT_TRUE(grad_stats(grads.get(), d, n, nullptr, stats).ok());
        const absl::StatusOr<cpu::GradStats> twice = read_grad_stats(stats, nullptr);
        ASSERT_TRUE(twice.ok()) << twice.status();
        EXPECT_EQ(twice->sum_squares, 2 * got->sum_squares);
        EXPECT_EQ(twice->nonfinite, 0u);
      }
    }
  }
  cudaFree(stats);
}

TEST_F(CudaAdam, EmptyAndBadArguments) {
  const AdamHyper h = make_hyper(true, 1, true, DType::kF32);
  DeviceCounter counter;
  // n == 0 is a no-op, whatever the pointers.
  EXPECT_TRUE(fused_adam_step(AdamBuffers{}, h, nullptr, counter.ptr).ok());
  EXPECT_TRUE(grad_stats(nullptr, DType::kF32, 0, nullptr, nullptr).ok());

  Problem in = make_problem(100, DType::kF32, DType::kF32, std::nullopt, 1);
  AdamBuffers host = in.buffers();  // pageable host memory: rejected before any launch
  EXPECT_EQ(fused_adam_step(host, h, nullptr, counter.ptr).code(),
            absl::StatusCode::kInvalidArgument);
  AdamBuffers null_grads = host;
  null_grads.grads = nullptr;
  EXPECT_EQ(fused_adam_step(null_grads, h, nullptr, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  DeviceGradStats* stats = nullptr;
  ASSERT_EQ(cudaMalloc(&stats, sizeof(DeviceGradStats)), cudaSuccess);
  EXPECT_EQ(grad_stats(in.grads.data(), DType::kF32, 100, nullptr, stats).code(),
            absl::StatusCode::kInvalidArgument);
  cudaFree(stats);

  // Bad hyperparameters and dtypes.
  DeviceArray p(in.params, 0), g(in.grads, 0), m(in.m, 0), v(in.v, 0);
  AdamBuffers dev{100,        static_cast<float*>(p.get()), g.get(), DType::kF32, m.get(), v.get(),
                  DType::kF32};
  AdamHyper step0 = h;
  step0.step = 0;
  EXPECT_EQ(fused_adam_step(dev, step0, nullptr, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  AdamBuffers f16_moments = dev;
  f16_moments.state_dtype = DType::kF16;
  EXPECT_EQ(fused_adam_step(f16_moments, h, nullptr, nullptr).code(),
            absl::StatusCode::kInvalidArgument);

  // Nothing above launched or left an error behind: the context still works.
  EXPECT_TRUE(fused_adam_step(dev, h, nullptr, counter.ptr).ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  const absl::StatusOr<uint64_t> bad = read_counter(counter.ptr, nullptr);
  ASSERT_TRUE(bad.ok()) << bad.status();
  EXPECT_EQ(*bad, 0u);
}

}  // namespace
}  // namespace dsinf::kernels::cuda
