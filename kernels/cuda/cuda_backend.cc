// The CUDA backend: the Backend interface (kernels/backend.h) on one device.
//
// Memory: one cudaMalloc of the whole budget at creation (the arena), carved
// by a memory::Region (best fit, 4096-byte blocks), so device memory use is
// fixed before training starts and allocation never calls into the driver's
// allocator. The kernels' own scratch (cuBLASLt workspace, attention scratch,
// the sum-of-squares accumulator) is a second cudaMalloc outside the budget.
//
// Streams: three non-blocking streams (compute, upload, download); every op
// runs on compute. Events: per stream a ring of kEventRing cudaEvent_t made at
// start (no allocation on the hot path). An Event id encodes (stream, seq):
// id = seq * kNumStreams + stream + 1, seq the stream's 0-based record count,
// so 0 stays "no event". Record number seq lands in slot seq % kEventRing.
// Once kEventRing later records of the same stream have reused that slot,
// waiting on the old id waits on the slot's current (later) record instead.
// That is still correct: a stream runs its work in order, so the later
// record's completion implies the earlier one's; it can only wait longer than
// needed. It cannot deadlock either: a record only ever depends on work queued
// before it (stream_wait accepts only ids already recorded), so waiting on a
// later record of the same stream waits on work queued before the wait. Each
// stream also keeps a watermark below which every record is known complete
// (raised by wait()), so waiting on an old, finished id costs nothing.
//
// Errors: ops return nothing, so the first failure of any op, copy or event
// call is kept (sticky) and returned by the next wait() and every later one;
// copies and fills also return theirs. Argument errors found before anything
// is queued (a null copy pointer, an id never recorded for wait()) are only
// returned. Nothing here synchronizes the whole device.
//
// Threads: the trainer, uploader and optimizer actors call in concurrently.
// The arena, the event rings, the sticky error and the sum-of-squares
// accumulator each have a mutex; every entry point first makes the backend's
// device current on the calling thread (cudaSetDevice once per thread).
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "kernels/backend.h"
#include "kernels/cpu/adam.h"
#include "kernels/cuda/adam.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/convert.h"
#include "kernels/cuda/decoder_ops.h"
#include "kernels/cuda/ops.h"
#include "memory/aligned_buffer.h"
#include "memory/arena.h"
#include "memory/region.h"
#include "memory/util/check.h"

namespace dsinf::kernels {
namespace {

constexpr size_t kArenaAlignment = 4096;
constexpr size_t kEventRing = 1024;                // events per stream
constexpr size_t kBudgetMargin = size_t{1} << 30;  // left free when the budget is "most of it"
constexpr size_t kBudgetGranule = size_t{2} << 20;
constexpr size_t kWorkspaceAlignment = 256;

using cuda::cuda_status;
using cuda::error_text;

// As cuda_status, but running out of memory is kResourceExhausted.
absl::Status alloc_status(cudaError_t err, absl::string_view what) {
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    return absl::ResourceExhaustedError(absl::StrCat("CUDA ", what, " failed: ", error_text(err)));
  }
  return cuda_status(err, what);
}

// The device current on this thread, as last set here; -1: not yet. Only this
// file calls cudaSetDevice (the NCCL communicator sets its device for a call
// and restores the previous one), so the cache stays true.
thread_local int t_current_device = -1;

absl::Status use_device(int index) {
  if (t_current_device == index) return absl::OkStatus();
  DSINF_CUDA_RETURN_IF_ERROR(cuda_status(cudaSetDevice(index), "cudaSetDevice"));
  t_current_device = index;
  return absl::OkStatus();
}

// kUnavailable unless a driver and device `index` are there.
absl::Status find_device(int index) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::UnavailableError(absl::StrCat(
        "no usable CUDA driver or device: cudaGetDeviceCount failed: ", error_text(err)));
  }
  if (count <= 0) return absl::UnavailableError("no CUDA device: cudaGetDeviceCount returned 0");
  if (index < 0 || index >= count) {
    return absl::UnavailableError(absl::StrCat("no CUDA device ", index, ": there are ", count,
                                               " (ordinals 0 to ", count - 1, ")"));
  }
  return absl::OkStatus();
}

