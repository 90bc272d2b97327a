// The CUDA backend (kernels/cuda/cuda_backend.cc) through the Backend
// interface: every op against the CPU backend on the same random inputs, and
// the backend's own mechanics (arena budget and stats, zero fill, streams and
// events, sticky errors, host memory, the copy ceiling). Every test skips when
// there is no CUDA driver or device.
//
// Op comparisons: every output an op overwrites is poisoned first (NaN bytes,
// so an element the GPU never writes fails), "+=" outputs start from the same
// random contents on both backends, and the error is normalised:
//   max_i |gpu_i - cpu_i| / max(max_i |cpu_i|, 1e-30)   (non-finite: infinite).
// Tolerances: fp32 ops differ from the CPU only in summation order and in a
// few ulp of expf/tanhf: 1e-5 (the reductions here are over <= 1024 terms of
// random sign, whose rounding error is ~sqrt(K) * 6e-8 relative to the
// result's scale). Ops doing one IEEE operation per element (encoder
// forward, residual, scale) must agree bit for bit. attention_backward in fp32
// gets 1e-4: three chained products and a softmax backward whose subtraction
// (datt - sum(att * datt)) cancels, which magnifies the orders' differences.
// Reduced precision (bf16/fp16 operands, fp32 accumulation): the CPU rounds
// every product operand as the GPU does (matmuls, and attention's q, k, v,
// dout, att and softmax gradient), and the attention inputs here are also
// made representable in the reduced type. Both round the same values only
// where their fp32 intermediates agree to the last bit, so an operand that
// falls near a rounding boundary can round one way on each: 1e-2 (bf16 keeps
// 8 bits, ~4e-3 relative per operand), 2e-2 for attention_backward, which
// rounds twice in a chain.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cpu/half.h"
#include "kernels/cuda/ops.h"

namespace dsinf::kernels {
// Readable test parameters in gtest's output.
void PrintTo(Precision p, std::ostream* os) { *os << precision_name(p); }

namespace {

constexpr size_t kBudget = size_t{512} << 20;
constexpr size_t kPage = 4096;

// ------------------------------------------------------------- helpers --

std::vector<float> normal(size_t n, std::mt19937& rng, float scale = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = mean + scale * dist(rng);
  return v;
}

std::vector<int32_t> tokens(size_t n, int limit, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> dist(0, limit - 1);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = dist(rng);
  return v;
}

// All-ones bytes: a NaN, so an element an op fails to write shows.
std::vector<float> poison(size_t n) {
  return std::vector<float>(n, std::bit_cast<float>(uint32_t{0xFFFFFFFFu}));
}

// The values a tensor core multiplies when the operands are `p`.
std::vector<float> representable(Precision p, std::vector<float> v) {
  for (float& x : v) {
    if (p == Precision::kBf16) x = cpu::bf16_to_float(cpu::float_to_bf16(x));
    if (p == Precision::kFp16) x = cpu::f16_to_float(cpu::float_to_f16(x));
  }
  return v;
}

// Copies through the backend's compute stream and waits (the sticky error of
// an earlier op shows here).
template <typename T>
std::vector<T> download(Backend& backend, const T* device, size_t n) {
  std::vector<T> host(n);
  absl::Status s = backend.copy_to_host(host.data(), device, n * sizeof(T), Stream::kCompute);
  if (s.ok()) s = backend.synchronize(Stream::kCompute);
  EXPECT_TRUE(s.ok()) << backend.name() << ": " << s;
  return host;
}

template <typename T>
T* upload(Backend& backend, const std::vector<T>& host) {
  absl::StatusOr<void*> ptr = backend.allocate(host.size() * sizeof(T));
  if (!ptr.ok()) {
    ADD_FAILURE() << backend.name() << ": " << ptr.status();
    std::abort();  // ops on a null tensor would crash the CPU backend less readably
  }
  absl::Status s =
      backend.copy_to_device(*ptr, host.data(), host.size() * sizeof(T), Stream::kCompute);
  if (s.ok()) s = backend.synchronize(Stream::kCompute);
  EXPECT_TRUE(s.ok()) << backend.name() << ": " << s;
  return static_cast<T*>(*ptr);
}

// One tensor with the same contents on the GPU and the CPU backend.
template <typename T>
class Twin {
 public:
  Twin(Backend& gpu, Backend& cpu, const std::vector<T>& values)
      : gpu_(gpu), cpu_(cpu), n_(values.size()), g_(upload(gpu, values)), c_(upload(cpu, values)) {}
  ~Twin() {
    gpu_.release(g_);
    cpu_.release(c_);
  }
  Twin(const Twin&) = delete;
  Twin& operator=(const Twin&) = delete;

  T* g() const { return g_; }
  T* c() const { return c_; }
  size_t size() const { return n_; }
  std::vector<T> gpu_values() const { return download(gpu_, g_, n_); }
  std::vector<T> cpu_values() const { return download(cpu_, c_, n_); }

 private:
  Backend& gpu_;
  Backend& cpu_;
  size_t n_;
  T* g_;
  T* c_;
};

// max|got - ref| / max(max|ref|, tiny); infinite if either holds inf or NaN.
double normalized_error(const std::vector<float>& got, const std::vector<float>& ref,
                        size_t* worst) {
  *worst = 0;
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) {
      *worst = i;
      return std::numeric_limits<double>::infinity();
    }
    const double diff = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (diff > max_diff) {
      max_diff = diff;
      *worst = i;
    }
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[i])));
  }
  return max_diff / std::max(max_ref, 1e-30);
}

void expect_close(const Twin<float>& t, double tolerance, const std::string& what) {
  const std::vector<float> got = t.gpu_values();
  const std::vector<float> ref = t.cpu_values();
  size_t worst = 0;
  const double err = normalized_error(got, ref, &worst);
  EXPECT_LE(err, tolerance) << what << ": normalised max error " << err << " at [" << worst
                            << "]: gpu " << (worst < got.size() ? got[worst] : 0.0f) << " cpu "
                            << (worst < ref.size() ? ref[worst] : 0.0f);
}

void expect_bits_equal(const Twin<float>& t, const std::string& what) {
  const std::vector<float> got = t.gpu_values();
  const std::vector<float> ref = t.cpu_values();
  ASSERT_EQ(got.size(), ref.size());
  size_t mismatches = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(ref[i])) {
      if (mismatches++ == 0) first = i;
    }
  }
  EXPECT_EQ(mismatches, 0u) << what << ": first at [" << first << "]: gpu " << got[first] << " cpu "
                            << ref[first];
}

// ------------------------------------------------------------ fixtures --

