// The CUDA decoder ops (kernels/cuda/decoder_ops.cu) through the Backend
// interface against the CPU backend on the same random inputs: RMSNorm, RoPE,
// SwiGLU and flash attention at several shapes (T up to 1024, GQA ratios 1 to
// 8, head dimensions 16 to 256), plus the encoder without position
// embeddings; attention against a key/value cache (generation). Every test
// skips when there is no CUDA driver or device.
//
// Outputs an op overwrites are poisoned first (NaN bytes, so an element the
// GPU never writes fails); "+=" outputs start from the same random contents on
// both backends and are compared after taking that prior off, so the error of
// the gradient itself is measured. The error is normalised:
//   max_i |gpu_i - cpu_i| / max(max_i |cpu_i|, 1e-30)   (non-finite: infinite),
// for "+=" outputs max_i |cpu_i - prior_i| in the denominator, at least 1: a
// gradient that is 0 in exact arithmetic (dq and dk at T = 1, where the one
// probability is 1) is rounding noise on both backends, not a scale.
// Tolerances: fp32 ops that differ from the CPU only in summation order, FMA
// contraction and a few ulp of expf: 1e-5. Attention's gradients get 1e-4:
// each sums up to T * NH/KV = 4096 terms of random sign, recomputing the
// probabilities and subtracting dout . out, and the CPU's own error against a
// double reference is already up to ~3e-6 (cpu_decoder_ops_test.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace dsinf::kernels {
namespace {

constexpr size_t kBudget = size_t{512} << 20;

std::vector<float> normal(size_t n, std::mt19937& rng, float scale = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = mean + scale * dist(rng);
  return v;
}

// All-ones bytes: a NaN, so an element an op fails to write shows.
std::vector<float> poison(size_t n) {
  return std::vector<float>(n, std::bit_cast<float>(uint32_t{0xFFFFFFFFu}));
}

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
  absl::StatusOr<void*> ptr = backend.allocate(std::max<size_t>(host.size(), 1) * sizeof(T));
  if (!ptr.ok()) {
    ADD_FAILURE() << backend.name() << ": " << ptr.status();
    std::abort();
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
      : gpu_(gpu), cpu_(cpu), initial_(values), g_(upload(gpu, values)), c_(upload(cpu, values)) {}
  ~Twin() {
    gpu_.release(g_);
    cpu_.release(c_);
  }
  Twin(const Twin&) = delete;
  Twin& operator=(const Twin&) = delete;

  T* g() const { return g_; }
  T* c() const { return c_; }
  const std::vector<T>& initial() const { return initial_; }
  std::vector<T> gpu_values() const { return download(gpu_, g_, initial_.size()); }
  std::vector<T> cpu_values() const { return download(cpu_, c_, initial_.size()); }

 private:
  Backend& gpu_;
  Backend& cpu_;
  std::vector<T> initial_;
  T* g_;
  T* c_;
};

// max|got - ref| / max(max|ref|, tiny); with a prior, / max(max|ref - prior|, 1) (in double).
// Infinite if anything is inf or NaN.
double normalized_error(const std::vector<float>& got, const std::vector<float>& ref,
                        const std::vector<float>* prior, size_t* worst) {
  *worst = 0;
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) {
      *worst = i;
      return std::numeric_limits<double>::infinity();
    }
    const double base = prior == nullptr ? 0.0 : (*prior)[i];
    const double diff = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (diff > max_diff) {
      max_diff = diff;
      *worst = i;
    }
    max_ref = std::max(max_ref, std::fabs(ref[i] - base));
  }
  return max_diff / std::max(max_ref, prior == nullptr ? 1e-30 : 1.0);
}

// Compares the GPU and CPU contents; with `accumulated`, relative to what the op added.
void expect_close(const Twin<float>& t, double tolerance, const std::string& what,
                  bool accumulated = false) {
  const std::vector<float> got = t.gpu_values();
  const std::vector<float> ref = t.cpu_values();
  size_t worst = 0;
  const double err = normalized_error(got, ref, accumulated ? &t.initial() : nullptr, &worst);
  EXPECT_LE(err, tolerance) << what << ": normalised max error " << err << " at [" << worst
                            << "]: gpu " << (worst < got.size() ? got[worst] : 0.0f) << " cpu "
                            << (worst < ref.size() ? ref[worst] : 0.0f);
}

class CudaDecoderOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BackendOptions options;
    options.device_budget_bytes = kBudget;
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