// Makes device `index` current on this thread; kUnavailable when its context
// cannot be made (e.g. an exclusive-process device taken by another process).
absl::Status open_device(int index) {
  DSINF_CUDA_RETURN_IF_ERROR(find_device(index));
  if (absl::Status s = use_device(index); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("CUDA device ", index, " is not usable: ", s.message()));
  }
  return absl::OkStatus();
}

// Dense bf16 (and fp16) tensor-core peak with fp32 accumulation, in TFLOP/s.
double peak_bf16_tflops(const std::string& name, int major, int minor, int multiprocessors,
                        double clock_ghz) {
  // NVIDIA's data-sheet figures for "BF16 Tensor Core", halved where the sheet
  // quotes them with sparsity: these are dense. Checked in order, so the
  // specific names come before the family's.
  struct Known {
    const char* substring;
    double tflops;
  };
  static constexpr Known kKnown[] = {
      {"H100 NVL", 835.0},   // H100 NVL: 1,671 with sparsity
      {"H100 PCIe", 756.0},  // H100 PCIe: 1,513 with sparsity
      {"H100", 989.4},       // H100 SXM5 ("NVIDIA H100 80GB HBM3"): 1,979 with sparsity
      {"H200 NVL", 835.0},   // H200 NVL: 1,671 with sparsity
      {"H200", 989.4},       // H200 SXM: 1,979 with sparsity
      {"A100", 312.0},       // A100 SXM4 and PCIe: 312 dense
  };
  for (const Known& known : kKnown) {
    if (name.find(known.substring) != std::string::npos) return known.tflops;
  }
  // Otherwise SMs x clock x the architecture's dense bf16 FLOP per SM per
  // clock (from the same sheets: e.g. A100 108 SMs x 1.41 GHz x 2048 = 312,
  // H100 SXM 132 x 1.83 x 4096 = 989, RTX 4090 128 x 2.52 x 512 = 165).
  double per_sm_per_clock = 0;
  if (major == 8 && minor == 0) {
    per_sm_per_clock = 2048;
  } else if (major == 8 && (minor == 6 || minor == 7 || minor == 9)) {
    per_sm_per_clock = 512;
  } else if (major == 9 && minor == 0) {
    per_sm_per_clock = 4096;
  }
  return multiprocessors * clock_ghz * 1e9 * per_sm_per_clock / 1e12;
}