// A CUDA backend and a CPU backend with the same matmul precision; skips when
// CUDA has no device.
class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override { open(Precision::kFp32); }

  void open(Precision precision, size_t attention_scratch_bytes = size_t{16} << 20) {
    BackendOptions options;
    options.device_budget_bytes = kBudget;
    options.matmul_precision = precision;
    options.attention_scratch_bytes = attention_scratch_bytes;
    absl::StatusOr<std::unique_ptr<Backend>> gpu = make_cuda_backend(options);
    if (gpu.status().code() == absl::StatusCode::kUnavailable) {
      GTEST_SKIP() << "no CUDA device: " << gpu.status();
    }
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    gpu_ = *std::move(gpu);
    options.device_budget_bytes = 0;
    cpu_ = make_cpu_backend(options);
  }

  Backend& gpu() { return *gpu_; }
  Backend& cpu() { return *cpu_; }

  template <typename T>
  std::unique_ptr<Twin<T>> twin(const std::vector<T>& values) {
    return std::make_unique<Twin<T>>(*gpu_, *cpu_, values);
  }

  std::unique_ptr<Backend> gpu_, cpu_;
};

// Skips unless device 0 exists; for the tests that make their own backends.
#define SKIP_WITHOUT_DEVICE()                                      \
  do {                                                             \
    absl::StatusOr<CudaDeviceInfo> info_ = cuda_device_info(0);    \
    if (info_.status().code() == absl::StatusCode::kUnavailable) { \
      GTEST_SKIP() << "no CUDA device: " << info_.status();        \
    }                                                              \
    ASSERT_TRUE(info_.ok()) << info_.status();                     \
  } while (0)

// ----------------------------------------------------------------- ops --

struct EncoderShape {
  int B, T, C, V;
};
// C = 300: more than one block of channels in encoder_backward's dwte kernel.
constexpr EncoderShape kEncoderShapes[] = {{2, 64, 96, 1000}, {3, 7, 33, 50}, {2, 5, 300, 40}};

TEST_F(CudaBackendTest, EncoderForwardIsBitIdentical) {
  std::mt19937 rng(1);
  for (const EncoderShape& s : kEncoderShapes) {
    const size_t BT = static_cast<size_t>(s.B) * s.T;
    auto inp = twin(tokens(BT, s.V, rng));
    auto wte = twin(normal(static_cast<size_t>(s.V) * s.C, rng));
    auto wpe = twin(normal(static_cast<size_t>(s.T) * s.C, rng));
    auto out = twin(poison(BT * s.C));
    gpu().encoder_forward(out->g(), inp->g(), wte->g(), wpe->g(), s.B, s.T, s.C);
    cpu().encoder_forward(out->c(), inp->c(), wte->c(), wpe->c(), s.B, s.T, s.C);
    expect_bits_equal(*out, "encoder_forward out");
  }
}

TEST_F(CudaBackendTest, EncoderBackwardWithRepeatedTokens) {
  std::mt19937 rng(2);
  for (const EncoderShape& s : kEncoderShapes) {
    for (int distinct : {1, 8, s.V}) {  // every token the same, many repeats, spread out
      const size_t BT = static_cast<size_t>(s.B) * s.T;
      auto inp = twin(tokens(BT, distinct, rng));
      auto dout = twin(normal(BT * s.C, rng));
      auto dwte = twin(normal(static_cast<size_t>(s.V) * s.C, rng));
      auto dwpe = twin(normal(static_cast<size_t>(s.T) * s.C, rng));
      gpu().encoder_backward(dwte->g(), dwpe->g(), dout->g(), inp->g(), s.B, s.T, s.C);
      cpu().encoder_backward(dwte->c(), dwpe->c(), dout->c(), inp->c(), s.B, s.T, s.C);
      const std::string what = "C=" + std::to_string(s.C) + " distinct=" + std::to_string(distinct);
      expect_close(*dwte, 1e-5, "encoder_backward dwte " + what);
      expect_close(*dwpe, 1e-5, "encoder_backward dwpe " + what);
    }
  }
}

struct RowsShape {
  int N, C;
};
constexpr RowsShape kRowShapes[] = {{128, 96}, {37, 33}, {5, 1029}};

TEST_F(CudaBackendTest, LayerNormForward) {
  std::mt19937 rng(3);
  for (const RowsShape& s : kRowShapes) {
    const size_t NC = static_cast<size_t>(s.N) * s.C;
    auto inp = twin(normal(NC, rng, 2.0f, 0.5f));
    auto weight = twin(normal(s.C, rng, 0.2f, 1.0f));
    auto bias = twin(normal(s.C, rng, 0.2f));
    auto out = twin(poison(NC));
    auto mean = twin(poison(s.N));
    auto rstd = twin(poison(s.N));
    gpu().layernorm_forward(out->g(), mean->g(), rstd->g(), inp->g(), weight->g(), bias->g(), s.N,
                            s.C);
    cpu().layernorm_forward(out->c(), mean->c(), rstd->c(), inp->c(), weight->c(), bias->c(), s.N,
                            s.C);
    const std::string what = " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C);
    expect_close(*out, 1e-5, "layernorm_forward out" + what);
    expect_close(*mean, 1e-5, "layernorm_forward mean" + what);
    expect_close(*rstd, 1e-5, "layernorm_forward rstd" + what);
  }
}

TEST_F(CudaBackendTest, LayerNormBackward) {
  std::mt19937 rng(4);
  for (const RowsShape& s : kRowShapes) {
    const size_t NC = static_cast<size_t>(s.N) * s.C;
    auto inp = twin(normal(NC, rng, 2.0f, 0.5f));
    auto weight = twin(normal(s.C, rng, 0.2f, 1.0f));
    auto bias = twin(normal(s.C, rng, 0.2f));
    // mean and rstd as the CPU forward saves them, the same on both.
    auto out = twin(poison(NC));
    auto mean = twin(poison(s.N));
    auto rstd = twin(poison(s.N));
    cpu().layernorm_forward(out->c(), mean->c(), rstd->c(), inp->c(), weight->c(), bias->c(), s.N,
                            s.C);
    auto saved_mean = twin(mean->cpu_values());
    auto saved_rstd = twin(rstd->cpu_values());
    auto dout = twin(normal(NC, rng));
    auto dinp = twin(normal(NC, rng));
    auto dweight = twin(normal(s.C, rng));
    auto dbias = twin(normal(s.C, rng));
    gpu().layernorm_backward(dinp->g(), dweight->g(), dbias->g(), dout->g(), inp->g(), weight->g(),
                             saved_mean->g(), saved_rstd->g(), s.N, s.C);
    cpu().layernorm_backward(dinp->c(), dweight->c(), dbias->c(), dout->c(), inp->c(), weight->c(),
                             saved_mean->c(), saved_rstd->c(), s.N, s.C);
    const std::string what = " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C);
    expect_close(*dinp, 1e-5, "layernorm_backward dinp" + what);
    expect_close(*dweight, 1e-5, "layernorm_backward dweight" + what);
    expect_close(*dbias, 1e-5, "layernorm_backward dbias" + what);
  }
}