TEST_F(CudaDecoderOpsTest, EncoderWithoutPositionEmbeddings) {
  std::mt19937 rng(1);
  constexpr int B = 2, T = 33, C = 300, V = 50;
  const size_t BT = size_t{B} * T;
  std::uniform_int_distribution<int32_t> id(0, 7);  // many repeats
  std::vector<int32_t> ids(BT);
  for (int32_t& x : ids) x = id(rng);
  auto inp = twin(ids);
  auto wte = twin(normal(size_t{V} * C, rng));
  auto out = twin(poison(BT * C));
  gpu().encoder_forward(out->g(), inp->g(), wte->g(), nullptr, B, T, C);
  cpu().encoder_forward(out->c(), inp->c(), wte->c(), nullptr, B, T, C);
  expect_close(*out, 0.0, "encoder_forward without wpe");  // a copy: exact
  auto dout = twin(normal(BT * C, rng));
  auto dwte = twin(normal(size_t{V} * C, rng));
  gpu().encoder_backward(dwte->g(), nullptr, dout->g(), inp->g(), B, T, C);
  cpu().encoder_backward(dwte->c(), nullptr, dout->c(), inp->c(), B, T, C);
  expect_close(*dwte, 1e-5, "encoder_backward without dwpe", true);
}

struct RowsShape {
  int N, C;
};
constexpr RowsShape kRowShapes[] = {{128, 96}, {37, 33}, {5, 1029}};

TEST_F(CudaDecoderOpsTest, RmsnormForwardAndBackward) {
  std::mt19937 rng(2);
  for (const RowsShape& s : kRowShapes) {
    const std::string what = " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C);
    const size_t NC = static_cast<size_t>(s.N) * s.C;
    auto inp = twin(normal(NC, rng, 2.0f, 0.5f));
    auto weight = twin(normal(s.C, rng, 0.2f, 1.0f));
    auto out = twin(poison(NC));
    auto rstd = twin(poison(s.N));
    gpu().rmsnorm_forward(out->g(), rstd->g(), inp->g(), weight->g(), s.N, s.C, 1e-6f);
    cpu().rmsnorm_forward(out->c(), rstd->c(), inp->c(), weight->c(), s.N, s.C, 1e-6f);
    expect_close(*out, 1e-5, "rmsnorm_forward out" + what);
    expect_close(*rstd, 1e-5, "rmsnorm_forward rstd" + what);

    auto saved_rstd = twin(rstd->cpu_values());  // the same on both
    auto dout = twin(normal(NC, rng));
    auto dinp = twin(normal(NC, rng));
    auto dweight = twin(normal(s.C, rng));
    gpu().rmsnorm_backward(dinp->g(), dweight->g(), dout->g(), inp->g(), weight->g(),
                           saved_rstd->g(), s.N, s.C);
    cpu().rmsnorm_backward(dinp->c(), dweight->c(), dout->c(), inp->c(), weight->c(),
                           saved_rstd->c(), s.N, s.C);
    expect_close(*dinp, 1e-5, "rmsnorm_backward dinp" + what, true);
    expect_close(*dweight, 1e-5, "rmsnorm_backward dweight" + what, true);
  }
}

struct RopeShape {
  int B, T, H, D;
};

TEST_F(CudaDecoderOpsTest, RopeForwardAndBackward) {
  std::mt19937 rng(3);
  for (const RopeShape& s : {RopeShape{2, 64, 4, 64}, RopeShape{1, 7, 3, 10}}) {
    const std::string what = " T=" + std::to_string(s.T) + " D=" + std::to_string(s.D);
    const size_t n = static_cast<size_t>(s.B) * s.T * s.H * s.D;
    std::vector<float> cos_v(static_cast<size_t>(s.T) * s.D / 2), sin_v(cos_v.size());
    for (int t = 0; t < s.T; ++t) {
      for (int i = 0; i < s.D / 2; ++i) {
        const double angle = t * std::pow(10000.0, -2.0 * i / s.D);
        cos_v[t * s.D / 2 + i] = static_cast<float>(std::cos(angle));
        sin_v[t * s.D / 2 + i] = static_cast<float>(std::sin(angle));
      }
    }
    auto cos = twin(cos_v);
    auto sin = twin(sin_v);
    auto x = twin(normal(n, rng));
    gpu().rope_forward(x->g(), cos->g(), sin->g(), s.B, s.T, s.H, s.D);
    cpu().rope_forward(x->c(), cos->c(), sin->c(), s.B, s.T, s.H, s.D);
    expect_close(*x, 1e-5, "rope_forward" + what);
    auto dx = twin(normal(n, rng));
    gpu().rope_backward(dx->g(), cos->g(), sin->g(), s.B, s.T, s.H, s.D);
    cpu().rope_backward(dx->c(), cos->c(), sin->c(), s.B, s.T, s.H, s.D);
    expect_close(*dx, 1e-5, "rope_backward" + what);
  }
}