int stream_index(Stream stream) {
  const int i = static_cast<int>(stream);
  DSINF_CHECK_MSG(i >= 0 && i < kNumStreams, "bad Stream value");
  return i;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& options)
      : device_(options.device_index), precision_(options.matmul_precision) {}

  // Everything fallible of construction; on failure the destructor frees what
  // was made.
  absl::Status init(const BackendOptions& options) {
    DSINF_CUDA_RETURN_IF_ERROR(open_device(device_));

    // Workspace: cuBLASLt's, then attention's scratch (both Blas'), then the
    // sum-of-squares accumulator.
    const size_t blas_bytes = cuda::kBlasWorkspaceBytes + options.attention_scratch_bytes;
    const size_t stats_offset = memory::align_up(blas_bytes, kWorkspaceAlignment);
    workspace_bytes_ = stats_offset + sizeof(cuda::DeviceGradStats);

    size_t budget = 0;
    if (options.device_budget_bytes > 0) {
      if (options.device_budget_bytes > std::numeric_limits<size_t>::max() / 4) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "device budget of ", options.device_budget_bytes, " bytes cannot be reserved"));
      }
      budget = memory::align_up(options.device_budget_bytes, kArenaAlignment);
    } else {
      size_t free_bytes = 0, total_bytes = 0;
      DSINF_CUDA_RETURN_IF_ERROR(
          cuda_status(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
      const size_t reserve = workspace_bytes_ + kBudgetMargin;
      if (free_bytes < reserve + kBudgetGranule) {
        return absl::ResourceExhaustedError(
            absl::StrCat("device: only ", free_bytes, " bytes free on CUDA device ", device_,
                         ", not more than the backend's workspace (", workspace_bytes_,
                         " bytes) and a 1 GiB margin"));
      }
      budget = (free_bytes - reserve) / kBudgetGranule * kBudgetGranule;
    }

    // cudaMalloc promises 256-byte alignment; one extra page makes the blocks
    // page aligned, as the interface says, whatever the base.
    DSINF_CUDA_RETURN_IF_ERROR(alloc_status(
        cudaMalloc(&arena_allocation_, budget + kArenaAlignment),
        absl::StrCat("cudaMalloc of the ", budget, "-byte device arena on device ", device_)));
    arena_ = reinterpret_cast<std::byte*>(
        memory::align_up(reinterpret_cast<uintptr_t>(arena_allocation_), kArenaAlignment));
    arena_bytes_ = budget;
    region_ = std::make_unique<memory::Region>(budget, kArenaAlignment, memory::Region::Fit::kBest);

    DSINF_CUDA_RETURN_IF_ERROR(
        alloc_status(cudaMalloc(&workspace_, workspace_bytes_),
                     absl::StrCat("cudaMalloc of the ", workspace_bytes_, "-byte workspace")));
    stats_ = reinterpret_cast<cuda::DeviceGradStats*>(static_cast<std::byte*>(workspace_) +
                                                      stats_offset);
    absl::StatusOr<std::unique_ptr<cuda::Blas>> blas = cuda::Blas::create(workspace_, blas_bytes);
    if (!blas.ok()) return blas.status();
    blas_ = *std::move(blas);

    for (cudaStream_t& stream : streams_) {
      DSINF_CUDA_RETURN_IF_ERROR(cuda_status(
          cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags"));
    }
    for (EventRing& ring : rings_) {
      for (cudaEvent_t& event : ring.events) {
        DSINF_CUDA_RETURN_IF_ERROR(cuda_status(
            cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreateWithFlags"));
      }
    }
    return absl::OkStatus();
  }

  ~CudaBackend() override {
    // Best effort, never throws: finish queued work, then free in reverse.
    (void)use_device(device_);
    for (cudaStream_t stream : streams_) {
      if (stream != nullptr) (void)cudaStreamSynchronize(stream);
    }
    for (EventRing& ring : rings_) {
      for (cudaEvent_t event : ring.events) {
        if (event != nullptr) (void)cudaEventDestroy(event);
      }
    }
    for (cudaStream_t stream : streams_) {
      if (stream != nullptr) (void)cudaStreamDestroy(stream);
    }
    blas_.reset();
    if (workspace_ != nullptr) (void)cudaFree(workspace_);
    if (arena_allocation_ != nullptr) (void)cudaFree(arena_allocation_);
    (void)cudaGetLastError();  // leave no error behind for this thread's next check
  }

  std::string name() const override { return "cuda"; }
  size_t workspace_bytes() const override { return workspace_bytes_; }

  // ---- host memory ----
  absl::Status register_host_memory(void* base, size_t bytes) override {
    if (base == nullptr || bytes == 0) {
      return absl::InvalidArgumentError("register_host_memory of a null or empty range");
    }
    DSINF_CUDA_RETURN_IF_ERROR(use_device(device_));
    return cuda_status(cudaHostRegister(base, bytes, cudaHostRegisterDefault),
                       absl::StrCat("cudaHostRegister of ", bytes, " bytes"));
  }
  void unregister_host_memory(void* base) override {
    if (base == nullptr) return;
    absl::Status s = use_device(device_);
    if (s.ok()) s = cuda_status(cudaHostUnregister(base), "cudaHostUnregister");
    note(std::move(s));
  }
  absl::StatusOr<void*> allocate_pinned_host(size_t bytes) override {
    DSINF_CUDA_RETURN_IF_ERROR(use_device(device_));
    void* ptr = nullptr;
    DSINF_CUDA_RETURN_IF_ERROR(
        alloc_status(cudaHostAlloc(&ptr, std::max<size_t>(bytes, 1), cudaHostAllocDefault),
                     absl::StrCat("cudaHostAlloc of ", bytes, " bytes")));
    return ptr;
  }
  void release_pinned_host(void* ptr) override {
    if (ptr == nullptr) return;
    absl::Status s = use_device(device_);
    if (s.ok()) s = cuda_status(cudaFreeHost(ptr), "cudaFreeHost");
    note(std::move(s));
  }

  // ---- the arena ----
  absl::StatusOr<void*> allocate(size_t bytes) override {
    size_t offset = 0, block = 0;
    {
      std::lock_guard<std::mutex> lock(arena_mu_);
      absl::StatusOr<size_t> got = region_->allocate(bytes);
      if (!got.ok()) {
        const memory::ArenaStats stats = region_->stats();
        return absl::ResourceExhaustedError(absl::StrCat(
            "device budget exceeded: ", bytes <= arena_bytes_ ? region_->rounded(bytes) : bytes,
            " more bytes requested with ", stats.in_use_bytes, " of ", stats.budget_bytes,
            " in use; largest free block ", region_->largest_free(), " bytes"));
      }
      offset = *got;
      block = region_->rounded(bytes);
    }
    std::byte* ptr = arena_ + offset;
    // Zero-filled, and complete before returning: the caller may next use the
    // block from any stream. Allocation is not a hot path.
    absl::Status s = use_device(device_);
    if (s.ok()) {
      s = cuda_status(cudaMemsetAsync(ptr, 0, block, compute()), "cudaMemsetAsync (zero fill)");
    }
    if (s.ok()) {
      s = cuda_status(cudaStreamSynchronize(compute()), "cudaStreamSynchronize (zero fill)");
    }
    if (!s.ok()) {
      note(s);
      release(ptr);
      return s;
    }
    return static_cast<void*>(ptr);
  }

  // Immediate: the caller must have waited for the work queued on the block.
  void release(void* ptr) override {
    if (ptr == nullptr) return;
    auto* p = static_cast<std::byte*>(ptr);
    DSINF_CHECK_MSG(p >= arena_ && p < arena_ + arena_bytes_,
                    "release of a pointer outside the device arena");
    std::lock_guard<std::mutex> lock(arena_mu_);
    const bool released = region_->release(static_cast<size_t>(p - arena_)).has_value();
    DSINF_CHECK_MSG(released,
                    "release of a pointer this backend did not allocate, or a double release");
  }

  memory::ArenaStats memory_stats() const override {
    std::lock_guard<std::mutex> lock(arena_mu_);
    return region_->stats();
  }

  // ---- transfers ----
  absl::Status copy_to_device(void* dst_device, const void* src_host, size_t bytes,
                              Stream stream) override {
    return copy(dst_device, src_host, bytes, cudaMemcpyHostToDevice, stream,
                "cudaMemcpyAsync (to device)");
  }
  absl::Status copy_to_host(void* dst_host, const void* src_device, size_t bytes,
                            Stream stream) override {
    return copy(dst_host, src_device, bytes, cudaMemcpyDeviceToHost, stream,
                "cudaMemcpyAsync (to host)");
  }
  absl::Status fill_zero(void* dst_device, size_t bytes, Stream stream) override {
    if (bytes == 0) return absl::OkStatus();
    if (dst_device == nullptr) return absl::InvalidArgumentError("fill_zero of a null pointer");
    absl::Status s = use_device(device_);
    if (s.ok()) {
      s = cuda_status(cudaMemsetAsync(dst_device, 0, bytes, handle(stream)), "cudaMemsetAsync");
    }
    note(s);
    return s;
  }

  absl::Status convert(const void* src, DType src_type, void* dst, DType dst_type, size_t n,
                       Stream stream) override {
    absl::Status s = use_device(device_);
    if (s.ok()) s = cuda::convert(src, src_type, dst, dst_type, n, handle(stream));
    note(s);
    return s;
  }
  absl::Status accumulate(float* acc, const void* src, DType src_type, size_t n,
                          Stream stream) override {
    absl::Status s = use_device(device_);
    if (s.ok()) s = cuda::accumulate(acc, src, src_type, n, handle(stream));
    note(s);
    return s;
  }

  // ---- ordering ----
  Event record(Stream stream) override {
    const int s = stream_index(stream);
    note(use_device(device_));
    uint64_t seq = 0;
    cudaError_t err = cudaSuccess;
    {
      std::lock_guard<std::mutex> lock(event_mu_);
      EventRing& ring = rings_[s];
      seq = ring.next_seq++;
      const size_t slot = seq % kEventRing;
      err = cudaEventRecord(ring.events[slot], streams_[s]);
      if (err == cudaSuccess) ring.slot_seq[slot] = seq;
    }
    note(cuda_status(err, "cudaEventRecord"));
    return seq * kNumStreams + static_cast<uint64_t>(s) + 1;
  }

  void stream_wait(Stream stream, Event event) override {
    const int waiter = stream_index(stream);
    if (event == 0) return;  // no event: nothing to wait for
    const int s = static_cast<int>((event - 1) % kNumStreams);
    const uint64_t seq = (event - 1) / kNumStreams;
    note(use_device(device_));
    cudaError_t err = cudaSuccess;
    {
      std::lock_guard<std::mutex> lock(event_mu_);
      const EventRing& ring = rings_[s];
      if (seq >= ring.next_seq) {
        // A caller bug with no status to return: reported by the next wait().
        note(absl::InvalidArgumentError(
            absl::StrCat("stream_wait on event ", event, " that was never recorded")));
        return;
      }
      if (seq < ring.completed_below) return;  // known complete
      err = cudaStreamWaitEvent(streams_[waiter], ring.events[seq % kEventRing], 0);
    }
    note(cuda_status(err, "cudaStreamWaitEvent"));
  }

  absl::Status wait(Event event) override {
    if (event == 0) {
      return absl::InvalidArgumentError("wait on event 0 that was never recorded");
    }
    const int s = static_cast<int>((event - 1) % kNumStreams);
    const uint64_t seq = (event - 1) / kNumStreams;
    cudaEvent_t handle = nullptr;
    uint64_t slot_seq = 0;
    {
      std::lock_guard<std::mutex> lock(event_mu_);
      const EventRing& ring = rings_[s];
      if (seq >= ring.next_seq) {
        return absl::InvalidArgumentError(
            absl::StrCat("wait on event ", event, " that was never recorded"));
      }
      if (seq >= ring.completed_below) {
        const size_t slot = seq % kEventRing;
        handle = ring.events[slot];
        slot_seq = ring.slot_seq[slot];  // >= seq unless its record failed (then sticky)
      }
    }
    if (handle != nullptr) {
      // Outside the lock: other threads keep recording meanwhile. If the slot
      // is recorded again before the call, this waits for the later record,
      // which covers ours (see the top of the file).
      absl::Status st = use_device(device_);
      if (st.ok()) st = cuda_status(cudaEventSynchronize(handle), "cudaEventSynchronize");
      if (!st.ok()) {
        note(std::move(st));
        return sticky_error();
      }
      std::lock_guard<std::mutex> lock(event_mu_);
      EventRing& ring = rings_[s];
      ring.completed_below = std::max(ring.completed_below, slot_seq + 1);
    }
    return sticky_error();
  }

  // ---- ops, on the compute stream ----
  void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B,
                       int T, int C) override {
    run_op([&] { return cuda::encoder_forward(out, inp, wte, wpe, B, T, C, compute()); });
  }
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B,
                        int T, int C) override {
    run_op([&] { return cuda::encoder_backward(dwte, dwpe, dout, inp, B, T, C, compute()); });
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C) override {
    run_op([&] {
      return cuda::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, compute());
    });
  }
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override {
    run_op([&] {
      return cuda::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C,
                                      compute());
    });
  }
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                      int C, int OC) override {
    run_op([&] {
      return cuda::matmul_forward(*blas_, precision_, out, inp, weight, bias, N, C, OC, compute());
    });
  }
  void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, int N, int C, int OC) override {
    run_op([&] {
      return cuda::matmul_backward(*blas_, precision_, dinp, dweight, dbias, dout, inp, weight, N,
                                   C, OC, compute());
    });
  }
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                         int NH) override {
    run_op([&] {
      return cuda::attention_forward(*blas_, precision_, out, att, qkv, B, T, C, NH, compute());
    });
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                          int T, int C, int NH) override {
    run_op([&] {
      return cuda::attention_backward(*blas_, precision_, dqkv, dout, qkv, att, B, T, C, NH,
                                      compute());
    });
  }
  void gelu_forward(float* out, const float* inp, size_t n) override {
    run_op([&] { return cuda::gelu_forward(out, inp, n, compute()); });
  }
  void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) override {
    run_op([&] { return cuda::gelu_backward(dinp, inp, dout, n, compute()); });
  }
  void residual_forward(float* out, const float* a, const float* b, size_t n) override {
    run_op([&] { return cuda::residual_forward(out, a, b, n, compute()); });
  }
  void softmax_crossentropy(float* losses, float* dlogits, const float* logits,
                            const int32_t* targets, int N, int V, float dloss) override {
    run_op([&] {
      return cuda::softmax_crossentropy(losses, dlogits, logits, targets, N, V, dloss, compute());
    });
  }
  void scale(float* x, float s, size_t n) override {
    run_op([&] { return cuda::scale(x, s, n, compute()); });
  }
  void dropout_scale(float* out, const float* in, size_t n, float s, float p,
                     uint64_t key) override {
    run_op([&] { return cuda::dropout_scale(out, in, n, s, p, key, compute()); });
  }

  // ---- decoder ops, on the compute stream (fp32 whatever the matmul precision) ----
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                       float eps) override {
    run_op([&] { return cuda::rmsnorm_forward(out, rstd, inp, weight, N, C, eps, compute()); });
  }
  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                        const float* weight, const float* rstd, int N, int C) override {
    run_op([&] {
      return cuda::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C, compute());
    });
  }
  void rope_forward(float* x, const float* cos, const float* sin, int B, int T, int H,
                    int D) override {
    run_op([&] { return cuda::rope_forward(x, cos, sin, B, T, H, D, compute()); });
  }
  void rope_backward(float* dx, const float* cos, const float* sin, int B, int T, int H,
                     int D) override {
    run_op([&] { return cuda::rope_backward(dx, cos, sin, B, T, H, D, compute()); });
  }
  void swiglu_forward(float* out, const float* gate, const float* up, size_t n) override {
    run_op([&] { return cuda::swiglu_forward(out, gate, up, n, compute()); });
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                       const float* up, size_t n) override {
    run_op([&] { return cuda::swiglu_backward(dgate, dup, dout, gate, up, n, compute()); });
  }
  void flash_attention_forward(float* out, float* lse, const float* q, const float* k,
                               const float* v, int B, int T, int NH, int KV, int D,
                               float scale) override {
    run_op([&] {
      return cuda::flash_attention_forward(out, lse, q, k, v, B, T, NH, KV, D, scale, compute());
    });
  }
  void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                const float* k, const float* v, const float* out, const float* lse,
                                float* scratch, int B, int T, int NH, int KV, int D,
                                float scale) override {
    run_op([&] {
      return cuda::flash_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scratch, B, T, NH,
                                            KV, D, scale, compute());
    });
  }
  void cached_attention_forward(float* out, const float* q, const float* k_cache,
                                const float* v_cache, int Tq, int P, int NH, int KV, int D,
                                float scale) override {
    run_op([&] {
      return cuda::cached_attention_forward(out, q, k_cache, v_cache, Tq, P, NH, KV, D, scale,
                                            compute());
    });
  }

  // Synchronous by the interface: waits for the compute stream's work so far.
  // NaN when the reduction fails (the failure is also kept for wait()).
  double sum_squares(const float* x, size_t n) override {
    std::lock_guard<std::mutex> lock(stats_mu_);  // one user of the accumulator at a time
    absl::StatusOr<cpu::GradStats> stats = [&]() -> absl::StatusOr<cpu::GradStats> {
      DSINF_CUDA_RETURN_IF_ERROR(use_device(device_));
      DSINF_CUDA_RETURN_IF_ERROR(cuda::reset_grad_stats(stats_, compute()));
      DSINF_CUDA_RETURN_IF_ERROR(cuda::grad_stats(x, cpu::DType::kF32, n, compute(), stats_));
      return cuda::read_grad_stats(stats_, compute());
    }();
    if (!stats.ok()) {
      note(stats.status());
      return std::numeric_limits<double>::quiet_NaN();
    }
    // inf * inf and NaN propagate through the double sum already; this keeps
    // "any inf/NaN entry makes the result non-finite" whatever the sum does.
    if (stats->nonfinite > 0 && std::isfinite(stats->sum_squares)) {
      return std::numeric_limits<double>::quiet_NaN();
    }
    return stats->sum_squares;
  }

  void adam_step(float* params, const float* grads, float* m, float* v, size_t n,
                 const AdamHyper& hyper) override {
    cpu::AdamBuffers buffers;
    buffers.n = n;
    buffers.params = params;
    buffers.grads = grads;
    buffers.grad_dtype = cpu::DType::kF32;
    buffers.m = m;
    buffers.v = v;
    buffers.state_dtype = cpu::DType::kF32;
    buffers.params_copy = nullptr;
    run_op([&] { return cuda::fused_adam_step(buffers, hyper, compute(), nullptr); });
  }

 private:
  struct EventRing {
    std::array<cudaEvent_t, kEventRing> events{};
    std::array<uint64_t, kEventRing> slot_seq{};  // the seq last recorded into each slot
    uint64_t next_seq = 0;                        // seqs below it were recorded
    uint64_t completed_below = 0;                 // seqs below it are known complete
  };

  cudaStream_t handle(Stream stream) const { return streams_[stream_index(stream)]; }
  cudaStream_t compute() const { return streams_[static_cast<int>(Stream::kCompute)]; }

  template <typename Op>
  void run_op(Op&& op) {
    absl::Status s = use_device(device_);
    if (s.ok()) s = op();
    note(std::move(s));
  }

  absl::Status copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, Stream stream,
                    const char* what) {
    if (bytes == 0) return absl::OkStatus();
    if (dst == nullptr || src == nullptr) {
      return absl::InvalidArgumentError("copy with a null pointer");
    }
    absl::Status s = use_device(device_);
    if (s.ok()) s = cuda_status(cudaMemcpyAsync(dst, src, bytes, kind, handle(stream)), what);
    note(s);
    return s;
  }

  // Keeps the first failure for wait(). error_mu_ is always the last lock
  // taken (note() runs under event_mu_ too), so it cannot deadlock.
  void note(absl::Status status) {
    if (status.ok()) return;
    std::lock_guard<std::mutex> lock(error_mu_);
    if (first_error_.ok()) first_error_ = std::move(status);
  }
  absl::Status sticky_error() const {
    std::lock_guard<std::mutex> lock(error_mu_);
    return first_error_;
  }

  const int device_;
  const Precision precision_;

  void* arena_allocation_ = nullptr;  // what cudaMalloc returned
  std::byte* arena_ = nullptr;        // its first page boundary
  size_t arena_bytes_ = 0;
  mutable std::mutex arena_mu_;
  std::unique_ptr<memory::Region> region_;  // under arena_mu_

  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  cuda::DeviceGradStats* stats_ = nullptr;  // inside the workspace, under stats_mu_
  std::mutex stats_mu_;
  std::unique_ptr<cuda::Blas> blas_;

  std::array<cudaStream_t, kNumStreams> streams_{};
  std::mutex event_mu_;
  std::array<EventRing, kNumStreams> rings_{};  // under event_mu_

  mutable std::mutex error_mu_;
  absl::Status first_error_;  // under error_mu_
};

}  // namespace