constexpr size_t kElementwiseSizes[] = {12345, 4099, 1};

TEST_F(CudaBackendTest, GeluForwardAndBackward) {
  std::mt19937 rng(5);
  for (size_t n : kElementwiseSizes) {
    auto inp = twin(normal(n, rng, 2.0f));
    auto out = twin(poison(n));
    gpu().gelu_forward(out->g(), inp->g(), n);
    cpu().gelu_forward(out->c(), inp->c(), n);
    expect_close(*out, 1e-5, "gelu_forward n=" + std::to_string(n));

    auto dout = twin(normal(n, rng));
    auto dinp = twin(normal(n, rng));
    gpu().gelu_backward(dinp->g(), inp->g(), dout->g(), n);
    cpu().gelu_backward(dinp->c(), inp->c(), dout->c(), n);
    expect_close(*dinp, 1e-5, "gelu_backward n=" + std::to_string(n));
  }
}

TEST_F(CudaBackendTest, ResidualForwardIsBitIdenticalAlsoInPlace) {
  std::mt19937 rng(6);
  for (size_t n : kElementwiseSizes) {
    auto a = twin(normal(n, rng));
    auto b = twin(normal(n, rng));
    auto out = twin(poison(n));
    gpu().residual_forward(out->g(), a->g(), b->g(), n);
    cpu().residual_forward(out->c(), a->c(), b->c(), n);
    expect_bits_equal(*out, "residual_forward n=" + std::to_string(n));
    // out aliasing a, then b.
    gpu().residual_forward(a->g(), a->g(), b->g(), n);
    cpu().residual_forward(a->c(), a->c(), b->c(), n);
    expect_bits_equal(*a, "residual_forward out=a n=" + std::to_string(n));
    gpu().residual_forward(b->g(), a->g(), b->g(), n);
    cpu().residual_forward(b->c(), a->c(), b->c(), n);
    expect_bits_equal(*b, "residual_forward out=b n=" + std::to_string(n));
  }
}

TEST_F(CudaBackendTest, ScaleIsBitIdentical) {
  std::mt19937 rng(7);
  for (size_t n : kElementwiseSizes) {
    auto x = twin(normal(n, rng));
    gpu().scale(x->g(), 0.37f, n);
    cpu().scale(x->c(), 0.37f, n);
    expect_bits_equal(*x, "scale n=" + std::to_string(n));
  }
}

TEST_F(CudaBackendTest, DropoutScaleIsBitIdenticalAlsoInPlace) {
  std::mt19937 rng(8);
  for (size_t n : kElementwiseSizes) {
    for (float p : {0.0f, 0.1f, 0.5f}) {
      auto in = twin(normal(n, rng));
      auto out = twin(poison(n));
      gpu().dropout_scale(out->g(), in->g(), n, 1.0f / (1.0f - p), p, 1234 + n);
      cpu().dropout_scale(out->c(), in->c(), n, 1.0f / (1.0f - p), p, 1234 + n);
      expect_bits_equal(*out, "dropout_scale n=" + std::to_string(n));
      gpu().dropout_scale(in->g(), in->g(), n, 3.0f, p, 99);
      cpu().dropout_scale(in->c(), in->c(), n, 3.0f, p, 99);
      expect_bits_equal(*in, "dropout_scale in place n=" + std::to_string(n));
    }
  }
}

struct CrossEntropyShape {
  int N, V;
};

TEST_F(CudaBackendTest, SoftmaxCrossEntropySeparateAliasedAndWithoutGradient) {
  std::mt19937 rng(8);
  for (const CrossEntropyShape& s : {CrossEntropyShape{128, 1000}, CrossEntropyShape{5, 77}}) {
    const size_t NV = static_cast<size_t>(s.N) * s.V;
    const float dloss = 1.0f / static_cast<float>(s.N);
    const std::string what = " N=" + std::to_string(s.N) + " V=" + std::to_string(s.V);
    auto targets = twin(tokens(s.N, s.V, rng));
    const std::vector<float> logits_values = normal(NV, rng, 3.0f);

    // dlogits separate from logits.
    auto logits = twin(logits_values);
    auto losses = twin(poison(s.N));
    auto dlogits = twin(poison(NV));
    gpu().softmax_crossentropy(losses->g(), dlogits->g(), logits->g(), targets->g(), s.N, s.V,
                               dloss);
    cpu().softmax_crossentropy(losses->c(), dlogits->c(), logits->c(), targets->c(), s.N, s.V,
                               dloss);
    expect_close(*losses, 1e-5, "softmax_crossentropy losses" + what);
    expect_close(*dlogits, 1e-5, "softmax_crossentropy dlogits" + what);
    expect_bits_equal(*logits, "softmax_crossentropy left logits alone" + what);

    // dlogits aliasing logits: the gradient replaces the logits.
    auto in_place = twin(logits_values);
    auto losses2 = twin(poison(s.N));
    gpu().softmax_crossentropy(losses2->g(), in_place->g(), in_place->g(), targets->g(), s.N, s.V,
                               dloss);
    cpu().softmax_crossentropy(losses2->c(), in_place->c(), in_place->c(), targets->c(), s.N, s.V,
                               dloss);
    expect_close(*losses2, 1e-5, "softmax_crossentropy aliased losses" + what);
    expect_close(*in_place, 1e-5, "softmax_crossentropy aliased dlogits" + what);

    // No gradient.
    auto losses3 = twin(poison(s.N));
    gpu().softmax_crossentropy(losses3->g(), nullptr, logits->g(), targets->g(), s.N, s.V, dloss);
    cpu().softmax_crossentropy(losses3->c(), nullptr, logits->c(), targets->c(), s.N, s.V, dloss);
    expect_close(*losses3, 1e-5, "softmax_crossentropy losses only" + what);
  }
}