TEST_F(CudaDecoderOpsTest, SwigluForwardAndBackward) {
  std::mt19937 rng(4);
  for (size_t n : {size_t{12345}, size_t{4099}, size_t{1}}) {
    const std::string what = " n=" + std::to_string(n);
    auto gate = twin(normal(n, rng, 3.0f));
    auto up = twin(normal(n, rng));
    auto out = twin(poison(n));
    gpu().swiglu_forward(out->g(), gate->g(), up->g(), n);
    cpu().swiglu_forward(out->c(), gate->c(), up->c(), n);
    expect_close(*out, 1e-5, "swiglu_forward" + what);
    auto dout = twin(normal(n, rng));
    auto dgate = twin(normal(n, rng));
    auto dup = twin(normal(n, rng));
    gpu().swiglu_backward(dgate->g(), dup->g(), dout->g(), gate->g(), up->g(), n);
    cpu().swiglu_backward(dgate->c(), dup->c(), dout->c(), gate->c(), up->c(), n);
    expect_close(*dgate, 1e-5, "swiglu_backward dgate" + what, true);
    expect_close(*dup, 1e-5, "swiglu_backward dup" + what, true);
  }
}

struct AttentionShape {
  int B, T, NH, KV, D;
};
// T 1 to 1024 (partial and whole tiles), NH/KV 1 to 8, D 16 to 256 (odd 17; 256 takes more than
// 48 KiB of shared memory).
constexpr AttentionShape kAttentionShapes[] = {
    {2, 1, 2, 2, 16},    {2, 7, 4, 2, 24},     {1, 130, 8, 1, 17}, {2, 100, 8, 8, 64},
    {1, 1024, 8, 2, 64}, {1, 1024, 4, 1, 128}, {1, 70, 2, 1, 256},
};

TEST_F(CudaDecoderOpsTest, FlashAttentionForwardAndBackward) {
  std::mt19937 rng(5);
  for (const AttentionShape& s : kAttentionShapes) {
    const std::string what = " B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) +
                             " NH=" + std::to_string(s.NH) + " KV=" + std::to_string(s.KV) +
                             " D=" + std::to_string(s.D);
    const size_t nq = static_cast<size_t>(s.B) * s.T * s.NH * s.D;
    const size_t nk = static_cast<size_t>(s.B) * s.T * s.KV * s.D;
    const size_t rows = static_cast<size_t>(s.B) * s.NH * s.T;
    const float scale = static_cast<float>(1 / std::sqrt(double(s.D)));
    auto q = twin(normal(nq, rng, 1.5f));
    auto k = twin(normal(nk, rng, 1.5f));
    auto v = twin(normal(nk, rng));
    auto out = twin(poison(nq));
    auto lse = twin(poison(rows));
    gpu().flash_attention_forward(out->g(), lse->g(), q->g(), k->g(), v->g(), s.B, s.T, s.NH, s.KV,
                                  s.D, scale);
    cpu().flash_attention_forward(out->c(), lse->c(), q->c(), k->c(), v->c(), s.B, s.T, s.NH, s.KV,
                                  s.D, scale);
    expect_close(*out, 1e-5, "flash_attention_forward out" + what);
    expect_close(*lse, 1e-5, "flash_attention_forward lse" + what);

    // Backward from the CPU's forward results, the same on both.
    auto saved_out = twin(out->cpu_values());
    auto saved_lse = twin(lse->cpu_values());
    auto dout = twin(normal(nq, rng));
    auto dq = twin(normal(nq, rng));
    auto dk = twin(normal(nk, rng));
    auto dv = twin(normal(nk, rng));
    auto scratch = twin(poison(rows));
    gpu().flash_attention_backward(dq->g(), dk->g(), dv->g(), dout->g(), q->g(), k->g(), v->g(),
                                   saved_out->g(), saved_lse->g(), scratch->g(), s.B, s.T, s.NH,
                                   s.KV, s.D, scale);
    cpu().flash_attention_backward(dq->c(), dk->c(), dv->c(), dout->c(), q->c(), k->c(), v->c(),
                                   saved_out->c(), saved_lse->c(), scratch->c(), s.B, s.T, s.NH,
                                   s.KV, s.D, scale);
    expect_close(*dq, 1e-4, "flash_attention_backward dq" + what, true);
    expect_close(*dk, 1e-4, "flash_attention_backward dk" + what, true);
    expect_close(*dv, 1e-4, "flash_attention_backward dv" + what, true);
    expect_close(*scratch, 1e-5, "flash_attention_backward dout . out" + what);
  }
}

