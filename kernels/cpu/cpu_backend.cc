// The fp32 reference backend. "Device" memory is host memory from a budgeted
// arena; the interface is asynchronous but this backend completes every copy and
// op before the call returns, so events are only counters and stream_wait has
// nothing to order.
//
// With a reduced matmul precision the operands of matmul_forward/backward are
// rounded to bf16/fp16 (as tensor cores read them; fp16 overflows to infinity)
// before the fp32 products, so fp16's loss-scale overflow happens here as on a
// GPU, attention's two products included.
//
// With BackendOptions::defer_copies (a test mode) copies and fills are queued
// per stream and run as late as a GPU could run them: when an event recorded
// after them is waited on, before a later op on the compute stream (ops
// themselves run at once, on the compute stream), or when work on another
// stream that stream_wait()ed for them comes due. Device memory is then not
// host memory for the caller. Code that touches a buffer before its copy's
// event completed computes other numbers in this mode, as it would on a GPU.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "kernels/cpu/adam.h"
#include "kernels/cpu/decoder_ops.h"
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

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options)
      : arena_("device", options.device_budget_bytes),
        precision_(options.matmul_precision),
        defer_(options.defer_copies) {}

  std::string name() const override { return "cpu"; }
  bool device_memory_is_host() const override { return !defer_; }

  absl::StatusOr<void*> allocate(size_t bytes) override {
    absl::StatusOr<std::byte*> ptr = arena_.allocate(bytes);
    if (!ptr.ok()) return ptr.status();
    return static_cast<void*>(*ptr);
  }
  void release(void* ptr) override { arena_.release(static_cast<std::byte*>(ptr)); }
  memory::ArenaStats memory_stats() const override { return arena_.stats(); }

  absl::Status copy_to_device(void* dst_device, const void* src_host, size_t bytes,
                              Stream stream) override {
    return copy(dst_device, src_host, bytes, stream);
  }
  absl::Status copy_to_host(void* dst_host, const void* src_device, size_t bytes,
                            Stream stream) override {
    return copy(dst_host, src_device, bytes, stream);
  }
  absl::Status fill_zero(void* dst_device, size_t bytes, Stream stream) override {
    if (bytes == 0) return absl::OkStatus();
    if (dst_device == nullptr) return absl::InvalidArgumentError("fill_zero of a null pointer");
    if (defer_) {
      std::lock_guard<std::mutex> lock(queue_mu_);
      queues_[static_cast<int>(stream)].push_back({Item::kFill, dst_device, nullptr, bytes, 0});
      return absl::OkStatus();
    }
    std::memset(dst_device, 0, bytes);
    return absl::OkStatus();
  }

  absl::Status convert(const void* src, DType src_type, void* dst, DType dst_type, size_t n,
                       Stream stream) override {
    if (n == 0) return absl::OkStatus();
    if (src == nullptr || dst == nullptr) return absl::InvalidArgumentError("convert of a null pointer");
    return enqueue({Item::kConvert, dst, src, n, 0, src_type, dst_type}, stream);
  }
  absl::Status accumulate(float* acc, const void* src, DType src_type, size_t n,
                          Stream stream) override {
    if (n == 0) return absl::OkStatus();
    if (acc == nullptr || src == nullptr) {
      return absl::InvalidArgumentError("accumulate of a null pointer");
    }
    return enqueue({Item::kAccumulate, acc, src, n, 0, src_type, DType::kF32}, stream);
  }

  Event record(Stream stream) override {
    if (!defer_) return ++last_event_;
    std::lock_guard<std::mutex> lock(queue_mu_);
    const Event e = ++last_event_;
    queues_[static_cast<int>(stream)].push_back({Item::kMarker, nullptr, nullptr, 0, e});
    return e;
  }
  void stream_wait(Stream stream, Event event) override {
    if (!defer_) return;
    std::lock_guard<std::mutex> lock(queue_mu_);
    const int q = queue_of(event);
    // Pending on another stream: this stream's later work runs after it.
    if (q >= 0 && q != static_cast<int>(stream)) {
      queues_[static_cast<int>(stream)].push_back({Item::kDependency, nullptr, nullptr, 0, event});
    }
  }
  absl::Status wait(Event event) override {
    if (event == 0 || event > last_event_.load()) {
      return absl::InvalidArgumentError(
          absl::StrCat("wait on event ", event, " that was never recorded"));
    }
    if (defer_) {
      std::lock_guard<std::mutex> lock(queue_mu_);
      const int q = queue_of(event);
      if (q >= 0) run_until(q, event);
    }
    return absl::OkStatus();  // every op completed before its call returned
  }

  void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B,
                       int T, int C) override {
    before_op();
    cpu::encoder_forward(out, inp, wte, wpe, B, T, C);
  }
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B,
                        int T, int C) override {
    before_op();
    cpu::encoder_backward(dwte, dwpe, dout, inp, B, T, C);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C) override {
    before_op();
    cpu::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
  }
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override {
    before_op();
    cpu::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  }
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                      int C, int OC) override {
    before_op();
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
    before_op();
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
    if (dbias != nullptr) cpu::bias_backward(dbias, dout, N, OC);  // the unrounded gradient's
  }
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                         int NH) override {
    before_op();
    if (precision_ == Precision::kFp32) {
      cpu::attention_forward(out, att, qkv, B, T, C, NH);
      return;
    }
    // q, k and v are only ever product operands: rounded once, up front.
    const size_t n = static_cast<size_t>(B) * T * 3 * C;
    std::vector<float>& r = rounded(n);
    round_into(r.data(), qkv, n);
    cpu::attention_forward(out, att, r.data(), B, T, C, NH, precision_);
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                          int T, int C, int NH) override {
    before_op();
    if (precision_ == Precision::kFp32) {
      cpu::attention_backward(dqkv, dout, qkv, att, B, T, C, NH);
      return;
    }
    // dout, q, k and v are only ever product operands here.
    const size_t n = static_cast<size_t>(B) * T * 3 * C, no = static_cast<size_t>(B) * T * C;
    std::vector<float>& r = rounded(n + no);
    round_into(r.data(), qkv, n);
    round_into(r.data() + n, dout, no);
    cpu::attention_backward(dqkv, r.data() + n, r.data(), att, B, T, C, NH, precision_);
  }
  void gelu_forward(float* out, const float* inp, size_t n) override {
    before_op();
    cpu::gelu_forward(out, inp, n);
  }
  void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) override {
    before_op();
    cpu::gelu_backward(dinp, inp, dout, n);
  }
  void residual_forward(float* out, const float* a, const float* b, size_t n) override {
    before_op();
    cpu::residual_forward(out, a, b, n);
  }
  void softmax_crossentropy(float* losses, float* dlogits, const float* logits,
                            const int32_t* targets, int N, int V, float dloss) override {
    before_op();
    cpu::softmax_crossentropy(losses, dlogits, logits, targets, N, V, dloss);
  }
  void scale(float* x, float s, size_t n) override {
    before_op();
    cpu::scale(x, s, n);
  }
  void dropout_scale(float* out, const float* in, size_t n, float s, float p,
                     uint64_t key) override {
    before_op();
    cpu::dropout_scale(out, in, n, s, p, key);
  }
  // The vectorised kernels of cpu/adam.h: the same bits as cpu::sum_squares and
  // cpu::adam_step, at memory speed.
  double sum_squares(const float* x, size_t n) override {
    before_op();
    return cpu::grad_stats(x, cpu::DType::kF32, n).sum_squares;
  }
  void adam_step(float* params, const float* grads, float* m, float* v, size_t n,
                 const AdamHyper& hyper) override {
    before_op();
    cpu::AdamBuffers buffers;
    buffers.n = n;
    buffers.params = params;
    buffers.grads = grads;
    buffers.m = m;
    buffers.v = v;
    cpu::fused_adam_step(buffers, hyper);
  }

  // ---- decoder ops (fp32 whatever the matmul precision) ----
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                       float eps) override {
    before_op();
    cpu::rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
  }
  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                        const float* weight, const float* rstd, int N, int C) override {
    before_op();
    cpu::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
  }
  void rope_forward(float* x, const float* cos, const float* sin, int B, int T, int H,
                    int D) override {
    before_op();
    cpu::rope_forward(x, cos, sin, B, T, H, D);
  }
  void rope_backward(float* dx, const float* cos, const float* sin, int B, int T, int H,
                     int D) override {
    before_op();
    cpu::rope_backward(dx, cos, sin, B, T, H, D);
  }
  void swiglu_forward(float* out, const float* gate, const float* up, size_t n) override {
    before_op();
    cpu::swiglu_forward(out, gate, up, n);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                       const float* up, size_t n) override {
    before_op();
    cpu::swiglu_backward(dgate, dup, dout, gate, up, n);
  }
  void flash_attention_forward(float* out, float* lse, const float* q, const float* k,
                               const float* v, int B, int T, int NH, int KV, int D,
                               float scale) override {
    before_op();
    cpu::flash_attention_forward(out, lse, q, k, v, B, T, NH, KV, D, scale);
  }
  void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                const float* k, const float* v, const float* out, const float* lse,
                                float* scratch, int B, int T, int NH, int KV, int D,
                                float scale) override {
    before_op();
    cpu::flash_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scratch, B, T, NH, KV, D,
                                  scale);
  }
  void cached_attention_forward(float* out, const float* q, const float* k_cache,
                                const float* v_cache, int Tq, int P, int NH, int KV, int D,
                                float scale) override {
    before_op();
    cpu::cached_attention_forward(out, q, k_cache, v_cache, Tq, P, NH, KV, D, scale);
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
                          dst[i] = cpu::round_operand(precision_, src[i]);
                        }
                      });
  }

  absl::Status copy(void* dst, const void* src, size_t bytes, Stream stream) {
    if (bytes == 0) return absl::OkStatus();
    if (dst == nullptr || src == nullptr) {
      return absl::InvalidArgumentError("copy with a null pointer");
    }
    if (defer_) {
      std::lock_guard<std::mutex> lock(queue_mu_);
      queues_[static_cast<int>(stream)].push_back({Item::kCopy, dst, src, bytes, 0});
      return absl::OkStatus();
    }
    std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }

  // ---- defer_copies ----
  struct Item {
    enum Kind { kCopy, kFill, kMarker, kDependency, kConvert, kAccumulate } kind;
    void* dst;
    const void* src;
    size_t bytes;  // kConvert, kAccumulate: elements
    Event event;   // kMarker: recorded here; kDependency: the other stream's event to run first
    DType src_type = DType::kF32, dst_type = DType::kF32;  // kConvert, kAccumulate
  };

  // A conversion runs now, or (defer_copies) in its stream's order.
  absl::Status enqueue(const Item& item, Stream stream) {
    if (defer_) {
      std::lock_guard<std::mutex> lock(queue_mu_);
      queues_[static_cast<int>(stream)].push_back(item);
      return absl::OkStatus();
    }
    run_item(item);
    return absl::OkStatus();
  }
  static void run_item(const Item& item) {
    if (item.kind == Item::kConvert) {
      cpu::convert(item.src, item.src_type, item.dst, item.dst_type, 1.0f, item.bytes);
    } else {
      cpu::accumulate(static_cast<float*>(item.dst), item.src, item.src_type, item.bytes);
    }
  }

  // An op runs now, on the compute stream: what was queued there before it first.
  void before_op() {
    if (!defer_) return;
    std::lock_guard<std::mutex> lock(queue_mu_);
    run_until(static_cast<int>(Stream::kCompute), 0);
  }
  // The queue holding `event`'s marker; -1 when it already ran.
  int queue_of(Event event) const {
    for (int q = 0; q < kNumStreams; ++q) {
      for (const Item& item : queues_[q]) {
        if (item.kind == Item::kMarker && item.event == event) return q;
      }
    }
    return -1;
  }
  // Runs queue q in order through `event`'s marker (0: all of it).
  void run_until(int q, Event event) {
    std::deque<Item>& queue = queues_[q];
    while (!queue.empty()) {
      const Item item = queue.front();
      queue.pop_front();
      switch (item.kind) {
        case Item::kCopy:
          std::memcpy(item.dst, item.src, item.bytes);
          break;
        case Item::kFill:
          std::memset(item.dst, 0, item.bytes);
          break;
        case Item::kConvert:
        case Item::kAccumulate:
          run_item(item);
          break;
        case Item::kDependency:
          if (const int other = queue_of(item.event); other >= 0) run_until(other, item.event);
          break;
        case Item::kMarker:
          if (event != 0 && item.event == event) return;
          break;
      }
    }
  }

  memory::Arena arena_;
  const Precision precision_;
  const bool defer_;
  std::atomic<Event> last_event_{0};
  std::mutex queue_mu_;  // defer_copies: the queues, and running them
  std::deque<Item> queues_[kNumStreams];
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace dsinf::kernels