// The working-weight conversions round as half.h does: every fp32 value of a
// random sample and the special ones (ties, subnormals, overflow, NaN) gives
// the CPU backend's bits in bf16 and fp16, widening is exact, and accumulate
// adds once an element.
TEST_F(CudaBackendTest, ConvertAndAccumulateAreBitIdentical) {
  std::mt19937 rng(11);
  std::vector<float> x = normal(4099, rng, 3.0f);
  const std::vector<float> specials = {0.0f, -0.0f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f,
                                       0x1p-130f, -0x1p-140f, 70000.0f, 65520.0f, 65519.0f,
                                       std::numeric_limits<float>::infinity(),
                                       std::numeric_limits<float>::quiet_NaN(), 6e-8f, 3e-8f};
  std::copy(specials.begin(), specials.end(), x.begin());
  const size_t n = x.size();
  for (DType type : {DType::kBF16, DType::kF16}) {
    SCOPED_TRACE(dtype_name(type));
    float* src = upload(*gpu_, x);
    void* mid = *gpu_->allocate(n * 2);
    float* back = static_cast<float*>(*gpu_->allocate(n * 4));
    ASSERT_TRUE(gpu_->convert(src, DType::kF32, mid, type, n, Stream::kCompute).ok());
    // The upload stream's conversion must follow the compute stream's.
    gpu_->stream_wait(Stream::kUpload, gpu_->record(Stream::kCompute));
    ASSERT_TRUE(gpu_->convert(mid, type, back, DType::kF32, n, Stream::kUpload).ok());
    ASSERT_TRUE(gpu_->synchronize(Stream::kUpload).ok());
    std::vector<uint16_t> gpu_half = download(*gpu_, static_cast<const uint16_t*>(mid), n);
    std::vector<float> gpu_back = download(*gpu_, back, n);
    std::vector<uint16_t> cpu_half(n);
    std::vector<float> cpu_back(n);
    ASSERT_TRUE(cpu_->convert(x.data(), DType::kF32, cpu_half.data(), type, n, Stream::kCompute).ok());
    ASSERT_TRUE(cpu_->convert(cpu_half.data(), type, cpu_back.data(), DType::kF32, n,
                              Stream::kCompute).ok());
    EXPECT_EQ(gpu_half, cpu_half);
    EXPECT_EQ(0, std::memcmp(gpu_back.data(), cpu_back.data(), n * 4));
    // accumulate into random fp32 accumulators.
    std::vector<float> acc = normal(n, rng);
    float* acc_dev = upload(*gpu_, acc);
    ASSERT_TRUE(gpu_->accumulate(acc_dev, mid, type, n, Stream::kCompute).ok());
    ASSERT_TRUE(cpu_->accumulate(acc.data(), cpu_half.data(), type, n, Stream::kCompute).ok());
    const std::vector<float> gpu_acc = download(*gpu_, acc_dev, n);
    EXPECT_EQ(0, std::memcmp(gpu_acc.data(), acc.data(), n * 4));
    for (void* p : {static_cast<void*>(src), mid, static_cast<void*>(back),
                    static_cast<void*>(acc_dev)}) {
      gpu_->release(p);
    }
  }
}

TEST_F(CudaBackendTest, SumSquaresMatchesTheCpu) {
  std::mt19937 rng(9);
  for (size_t n : {size_t{1}, size_t{1000}, size_t{12345}, (size_t{1} << 20) + 3}) {
    auto x = twin(normal(n, rng));
    const double got = gpu().sum_squares(x->g(), n);
    const double ref = cpu().sum_squares(x->c(), n);
    // Both sum fp32 squares in double, in different orders: ~1e-15 relative apart.
    EXPECT_LE(std::fabs(got - ref), 1e-12 * ref) << "n=" << n << " gpu " << got << " cpu " << ref;
  }
  auto empty = twin(std::vector<float>(4, 1.0f));
  EXPECT_EQ(gpu().sum_squares(empty->g(), 0), 0.0);
  EXPECT_TRUE(gpu().synchronize(Stream::kCompute).ok());
}

TEST_F(CudaBackendTest, SumSquaresOfNonFiniteInputIsNonFinite) {
  std::mt19937 rng(10);
  const size_t n = 100003;
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    for (size_t at : {size_t{0}, size_t{777}, n - 1}) {
      std::vector<float> values = normal(n, rng);
      values[at] = bad;
      auto x = twin(values);
      const double got = gpu().sum_squares(x->g(), n);
      EXPECT_FALSE(std::isfinite(got)) << bad << " at " << at << ": " << got;
      EXPECT_FALSE(std::isfinite(cpu().sum_squares(x->c(), n)));
    }
  }
  // Not an error: later work and waits are fine.
  EXPECT_TRUE(gpu().synchronize(Stream::kCompute).ok());
}

TEST_F(CudaBackendTest, AdamStepIsBitIdenticalToTheCpu) {
  std::mt19937 rng(11);
  const size_t n = 100003;
  struct Case {
    bool adam_w_mode, bias_correction;
    float weight_decay, grad_scale;
  };
  for (const Case& c : {Case{true, true, 0.1f, 1.0f}, Case{false, true, 0.01f, 0.5f},
                        Case{true, false, 0.0f, 0.75f}}) {
    auto params = twin(normal(n, rng, 0.05f));
    auto m = twin(std::vector<float>(n, 0.0f));
    auto v = twin(std::vector<float>(n, 0.0f));
    for (int64_t step = 1; step <= 3; ++step) {
      auto grads = twin(normal(n, rng, 1e-2f));
      AdamHyper hyper;
      hyper.lr = 3e-3f;
      hyper.weight_decay = c.weight_decay;
      hyper.adam_w_mode = c.adam_w_mode;
      hyper.bias_correction = c.bias_correction;
      hyper.step = step;
      hyper.grad_scale = c.grad_scale;
      gpu().adam_step(params->g(), grads->g(), m->g(), v->g(), n, hyper);
      cpu().adam_step(params->c(), grads->c(), m->c(), v->c(), n, hyper);
      const std::string what = "adam_w=" + std::to_string(c.adam_w_mode) +
                               " bias_correction=" + std::to_string(c.bias_correction) + " step " +
                               std::to_string(step);
      expect_bits_equal(*params, "params " + what);
      expect_bits_equal(*m, "m " + what);
      expect_bits_equal(*v, "v " + what);
    }
  }
}

// ------------------------------------------- products, every precision --

class CudaProductsTest : public CudaBackendTest, public ::testing::WithParamInterface<Precision> {
 protected:
  void SetUp() override { open(GetParam()); }
  double tolerance() const { return GetParam() == Precision::kFp32 ? 1e-5 : 1e-2; }
};

struct MatmulShape {
  int N, C, OC;
  bool bias;
};
constexpr MatmulShape kMatmulShapes[] = {{128, 96, 288, true}, {37, 33, 71, false}};

