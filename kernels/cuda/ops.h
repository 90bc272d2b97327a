// The CUDA twins of the CPU reference ops (kernels/cpu/ops.h): the same
// shapes, layouts and "+=" conventions, on device memory, queued on a stream.
// CudaBackend (cuda_backend.cc) calls these; the gpu-labelled tests compare
// each against its CPU twin.
//
// Every tensor is fp32 in memory. Matrix products (matmul and attention's
// products) go through cuBLASLt with fp32 accumulation; with a reduced
// Precision the operands are rounded to bf16/fp16 by the tensor cores
// (CUBLAS_COMPUTE_32F_FAST_16BF / _16F), else computed in fp32
// (CUBLAS_COMPUTE_32F, no TF32). Everything else computes in fp32.
//
// Errors: every launch and library call is checked; a failure returns
// kInternal naming the call, kInvalidArgument a bad shape. Nothing here waits
// for the device except where a function says so.
//
// This header needs no CUDA headers: streams are cudaStream_t passed as void*.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace dsinf::kernels::cuda {

using StreamHandle = void*;  // a cudaStream_t (same as adam.h's)

// The cuBLASLt handle and the device scratch the products need, made once per
// backend; `workspace` (device memory, `workspace_bytes`, 256-byte aligned) is
// carved by the caller and owned by it: kBlasWorkspaceBytes for cuBLASLt,
// then scratch for attention_backward.
class Blas {
 public:
  static absl::StatusOr<std::unique_ptr<Blas>> create(void* workspace, size_t workspace_bytes);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
  void* handle() const { return handle_; }  // cublasLtHandle_t
  void* workspace() const { return workspace_; }
  size_t workspace_bytes() const { return workspace_bytes_; }

  // The products planned so far (descriptors and the chosen algorithm), by
  // shape, strides, alignments and precision: a training step repeats a few
  // dozen shapes, so each is planned once (ops.cu; bounded).
  struct Plans;
  Plans& plans() const { return *plans_; }

 private:
  Blas(void* handle, void* workspace, size_t bytes);
  void* handle_;
  void* workspace_;
  size_t workspace_bytes_;
  std::unique_ptr<Plans> plans_;
};

// cuBLASLt's own workspace, at the front of Blas::workspace().
inline constexpr size_t kBlasWorkspaceBytes = size_t{32} << 20;
// The scratch attention_backward uses behind it (backend.h's).
using kernels::attention_scratch_bytes;

// wpe null: no position embeddings.
absl::Status encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe,
                             int B, int T, int C, StreamHandle stream);
// Deterministic (no floating-point atomics): each dwte row adds its tokens'
// dout rows in token order. dwpe null: no position embeddings.
absl::Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp,
                              int B, int T, int C, StreamHandle stream);
absl::Status layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                               const float* weight, const float* bias, int N, int C,
                               StreamHandle stream);
// Deterministic: dweight/dbias are reduced over rows in a fixed order.
absl::Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                const float* inp, const float* weight, const float* mean,
                                const float* rstd, int N, int C, StreamHandle stream);
absl::Status matmul_forward(Blas& blas, Precision precision, float* out, const float* inp,
                            const float* weight, const float* bias, int N, int C, int OC,
                            StreamHandle stream);
absl::Status matmul_backward(Blas& blas, Precision precision, float* dinp, float* dweight,
                             float* dbias, const float* dout, const float* inp, const float* weight,
                             int N, int C, int OC, StreamHandle stream);
// att (B,NH,T,T): softmax probabilities, exact zeros above the diagonal.
absl::Status attention_forward(Blas& blas, Precision precision, float* out, float* att,
                               const float* qkv, int B, int T, int C, int NH, StreamHandle stream);
// Uses the scratch of blas' workspace after kBlasWorkspaceBytes, heads in
// groups that fit; kInvalidArgument if not even one (T,T) block fits.
absl::Status attention_backward(Blas& blas, Precision precision, float* dqkv, const float* dout,
                                const float* qkv, const float* att, int B, int T, int C, int NH,
                                StreamHandle stream);
absl::Status gelu_forward(float* out, const float* inp, size_t n, StreamHandle stream);
absl::Status gelu_backward(float* dinp, const float* inp, const float* dout, size_t n,
                           StreamHandle stream);
absl::Status residual_forward(float* out, const float* a, const float* b, size_t n,
                              StreamHandle stream);
absl::Status softmax_crossentropy(float* losses, float* dlogits, const float* logits,
                                  const int32_t* targets, int N, int V, float dloss,
                                  StreamHandle stream);
absl::Status scale(float* x, float s, size_t n, StreamHandle stream);
absl::Status dropout_scale(float* out, const float* in, size_t n, float s, float p, uint64_t key,
                           StreamHandle stream);

}  // namespace dsinf::kernels::cuda