bool cuda_built() { return true; }

absl::StatusOr<CudaDeviceInfo> cuda_device_info(int index) {
  DSINF_CUDA_RETURN_IF_ERROR(open_device(index));
  cudaDeviceProp prop{};
  DSINF_CUDA_RETURN_IF_ERROR(
      cuda_status(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties"));
  // cudaDeviceProp::clockRate is gone in CUDA 13; the attribute remains.
  int clock_khz = 0;
  DSINF_CUDA_RETURN_IF_ERROR(cuda_status(
      cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, index), "cudaDeviceGetAttribute"));
  size_t free_bytes = 0, total_bytes = 0;
  DSINF_CUDA_RETURN_IF_ERROR(
      cuda_status(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));

  CudaDeviceInfo info;
  info.index = index;
  info.name = prop.name;
  info.sm_major = prop.major;
  info.sm_minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.clock_ghz = clock_khz / 1e6;
  info.total_bytes = prop.totalGlobalMem;
  info.free_bytes = free_bytes;
  info.peak_bf16_tflops = peak_bf16_tflops(info.name, info.sm_major, info.sm_minor,
                                           info.multiprocessors, info.clock_ghz);
  return info;
}

absl::StatusOr<std::unique_ptr<Backend>> make_cuda_backend(const BackendOptions& options) {
  DSINF_CUDA_RETURN_IF_ERROR(find_device(options.device_index));
  auto backend = std::make_unique<CudaBackend>(options);
  DSINF_CUDA_RETURN_IF_ERROR(backend->init(options));  // on failure ~CudaBackend frees
  return std::unique_ptr<Backend>(std::move(backend));
}

absl::StatusOr<double> cuda_copy_ceiling_gbps(int device_index, size_t bytes, int iterations,
                                              bool to_device) {
  if (bytes == 0 || iterations < 1) {
    return absl::InvalidArgumentError("cuda_copy_ceiling_gbps needs bytes > 0 and iterations > 0");
  }
  DSINF_CUDA_RETURN_IF_ERROR(open_device(device_index));
  // Freed on every path (after the stream's copies finished).
  struct Resources {
    void* host = nullptr;
    void* device = nullptr;
    cudaStream_t stream = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;
    ~Resources() {
      if (stream != nullptr) (void)cudaStreamSynchronize(stream);
      if (start != nullptr) (void)cudaEventDestroy(start);
      if (stop != nullptr) (void)cudaEventDestroy(stop);
      if (stream != nullptr) (void)cudaStreamDestroy(stream);
      if (device != nullptr) (void)cudaFree(device);
      if (host != nullptr) (void)cudaFreeHost(host);
      (void)cudaGetLastError();
    }
  } r;
  DSINF_CUDA_RETURN_IF_ERROR(alloc_status(cudaHostAlloc(&r.host, bytes, cudaHostAllocDefault),
                                          absl::StrCat("cudaHostAlloc of ", bytes, " bytes")));
  DSINF_CUDA_RETURN_IF_ERROR(
      alloc_status(cudaMalloc(&r.device, bytes), absl::StrCat("cudaMalloc of ", bytes, " bytes")));
  DSINF_CUDA_RETURN_IF_ERROR(cuda_status(
      cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags"));
  DSINF_CUDA_RETURN_IF_ERROR(cuda_status(cudaEventCreate(&r.start), "cudaEventCreate"));
  DSINF_CUDA_RETURN_IF_ERROR(cuda_status(cudaEventCreate(&r.stop), "cudaEventCreate"));

  void* dst = to_device ? r.device : r.host;
  const void* src = to_device ? r.host : r.device;
  const cudaMemcpyKind kind = to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  // One warm-up copy; the start event is reached only after it finished.
  DSINF_CUDA_RETURN_IF_ERROR(
      cuda_status(cudaMemcpyAsync(dst, src, bytes, kind, r.stream), "cudaMemcpyAsync"));
  DSINF_CUDA_RETURN_IF_ERROR(cuda_status(cudaEventRecord(r.start, r.stream), "cudaEventRecord"));
  for (int i = 0; i < iterations; ++i) {
    DSINF_CUDA_RETURN_IF_ERROR(
        cuda_status(cudaMemcpyAsync(dst, src, bytes, kind, r.stream), "cudaMemcpyAsync"));
  }
  DSINF_CUDA_RETURN_IF_ERROR(cuda_status(cudaEventRecord(r.stop, r.stream), "cudaEventRecord"));
  DSINF_CUDA_RETURN_IF_ERROR(cuda_status(cudaEventSynchronize(r.stop), "cudaEventSynchronize"));
  float ms = 0;
  DSINF_CUDA_RETURN_IF_ERROR(
      cuda_status(cudaEventElapsedTime(&ms, r.start, r.stop), "cudaEventElapsedTime"));
  if (!(ms > 0)) {
    return absl::InternalError(absl::StrCat("copy ceiling: elapsed time of ", ms, " ms"));
  }
  return static_cast<double>(bytes) * iterations / (static_cast<double>(ms) * 1e-3) / 1e9;
}

}  // namespace dsinf::kernels