TEST_P(CudaProductsTest, MatmulForward) {
  std::mt19937 rng(12);
  for (const MatmulShape& s : kMatmulShapes) {
    auto inp = twin(normal(static_cast<size_t>(s.N) * s.C, rng));
    auto weight = twin(normal(static_cast<size_t>(s.OC) * s.C, rng));
    auto bias = twin(normal(s.OC, rng));
    auto out = twin(poison(static_cast<size_t>(s.N) * s.OC));
    gpu().matmul_forward(out->g(), inp->g(), weight->g(), s.bias ? bias->g() : nullptr, s.N, s.C,
                         s.OC);
    cpu().matmul_forward(out->c(), inp->c(), weight->c(), s.bias ? bias->c() : nullptr, s.N, s.C,
                         s.OC);
    expect_close(*out, tolerance(), "matmul_forward N=" + std::to_string(s.N));
  }
}

TEST_P(CudaProductsTest, MatmulBackward) {
  std::mt19937 rng(13);
  for (const MatmulShape& s : kMatmulShapes) {
    const size_t NC = static_cast<size_t>(s.N) * s.C, NO = static_cast<size_t>(s.N) * s.OC;
    auto inp = twin(normal(NC, rng));
    auto weight = twin(normal(static_cast<size_t>(s.OC) * s.C, rng));
    auto dout = twin(normal(NO, rng));
    auto dinp = twin(normal(NC, rng));
    auto dweight = twin(normal(static_cast<size_t>(s.OC) * s.C, rng));
    auto dbias = twin(normal(s.OC, rng));
    gpu().matmul_backward(dinp->g(), dweight->g(), s.bias ? dbias->g() : nullptr, dout->g(),
                          inp->g(), weight->g(), s.N, s.C, s.OC);
    cpu().matmul_backward(dinp->c(), dweight->c(), s.bias ? dbias->c() : nullptr, dout->c(),
                          inp->c(), weight->c(), s.N, s.C, s.OC);
    const std::string what = " N=" + std::to_string(s.N);
    expect_close(*dinp, tolerance(), "matmul_backward dinp" + what);
    expect_close(*dweight, tolerance(), "matmul_backward dweight" + what);
    // dbias sums the unrounded gradient in every precision.
    expect_close(*dbias, 1e-5, "matmul_backward dbias" + what);
    // A frozen weight (no dweight, no dbias): the input's gradient only.
    auto frozen = twin(normal(NC, rng));
    gpu().matmul_backward(frozen->g(), nullptr, nullptr, dout->g(), inp->g(), weight->g(), s.N,
                          s.C, s.OC);
    cpu().matmul_backward(frozen->c(), nullptr, nullptr, dout->c(), inp->c(), weight->c(), s.N,
                          s.C, s.OC);
    expect_close(*frozen, tolerance(), "matmul_backward frozen dinp" + what);
  }
}

struct AttentionShape {
  int B, T, C, NH;
};
constexpr AttentionShape kAttentionShapes[] = {{2, 64, 96, 4}, {1, 13, 36, 3}};

std::string attention_name(const AttentionShape& s) {
  return " B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " C=" + std::to_string(s.C) +
         " NH=" + std::to_string(s.NH);
}

TEST_P(CudaProductsTest, AttentionForwardWithExactZerosAboveTheDiagonal) {
  std::mt19937 rng(14);
  for (const AttentionShape& s : kAttentionShapes) {
    const size_t BT = static_cast<size_t>(s.B) * s.T;
    const size_t att_size = static_cast<size_t>(s.B) * s.NH * s.T * s.T;
    auto qkv = twin(representable(GetParam(), normal(BT * 3 * s.C, rng)));
    auto out = twin(poison(BT * s.C));
    auto att = twin(poison(att_size));
    gpu().attention_forward(out->g(), att->g(), qkv->g(), s.B, s.T, s.C, s.NH);
    cpu().attention_forward(out->c(), att->c(), qkv->c(), s.B, s.T, s.C, s.NH);
    expect_close(*out, tolerance(), "attention_forward out" + attention_name(s));
    expect_close(*att, tolerance(), "attention_forward att" + attention_name(s));
    const std::vector<float> probabilities = att->gpu_values();
    size_t nonzero_above = 0;
    for (size_t bh = 0; bh < static_cast<size_t>(s.B) * s.NH; ++bh) {
      for (size_t t = 0; t < static_cast<size_t>(s.T); ++t) {
        for (size_t t2 = t + 1; t2 < static_cast<size_t>(s.T); ++t2) {
          const float p = probabilities[(bh * s.T + t) * s.T + t2];
          if (std::bit_cast<uint32_t>(p) != 0u) ++nonzero_above;  // +0.0f exactly
        }
      }
    }
    EXPECT_EQ(nonzero_above, 0u) << attention_name(s);
  }
}

void attention_backward_case(Backend& gpu, Backend& cpu, Precision p, const AttentionShape& s,
                             double tolerance, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t BT = static_cast<size_t>(s.B) * s.T;
  const size_t att_size = static_cast<size_t>(s.B) * s.NH * s.T * s.T;
  Twin<float> qkv(gpu, cpu, representable(p, normal(BT * 3 * s.C, rng)));
  // att as the CPU forward makes it, the same on both.
  Twin<float> out(gpu, cpu, poison(BT * s.C));
  Twin<float> forward_att(gpu, cpu, poison(att_size));
  cpu.attention_forward(out.c(), forward_att.c(), qkv.c(), s.B, s.T, s.C, s.NH);
  Twin<float> att(gpu, cpu, forward_att.cpu_values());
  Twin<float> dout(gpu, cpu, representable(p, normal(BT * s.C, rng)));
  Twin<float> dqkv(gpu, cpu, normal(BT * 3 * s.C, rng));
  gpu.attention_backward(dqkv.g(), dout.g(), qkv.g(), att.g(), s.B, s.T, s.C, s.NH);
  cpu.attention_backward(dqkv.c(), dout.c(), qkv.c(), att.c(), s.B, s.T, s.C, s.NH);
  expect_close(dqkv, tolerance, "attention_backward dqkv" + attention_name(s));
}

double attention_backward_tolerance(Precision p) { return p == Precision::kFp32 ? 1e-4 : 2e-2; }

TEST_P(CudaProductsTest, AttentionBackward) {
  for (const AttentionShape& s : kAttentionShapes) {
    attention_backward_case(gpu(), cpu(), GetParam(), s, attention_backward_tolerance(GetParam()),
                            15);
  }
}