// Attention against a key/value cache: Tq queries (1: a decode step; Tq = P: a prefill) over a
// cache with spare rows past P (NaN: never read), head dimensions up to 256, GQA ratios 1 to 8.
TEST_F(CudaDecoderOpsTest, CachedAttentionForward) {
  struct Shape {
    int Tq, P, NH, KV, D, rows;
  };
  constexpr Shape kShapes[] = {{1, 1, 2, 2, 16, 4},      {1, 37, 8, 2, 24, 64},
                               {5, 70, 4, 1, 17, 80},    {70, 70, 4, 2, 64, 70},
                               {3, 1030, 8, 8, 128, 1100}, {1, 300, 4, 1, 256, 300}};
  std::mt19937 rng(7);
  for (const Shape& s : kShapes) {
    const std::string what = " Tq=" + std::to_string(s.Tq) + " P=" + std::to_string(s.P) +
                             " NH=" + std::to_string(s.NH) + " KV=" + std::to_string(s.KV) +
                             " D=" + std::to_string(s.D);
    const size_t nq = static_cast<size_t>(s.Tq) * s.NH * s.D;
    const size_t kv = static_cast<size_t>(s.KV) * s.D, filled = kv * s.P;
    std::vector<float> keys = normal(kv * s.rows, rng, 1.5f), values = normal(kv * s.rows, rng);
    std::fill(keys.begin() + filled, keys.end(), std::numeric_limits<float>::quiet_NaN());
    std::fill(values.begin() + filled, values.end(), std::numeric_limits<float>::quiet_NaN());
    auto q = twin(normal(nq, rng, 1.5f));
    auto k = twin(keys);
    auto v = twin(values);
    auto out = twin(poison(nq));
    const float scale = static_cast<float>(1 / std::sqrt(double(s.D)));
    gpu().cached_attention_forward(out->g(), q->g(), k->g(), v->g(), s.Tq, s.P, s.NH, s.KV, s.D,
                                   scale);
    cpu().cached_attention_forward(out->c(), q->c(), k->c(), v->c(), s.Tq, s.P, s.NH, s.KV, s.D,
                                   scale);
    expect_close(*out, 1e-5, "cached_attention_forward" + what);
  }
}

// No floating-point atomics: the same inputs give the same bits.
TEST_F(CudaDecoderOpsTest, FlashAttentionIsDeterministic) {
  std::mt19937 rng(6);
  const AttentionShape s{2, 300, 8, 2, 64};
  const size_t nq = static_cast<size_t>(s.B) * s.T * s.NH * s.D;
  const size_t nk = static_cast<size_t>(s.B) * s.T * s.KV * s.D;
  const size_t rows = static_cast<size_t>(s.B) * s.NH * s.T;
  auto q = twin(normal(nq, rng));
  auto k = twin(normal(nk, rng));
  auto v = twin(normal(nk, rng));
  auto dout = twin(normal(nq, rng));
  auto out = twin(poison(nq));
  auto lse = twin(poison(rows));
  auto scratch = twin(poison(rows));
  std::vector<std::vector<float>> first;
  for (int run = 0; run < 2; ++run) {
    auto dq = twin(std::vector<float>(nq));
    auto dk = twin(std::vector<float>(nk));
    auto dv = twin(std::vector<float>(nk));
    gpu().flash_attention_forward(out->g(), lse->g(), q->g(), k->g(), v->g(), s.B, s.T, s.NH, s.KV,
                                  s.D, 0.125f);
    gpu().flash_attention_backward(dq->g(), dk->g(), dv->g(), dout->g(), q->g(), k->g(), v->g(),
                                   out->g(), lse->g(), scratch->g(), s.B, s.T, s.NH, s.KV, s.D,
                                   0.125f);
    std::vector<std::vector<float>> results = {
        out->gpu_values(), lse->gpu_values(), dq->gpu_values(), dk->gpu_values(), dv->gpu_values()};
    if (run == 0) {
      first = std::move(results);
      continue;
    }
    for (size_t i = 0; i < results.size(); ++i) {
      EXPECT_EQ(0, std::memcmp(results[i].data(), first[i].data(), first[i].size() * 4))
          << "output " << i;
    }
  }
}

}  // namespace
}  // namespace dsinf::kernels
