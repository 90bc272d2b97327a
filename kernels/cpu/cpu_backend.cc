// The fp32 reference backend. "Device" memory is host memory from a budgeted
// arena; the interface is asynchronous but this backend completes every copy and
// op before the call returns, so events are only counters and stream_wait has
// nothing to order.
//
// With a reduced matmul precision the operands of matmul_forward/backward are
// rounded to bf16/fp16 (as tensor cores read them; fp16 overflows to infinity)
// before the fp32 products, so fp16's loss-scale overflow happens here as on a
// GPU. Attention's products stay fp32 on this backend.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "kernels/cpu/adam.h"
#include "kernels/cpu/half.h"
#include "kernels/cpu/ops.h"
#include "memory/arena.h"

namespace dsinf::kernels {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp16:
      return "fp16";
  }
  return "?";
}

namespace {

// x rounded to `p` and back: the value a tensor core multiplies.
float round_to(Precision p, float x) {
  if (p == Precision::kBf16) return cpu::bf16_to_float(cpu::float_to_bf16(x));
  if (p == Precision::kFp16) return cpu::f16_to_float(cpu::float_to_f16(x));
  return x;
}

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options)
      : arena_("device", options.device_budget_bytes), precision_(options.matmul_precision) {}

  std::string name() const override { return "cpu"; }
  bool device_memory_is_host() const override { return true; }

  absl::StatusOr<void*> allocate(size_t bytes) override {
    absl::StatusOr<std::byte*> ptr = arena_.allocate(bytes);
    if (!ptr.ok()) return ptr.status();
    return static_cast<void*>(*ptr);
  }
  void release(void* ptr) override { arena_.release(static_cast<std::byte*>(ptr)); }
  memory::ArenaStats memory_stats() const override { return arena_.stats(); }

  absl::Status copy_to_device(void* dst_device, const void* src_host, size_t bytes,
                              Stream stream) override {
    return copy(dst_device, src_host, bytes);
  }
  absl::Status copy_to_host(void* dst_host, const void* src_device, size_t bytes,
                            Stream stream) override {
    return copy(dst_host, src_device, bytes);
  }
  absl::Status fill_zero(void* dst_device, size_t bytes, Stream stream) override {
    if (bytes == 0) return absl::OkStatus();
    if (dst_device == nullptr) return absl::InvalidArgumentError("fill_zero of a null pointer");
    std::memset(dst_device, 0, bytes);
    return absl::OkStatus();
  }

  Event record(Stream stream) override { return ++last_event_; }
  void stream_wait(Stream stream, Event event) override {}
  absl::Status wait(Event event) override {
    if (event == 0 || event > last_event_.load()) {
      return absl::InvalidArgumentError(
          absl::StrCat("wait on event ", event, " that was never recorded"));
    }
    return absl::OkStatus();  // all work completed synchronously
  }

  void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B,
                       int T, int C) override {
    cpu::encoder_forward(out, inp, wte, wpe, B, T, C);
  }
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B,
                        int T, int C) override {
    cpu::encoder_backward(dwte, dwpe, dout, inp, B, T, C);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C) override {
    cpu::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
  }
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override {
    cpu::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  }
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                      int C, int OC) override {
    if (precision_ == Precision::kFp32) {
      cpu::matmul_forward(out, inp, weight, bias, N, C, OC);
      return;
    }
    const size_t nc = static_cast<size_t>(N) * C, oc = static_cast<size_t>(OC) * C;
    std::vector<float>& r = rounded(nc + oc);
    round_into(r.data(), inp, nc);
    round_into(r.data() + nc, weight, oc);
    cpu::matmul_forward(out, r.data(), r.data() + nc, bias, N, C, OC);
  }
  void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, int N, int C, int OC) override {
    if (precision_ == Precision::kFp32) {
      cpu::matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
      return;
    }
    // dbias sums the gradient as it is (fp32 on a GPU too); only the products' operands round.
    const size_t no = static_cast<size_t>(N) * OC, nc = static_cast<size_t>(N) * C;
    const size_t oc = static_cast<size_t>(OC) * C;
    std::vector<float>& r = rounded(no + nc + oc);
    round_into(r.data(), dout, no);
    round_into(r.data() + no, inp, nc);
    round_into(r.data() + no + nc, weight, oc);
    cpu::matmul_backward(dinp, dweight, nullptr, r.data(), r.data() + no, r.data() + no + nc, N, C,
                         OC);
    if (dbias == nullptr) return;
    // The unrounded gradient's column sums, each over the rows in order, as
    // cpu::matmul_backward adds them.
    tbb::parallel_for(tbb::blocked_range<int>(0, OC, 64), [&](const tbb::blocked_range<int>& r) {
      for (int n = 0; n < N; ++n) {
        const float* dout_n = dout + static_cast<size_t>(n) * OC;
        for (int o = r.begin(); o < r.end(); ++o) dbias[o] += dout_n[o];
      }
    });
  }
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                         int NH) override {
    cpu::attention_forward(out, att, qkv, B, T, C, NH);
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                          int T, int C, int NH) override {
    cpu::attention_backward(dqkv, dout, qkv, att, B, T, C, NH);
  }
  void gelu_forward(float* out, const float* inp, size_t n) override {
    cpu::gelu_forward(out, inp, n);
  }
  void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) override {
    cpu::gelu_backward(dinp, inp, dout, n);
  }
  void residual_forward(float* out, const float* a, const float* b, size_t n) override {
    cpu::residual_forward(out, a, b, n);
  }
  void softmax_crossentropy(float* losses, float* dlogits, const float* logits,
                            const int32_t* targets, int N, int V, float dloss) override {
    cpu::softmax_crossentropy(losses, dlogits, logits, targets, N, V, dloss);
  }
  void scale(float* x, float s, size_t n) override { cpu::scale(x, s, n); }
  // The vectorised kernels of cpu/adam.h: the same bits as cpu::sum_squares and
  // cpu::adam_step, at memory speed.
  double sum_squares(const float* x, size_t n) override {
    return cpu::grad_stats(x, cpu::DType::kF32, n).sum_squares;
  }
  void adam_step(float* params, const float* grads, float* m, float* v, size_t n,
                 const AdamHyper& hyper) override {
    cpu::AdamBuffers buffers;
    buffers.n = n;
    buffers.params = params;
    buffers.grads = grads;
    buffers.m = m;
    buffers.v = v;
    cpu::fused_adam_step(buffers, hyper);
  }

 private:
  // This thread's scratch for rounded operands (ops run on one thread at a time
  // per caller; the buffer only grows to the largest product's operands).
  static std::vector<float>& rounded(size_t n) {
    thread_local std::vector<float> buffer;
    if (buffer.size() < n) buffer.resize(n);
    return buffer;
  }
  void round_into(float* dst, const float* src, size_t n) const {
    tbb::parallel_for(tbb::blocked_range<size_t>(0, n, 1 << 14),
                      [&](const tbb::blocked_range<size_t>& r) {
                        for (size_t i = r.begin(); i < r.end(); ++i) {
                          dst[i] = round_to(precision_, src[i]);
                        }
                      });
  }

  static absl::Status copy(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return absl::OkStatus();
    if (dst == nullptr || src == nullptr) {
      return absl::InvalidArgumentError("copy with a null pointer");
    }
    std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }

  memory::Arena arena_;
  const Precision precision_;
  std::atomic<Event> last_event_{0};
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace dsinf::kernels