// Scratch for fewer (T,T) blocks than heads: the heads go through it in
// groups. NH - 1 blocks: one batched group of NH - 1 heads, then the remainder
// (a single head, unbatched); 1 block: every head alone.
TEST_P(CudaProductsTest, AttentionBackwardInHeadGroups) {
  const AttentionShape s = kAttentionShapes[0];
  for (int blocks : {s.NH - 1, 1}) {
    gpu_.reset();
    open(GetParam(), cuda::attention_scratch_bytes(s.T, blocks));
    if (IsSkipped() || HasFatalFailure()) return;
    SCOPED_TRACE("scratch blocks " + std::to_string(blocks));
    attention_backward_case(gpu(), cpu(), GetParam(), s, attention_backward_tolerance(GetParam()),
                            16);
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaProductsTest,
                         ::testing::Values(Precision::kFp32, Precision::kBf16, Precision::kFp16),
                         [](const ::testing::TestParamInfo<Precision>& info) {
                           return std::string(precision_name(info.param));
                         });

// ----------------------------------------------------------- mechanics --

TEST_F(CudaBackendTest, NameAndWorkspace) {
  EXPECT_EQ(gpu().name(), "cuda");
  EXPECT_FALSE(gpu().device_memory_is_host());
  EXPECT_GE(gpu().workspace_bytes(), cuda::kBlasWorkspaceBytes + (size_t{16} << 20));
  EXPECT_TRUE(cuda_built());
}

TEST_F(CudaBackendTest, AllocationsArePageAlignedAndZeroFilled) {
  const size_t bytes = (size_t{1} << 20) + 12;
  absl::StatusOr<void*> first = gpu().allocate(bytes);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(*first) % kPage, 0u);
  const std::vector<uint8_t> dirty(bytes, 0xAB);
  ASSERT_TRUE(gpu().copy_to_device(*first, dirty.data(), bytes, Stream::kUpload).ok());
  ASSERT_TRUE(gpu().synchronize(Stream::kUpload).ok());
  gpu().release(*first);
  absl::StatusOr<void*> second = gpu().allocate(bytes);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, *first);  // the same block back: best fit, the only hole of that size
  // The whole rounded block reads zero.
  const size_t rounded = (bytes + kPage - 1) / kPage * kPage;
  const std::vector<uint8_t> got = download(gpu(), static_cast<const uint8_t*>(*second), rounded);
  EXPECT_EQ(std::count(got.begin(), got.end(), uint8_t{0}), static_cast<std::ptrdiff_t>(rounded));
  gpu().release(*second);
}

TEST_F(CudaBackendTest, BudgetIsHardAndStatsAreExact) {
  BackendOptions options;
  options.device_budget_bytes = 64 * kPage;
  absl::StatusOr<std::unique_ptr<Backend>> made = make_cuda_backend(options);
  ASSERT_TRUE(made.ok()) << made.status();
  Backend& small = **made;
  EXPECT_EQ(small.memory_stats().budget_bytes, 64 * kPage);
  EXPECT_EQ(small.memory_stats().in_use_bytes, 0u);

  absl::StatusOr<void*> a = small.allocate(0);  // one page
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(small.memory_stats().in_use_bytes, kPage);
  absl::StatusOr<void*> b = small.allocate(3 * kPage + 1);  // four pages
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(small.memory_stats().in_use_bytes, 5 * kPage);
  absl::StatusOr<void*> c = small.allocate(59 * kPage);  // the rest, exactly
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(small.memory_stats().in_use_bytes, 64 * kPage);
  EXPECT_EQ(small.memory_stats().peak_bytes, 64 * kPage);

  absl::StatusOr<void*> over = small.allocate(1);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(over.status().message().find("device budget exceeded: 4096 more bytes requested with "
                                         "262144 of 262144 in use"),
            std::string::npos)
      << over.status();
  EXPECT_EQ(small.allocate(65 * kPage).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(small.allocate(SIZE_MAX).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(small.memory_stats().in_use_bytes, 64 * kPage);

  small.release(*b);
  EXPECT_EQ(small.memory_stats().in_use_bytes, 60 * kPage);
  absl::StatusOr<void*> d = small.allocate(2 * kPage);  // fits the hole b left
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, *b);
  EXPECT_EQ(small.memory_stats().in_use_bytes, 62 * kPage);
  small.release(*a);
  small.release(*c);
  small.release(*d);
  small.release(nullptr);
  EXPECT_EQ(small.memory_stats().in_use_bytes, 0u);
  EXPECT_EQ(small.memory_stats().peak_bytes, 64 * kPage);
  EXPECT_TRUE(small.synchronize(Stream::kCompute).ok());
}

TEST_F(CudaBackendTest, BudgetIsRoundedUpToThePage) {
  BackendOptions options;
  options.device_budget_bytes = 10000;
  absl::StatusOr<std::unique_ptr<Backend>> made = make_cuda_backend(options);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->memory_stats().budget_bytes, 3 * kPage);
}

TEST_F(CudaBackendTest, DefaultBudgetIsMostOfTheFreeMemory) {
  gpu_.reset();  // give the fixture's arena back first
  absl::StatusOr<CudaDeviceInfo> info = cuda_device_info(0);
  ASSERT_TRUE(info.ok()) << info.status();
  BackendOptions options;
  options.device_budget_bytes = 0;
  absl::StatusOr<std::unique_ptr<Backend>> made = make_cuda_backend(options);
  ASSERT_TRUE(made.ok()) << made.status();
  const size_t budget = (*made)->memory_stats().budget_bytes;
  EXPECT_GT(budget, 0u);
  EXPECT_EQ(budget % (size_t{2} << 20), 0u);
  EXPECT_LE(budget + (size_t{1} << 30), info->free_bytes);
  absl::StatusOr<void*> big = (*made)->allocate(budget / 2);
  ASSERT_TRUE(big.ok()) << big.status();
  (*made)->release(*big);
}

// upload stream -> compute op -> download stream, ordered only by events.
TEST_F(CudaBackendTest, StreamsAreOrderedByEvents) {
  const size_t n = size_t{4} << 20;  // 16 MB: long enough for a missing order to show
  const size_t bytes = n * sizeof(float);
  absl::StatusOr<void*> device = gpu().allocate(bytes);
  absl::StatusOr<void*> src = gpu().allocate_pinned_host(bytes);
  absl::StatusOr<void*> dst = gpu().allocate_pinned_host(bytes);
  ASSERT_TRUE(device.ok() && src.ok() && dst.ok());
  auto* x = static_cast<float*>(*device);
  auto* in = static_cast<float*>(*src);
  auto* out = static_cast<float*>(*dst);
  for (int round = 0; round < 4; ++round) {
    for (size_t i = 0; i < n; ++i) in[i] = static_cast<float>((i + round) % 1000);
    std::fill(out, out + n, -1.0f);
    ASSERT_TRUE(gpu().copy_to_device(x, in, bytes, Stream::kUpload).ok());
    const Event uploaded = gpu().record(Stream::kUpload);
    gpu().stream_wait(Stream::kCompute, uploaded);
    gpu().scale(x, 2.0f, n);
    gpu().scale(x, 0.5f, n);
    gpu().scale(x, 3.0f, n);
    const Event computed = gpu().record(Stream::kCompute);
    gpu().stream_wait(Stream::kDownload, computed);
    ASSERT_TRUE(gpu().copy_to_host(out, x, bytes, Stream::kDownload).ok());
    const Event downloaded = gpu().record(Stream::kDownload);
    ASSERT_TRUE(gpu().wait(downloaded).ok());
    size_t wrong = 0;
    for (size_t i = 0; i < n; ++i) wrong += out[i] != 3.0f * static_cast<float>((i + round) % 1000);
    EXPECT_EQ(wrong, 0u) << "round " << round;
    // The earlier events are complete too.
    EXPECT_TRUE(gpu().wait(uploaded).ok());
    EXPECT_TRUE(gpu().wait(computed).ok());
  }
  gpu().release_pinned_host(*src);
  gpu().release_pinned_host(*dst);
  gpu().release(*device);
  EXPECT_TRUE(gpu().synchronize(Stream::kCompute).ok());
}

TEST_F(CudaBackendTest, PageableCopiesRoundTripOnEveryStream) {
  std::mt19937 rng(17);
  const std::vector<float> values = normal(100003, rng);
  const size_t bytes = values.size() * sizeof(float);
  absl::StatusOr<void*> device = gpu().allocate(bytes);
  ASSERT_TRUE(device.ok());
  for (Stream up : {Stream::kCompute, Stream::kUpload, Stream::kDownload}) {
    for (Stream down : {Stream::kCompute, Stream::kUpload, Stream::kDownload}) {
      ASSERT_TRUE(gpu().fill_zero(*device, bytes, up).ok());
      ASSERT_TRUE(gpu().copy_to_device(*device, values.data(), bytes, up).ok());
      gpu().stream_wait(down, gpu().record(up));
      std::vector<float> back(values.size(), -1.0f);
      ASSERT_TRUE(gpu().copy_to_host(back.data(), *device, bytes, down).ok());
      ASSERT_TRUE(gpu().synchronize(down).ok());
      EXPECT_EQ(back, values);
    }
  }
  gpu().release(*device);
}

TEST_F(CudaBackendTest, WaitOnAnEventNeverRecordedIsInvalidArgument) {
  EXPECT_EQ(gpu().wait(0).code(), absl::StatusCode::kInvalidArgument);
  const Event e = gpu().record(Stream::kUpload);
  // Ids are seq * kNumStreams + stream + 1: the next id of the same stream.
  EXPECT_EQ(gpu().wait(e + kNumStreams).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu().wait(Event{1} << 60).code(), absl::StatusCode::kInvalidArgument);
  // Not sticky: the recorded one is fine, and so is later work.
  EXPECT_TRUE(gpu().wait(e).ok());
  EXPECT_TRUE(gpu().synchronize(Stream::kCompute).ok());
  gpu().stream_wait(Stream::kCompute, 0);  // no event: nothing to wait for
  EXPECT_TRUE(gpu().synchronize(Stream::kCompute).ok());
}

TEST_F(CudaBackendTest, StreamWaitOnAnEventNeverRecordedIsReportedByTheNextWait) {
  const Event e = gpu().record(Stream::kDownload);
  gpu().stream_wait(Stream::kCompute, e + 100 * kNumStreams);
  const absl::Status first = gpu().synchronize(Stream::kCompute);
  EXPECT_EQ(first.code(), absl::StatusCode::kInvalidArgument) << first;
  EXPECT_EQ(gpu().wait(e).code(), absl::StatusCode::kInvalidArgument);  // sticky
}

TEST_F(CudaBackendTest, AFailedOpIsReportedByEveryLaterWait) {
  EXPECT_TRUE(gpu().synchronize(Stream::kCompute).ok());
  auto x = twin(std::vector<float>(64, 1.0f));
  auto inp = twin(std::vector<int32_t>(8, 0));
  gpu().encoder_forward(x->g(), inp->g(), x->g(), x->g(), -1, 8, 8);  // a negative shape
  const absl::Status first = gpu().synchronize(Stream::kCompute);
  EXPECT_EQ(first.code(), absl::StatusCode::kInvalidArgument) << first;
  gpu().scale(x->g(), 2.0f, 64);  // later good work does not clear it
  const absl::Status again = gpu().synchronize(Stream::kUpload);
  EXPECT_EQ(again, first);
}

TEST_F(CudaBackendTest, OldEventsStayWaitableAfterTheRingWraps) {
  const size_t n = size_t{1} << 20;
  std::vector<float> ones(n, 1.0f);
  auto x = twin(ones);
  gpu().scale(x->g(), 4.0f, n);
  const Event old = gpu().record(Stream::kCompute);
  std::vector<Event> upload_events;
  for (int i = 0; i < 3 * 1024 + 5; ++i) {
    gpu().record(Stream::kCompute);
    upload_events.push_back(gpu().record(Stream::kUpload));
  }
  EXPECT_TRUE(gpu().wait(old).ok());
  for (size_t i = 0; i < upload_events.size(); i += 97) {
    EXPECT_TRUE(gpu().wait(upload_events[i]).ok()) << i;
  }
  // A stream waiting on the old id still sees the op's result.
  gpu().stream_wait(Stream::kDownload, old);
  std::vector<float> back(n, 0.0f);
  ASSERT_TRUE(gpu().copy_to_host(back.data(), x->g(), n * sizeof(float), Stream::kDownload).ok());
  ASSERT_TRUE(gpu().synchronize(Stream::kDownload).ok());
  EXPECT_EQ(back, std::vector<float>(n, 4.0f));
  // Waiting on a recycled id after more work on its stream.
  gpu().scale(x->g(), 0.5f, n);
  EXPECT_TRUE(gpu().wait(old).ok());
  EXPECT_EQ(download(gpu(), x->g(), n), std::vector<float>(n, 2.0f));
}

TEST_F(CudaBackendTest, ThreadsRecordAndWaitConcurrently) {
  constexpr int kThreads = 3;
  const size_t n = 4096;
  std::vector<std::unique_ptr<Twin<float>>> buffers;
  for (int t = 0; t < kThreads; ++t) buffers.push_back(twin(std::vector<float>(n, 1.0f)));
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Stream mine = static_cast<Stream>(t);
      const Stream other = static_cast<Stream>((t + 1) % kNumStreams);
      std::vector<float> host(n, static_cast<float>(t));
      for (int i = 0; i < 1500; ++i) {
        if (!gpu().copy_to_device(buffers[t]->g(), host.data(), n * sizeof(float), mine).ok()) {
          ++failures[t];
        }
        const Event e = gpu().record(mine);
        gpu().stream_wait(other, e);
        if (!gpu().wait(e).ok()) ++failures[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures[t], 0) << "thread " << t;
    EXPECT_EQ(download(gpu(), buffers[t]->g(), n), std::vector<float>(n, static_cast<float>(t)));
  }
}

TEST_F(CudaBackendTest, CopiesFromRegisteredHostMemory) {
  const size_t bytes = size_t{1} << 20;
  void* host = std::aligned_alloc(kPage, 2 * bytes);
  ASSERT_NE(host, nullptr);
  absl::Status registered = gpu().register_host_memory(host, 2 * bytes);
  ASSERT_TRUE(registered.ok()) << registered;
  auto* src = static_cast<uint8_t*>(host);
  uint8_t* dst = src + bytes;
  for (size_t i = 0; i < bytes; ++i) src[i] = static_cast<uint8_t>(i * 7 + 3);
  std::memset(dst, 0, bytes);
  absl::StatusOr<void*> device = gpu().allocate(bytes);
  ASSERT_TRUE(device.ok());
  ASSERT_TRUE(gpu().copy_to_device(*device, src, bytes, Stream::kUpload).ok());
  gpu().stream_wait(Stream::kDownload, gpu().record(Stream::kUpload));
  ASSERT_TRUE(gpu().copy_to_host(dst, *device, bytes, Stream::kDownload).ok());
  ASSERT_TRUE(gpu().synchronize(Stream::kDownload).ok());
  EXPECT_EQ(std::memcmp(src, dst, bytes), 0);
  gpu().unregister_host_memory(host);
  EXPECT_TRUE(gpu().synchronize(Stream::kCompute).ok());  // unregistering did not fail
  gpu().release(*device);
  std::free(host);
  EXPECT_EQ(gpu().register_host_memory(nullptr, 4096).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CudaBackendTest, PinnedHostRoundTrip) {
  const size_t bytes = (size_t{1} << 20) + 3;
  absl::StatusOr<void*> a = gpu().allocate_pinned_host(bytes);
  absl::StatusOr<void*> b = gpu().allocate_pinned_host(bytes);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  auto* src = static_cast<uint8_t*>(*a);
  auto* dst = static_cast<uint8_t*>(*b);
  for (size_t i = 0; i < bytes; ++i) src[i] = static_cast<uint8_t>(i * 13 + 1);
  std::memset(dst, 0, bytes);
  absl::StatusOr<void*> device = gpu().allocate(bytes);
  ASSERT_TRUE(device.ok());
  ASSERT_TRUE(gpu().copy_to_device(*device, src, bytes, Stream::kUpload).ok());
  gpu().stream_wait(Stream::kDownload, gpu().record(Stream::kUpload));
  ASSERT_TRUE(gpu().copy_to_host(dst, *device, bytes, Stream::kDownload).ok());
  ASSERT_TRUE(gpu().wait(gpu().record(Stream::kDownload)).ok());
  EXPECT_EQ(std::memcmp(src, dst, bytes), 0);
  gpu().release(*device);
  gpu().release_pinned_host(*a);
  gpu().release_pinned_host(*b);
  gpu().release_pinned_host(nullptr);
  EXPECT_TRUE(gpu().synchronize(Stream::kCompute).ok());
}

TEST_F(CudaBackendTest, NullCopiesAreInvalidArgumentAndNotSticky) {
  float host[4] = {1, 2, 3, 4};
  absl::StatusOr<void*> device = gpu().allocate(sizeof(host));
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(gpu().copy_to_device(nullptr, host, 4, Stream::kUpload).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu().copy_to_host(host, nullptr, 4, Stream::kDownload).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu().fill_zero(nullptr, 4, Stream::kCompute).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(gpu().copy_to_device(nullptr, nullptr, 0, Stream::kUpload).ok());
  EXPECT_TRUE(gpu().fill_zero(nullptr, 0, Stream::kUpload).ok());
  EXPECT_TRUE(gpu().synchronize(Stream::kCompute).ok());
  gpu().release(*device);
}

TEST(CudaBackendDevice, InfoIsSane) {
  SKIP_WITHOUT_DEVICE();
  EXPECT_TRUE(cuda_built());
  absl::StatusOr<CudaDeviceInfo> info = cuda_device_info(0);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->index, 0);
  EXPECT_FALSE(info->name.empty());
  EXPECT_GE(info->sm_major, 7);
  EXPECT_GT(info->multiprocessors, 0);
  EXPECT_GT(info->clock_ghz, 0.3);
  EXPECT_LT(info->clock_ghz, 5.0);
  EXPECT_GT(info->total_bytes, 0u);
  EXPECT_GT(info->free_bytes, 0u);
  EXPECT_LE(info->free_bytes, info->total_bytes);
  if ((info->sm_major == 8 && info->sm_minor == 0) ||
      (info->sm_major == 9 && info->sm_minor == 0)) {
    EXPECT_GT(info->peak_bf16_tflops, 100.0) << info->name;
  }
  std::printf("device 0: %s, sm_%d%d, %d SMs, %.3f GHz, %zu bytes (%zu free), %.1f bf16 TFLOP/s\n",
              info->name.c_str(), info->sm_major, info->sm_minor, info->multiprocessors,
              info->clock_ghz, info->total_bytes, info->free_bytes, info->peak_bf16_tflops);
}

TEST(CudaBackendDevice, BadDeviceIndexIsUnavailable) {
  SKIP_WITHOUT_DEVICE();
  EXPECT_EQ(cuda_device_info(1000).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(cuda_device_info(-1).status().code(), absl::StatusCode::kUnavailable);
  BackendOptions options;
  options.device_index = 1000;
  absl::StatusOr<std::unique_ptr<Backend>> made = make_cuda_backend(options);
  EXPECT_EQ(made.status().code(), absl::StatusCode::kUnavailable) << made.status();
}

TEST(CudaBackendDevice, CopyCeilingIsPositive) {
  SKIP_WITHOUT_DEVICE();
  for (bool to_device : {true, false}) {
    absl::StatusOr<double> gbps = cuda_copy_ceiling_gbps(0, size_t{64} << 20, 4, to_device);
    ASSERT_TRUE(gbps.ok()) << gbps.status();
    EXPECT_GT(*gbps, 0.0);
    std::printf("copy ceiling %s: %.1f GB/s\n", to_device ? "to device" : "to host", *gbps);
  }
  EXPECT_EQ(cuda_copy_ceiling_gbps(0, 0, 4, true).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cuda_copy_ceiling_gbps(0, 4096, 0, true).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dsinf::kernels
