// The CUDA twins of the CPU reference ops (see ops.h and kernels/cpu/ops.cc for
// the semantics each kernel reproduces). Matrix products go through cuBLASLt;
// everything else is a plain kernel written for clarity: grid-stride loops for
// elementwise work, one warp per row for row reductions, and reductions over
// rows (dbias, dweight, dwte, dwpe) owned per output column and summed in a
// fixed order, so every result is deterministic (no floating-point atomics).
//
// Row-major versus cuBLAS's column-major: a row-major matrix X (r,c) with row
// stride ld is, read column-major, the matrix X^T (c,r) with leading dimension
// ld. So the row-major product C (M,N) = op(A) (M,K) @ op(B) (K,N) is computed
// as the column-major product C^T (N,M) = op(B)^T (N,K) @ op(A)^T (K,M):
// cuBLAS's "A" operand is our B and its "B" operand is our A (see Matmul::init).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/ops.h"
#include "kernels/dropout_mask.h"
#include "kernels/cuda/warp.cuh"

namespace dsinf::kernels::cuda {
namespace {

constexpr int kThreads = 256;  // a multiple of 32
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr size_t kMaxBlocks = 8192;  // grid-stride kernels: enough waves for an H100
constexpr int kCeThreads = 512;      // softmax_crossentropy: one block per row
// Column reductions: a block owns kColTile adjacent columns (one per lane, so
// each row's loads coalesce) and kRowLanes row lanes; lane y sums rows y,
// y + kRowLanes, ... in order and the lanes' partials are added in lane order.
constexpr int kColTile = 32;
constexpr int kRowLanes = 16;
constexpr int kColThreads = kColTile * kRowLanes;
// encoder_backward's dwte: token ids staged in shared memory per pass, and the
// number of residue classes (id % kTokenClasses) the vocabulary is split into.
constexpr int kTokenTile = 1024;
constexpr int kTokenClasses = 64;

// ---------------------------------------------------------------- errors --

absl::Status blas_status(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(std::string("cuBLASLt ") + what + " failed: " +
                             cublasLtGetStatusName(st) + ": " + cublasLtGetStatusString(st));
}

absl::Status invalid(const std::string& what) { return absl::InvalidArgumentError(what); }

cudaStream_t as_stream(StreamHandle s) { return static_cast<cudaStream_t>(s); }

unsigned grid_for(size_t units) {
  const size_t blocks = (units + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<size_t>(blocks, 1, kMaxBlocks));
}

// Blocks for `rows` rows at one warp per row.
unsigned row_blocks(size_t rows) {
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

// --------------------------------------------------------- reductions --

// warp_sum and warp_max: warp.cuh.

// Block-wide sum/max; every thread gets the result. `shared` holds 32 floats.
// blockDim.x must be a multiple of 32 and at most 1024.
template <bool kMax>
__device__ float block_reduce(float v, float* shared) {
  v = kMax ? warp_max(v) : warp_sum(v);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  __syncthreads();  // `shared` may still be read by a previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = static_cast<int>(blockDim.x >> 5);
  v = lane < warps ? shared[lane] : (kMax ? -INFINITY : 0.0f);
  return kMax ? warp_max(v) : warp_sum(v);  // every warp redundantly, same result
}

// ----------------------------------------------------------- encoder --

__global__ void __launch_bounds__(kThreads)
    encoder_forward_kernel(float* out, const int32_t* inp, const float* wte, const float* wpe,
                           size_t total, int T, int C) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total; i += stride) {
    const size_t n = i / C;
    const size_t c = i - n * C;
    const size_t t = n % T;
    const float token = wte[static_cast<size_t>(inp[n]) * C + c];
    out[i] = wpe == nullptr ? token : token + wpe[t * C + c];
  }
}

// dwpe[t][c] += dout[b][t][c] for b in order: one thread per (t,c).
__global__ void __launch_bounds__(kThreads)
    encoder_backward_wpe_kernel(float* dwpe, const float* dout, int B, int T, int C) {
  const size_t total = static_cast<size_t>(T) * C;
  const size_t window = total;  // elements of dout per b
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total; i += stride) {
    float acc = dwpe[i];
    for (int b = 0; b < B; ++b) acc += dout[b * window + i];
    dwpe[i] = acc;
  }
}

// dwte[inp[n]][c] += dout[n][c] for every token n in order. Block (x, y) owns
// channels [x*kThreads, (x+1)*kThreads) of the dwte rows whose token id is
// = y mod kTokenClasses: thread c walks all tokens in order and adds those of
// its class, so each dwte element is updated by exactly one thread, in token
// order (the CPU's order, deterministic). The token ids are staged through
// shared memory; all threads of a block see the same id at a time, so there is
// no divergence. Cost: every block scans all N ids (cheap, from shared memory)
// and does about N / kTokenClasses dependent read-modify-writes per thread;
// dout is read exactly once overall.
__global__ void __launch_bounds__(kThreads)
    encoder_backward_wte_kernel(float* dwte, const float* dout, const int32_t* inp, int N, int C) {
  __shared__ int32_t ids[kTokenTile];
  const int c = static_cast<int>(blockIdx.x) * kThreads + static_cast<int>(threadIdx.x);
  const int cls = static_cast<int>(blockIdx.y);
  for (int n0 = 0; n0 < N; n0 += kTokenTile) {
    const int len = min(kTokenTile, N - n0);
    __syncthreads();  // the previous tile has been consumed
    for (int i = threadIdx.x; i < len; i += kThreads) ids[i] = inp[n0 + i];
    __syncthreads();
    if (c < C) {
      for (int i = 0; i < len; ++i) {
        const int id = ids[i];
        if (id < 0 || id % kTokenClasses != cls) continue;
        dwte[static_cast<size_t>(id) * C + c] += dout[static_cast<size_t>(n0 + i) * C + c];
      }
    }
  }
}

// ---------------------------------------------------------- layernorm --

// One warp per row.
__global__ void __launch_bounds__(kThreads)
    layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp,
                             const float* weight, const float* bias, int N, int C) {
  const int lane = threadIdx.x & 31;
  const int row =
      static_cast<int>(blockIdx.x) * kWarpsPerBlock + static_cast<int>(threadIdx.x >> 5);
  if (row >= N) return;
  const float* x = inp + static_cast<size_t>(row) * C;
  float sum = 0.0f;
  for (int c = lane; c < C; c += 32) sum += x[c];
  const float m = warp_sum(sum) / static_cast<float>(C);
  float sq = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float d = x[c] - m;
    sq += d * d;
  }
  const float var = warp_sum(sq) / static_cast<float>(C);
  const float s = 1.0f / sqrtf(var + 1e-5f);
  float* o = out + static_cast<size_t>(row) * C;
  for (int c = lane; c < C; c += 32) o[c] = (x[c] - m) * s * weight[c] + bias[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// dinp += per row, one warp per row (the formula of cpu/ops.cc).
__global__ void __launch_bounds__(kThreads)
    layernorm_backward_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                              const float* mean, const float* rstd, int N, int C) {
  const int lane = threadIdx.x & 31;
  const int row =
      static_cast<int>(blockIdx.x) * kWarpsPerBlock + static_cast<int>(threadIdx.x >> 5);
  if (row >= N) return;
  const size_t base = static_cast<size_t>(row) * C;
  const float* x = inp + base;
  const float* dy = dout + base;
  const float m = mean[row];
  const float s = rstd[row];
  float dnorm_sum = 0.0f;
  float dnorm_norm_sum = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float dnorm = weight[c] * dy[c];
    dnorm_sum += dnorm;
    dnorm_norm_sum += dnorm * ((x[c] - m) * s);
  }
  const float dnorm_mean = warp_sum(dnorm_sum) / static_cast<float>(C);
  const float dnorm_norm_mean = warp_sum(dnorm_norm_sum) / static_cast<float>(C);
  float* dx = dinp + base;
  for (int c = lane; c < C; c += 32) {
    const float norm = (x[c] - m) * s;
    const float dnorm = weight[c] * dy[c];
    dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
  }
}

// Deterministic column sums over N rows of dout (N,C): dbias[c] += sum_n dout[n][c]
// and, for LayerNorm, dweight[c] += sum_n norm[n][c] * dout[n][c] with
// norm = (inp - mean[n]) * rstd[n]. Block dims (kColTile, kRowLanes); see kColTile.
template <bool kLayerNorm>
__global__ void __launch_bounds__(kColThreads)
    column_sums_kernel(float* dbias, float* dweight, const float* dout, const float* inp,
                       const float* mean, const float* rstd, int N, int C) {
  __shared__ float part_b[kRowLanes][kColTile];
  __shared__ float part_w[kRowLanes][kColTile];
  const int x = threadIdx.x;
  const int y = threadIdx.y;
  const int c = static_cast<int>(blockIdx.x) * kColTile + x;
  float sb = 0.0f;
  float sw = 0.0f;
  if (c < C) {
    for (int n = y; n < N; n += kRowLanes) {
      const size_t i = static_cast<size_t>(n) * C + c;
      const float d = dout[i];
      sb += d;
      if constexpr (kLayerNorm) sw += ((inp[i] - mean[n]) * rstd[n]) * d;
    }
  }
  part_b[y][x] = sb;
  part_w[y][x] = sw;
  __syncthreads();
  if (y == 0 && c < C) {
    float tb = 0.0f;
    float tw = 0.0f;
    for (int r = 0; r < kRowLanes; ++r) {
      tb += part_b[r][x];
      tw += part_w[r][x];
    }
    dbias[c] += tb;
    if constexpr (kLayerNorm) dweight[c] += tw;
  }
}

template <bool kLayerNorm>
absl::Status launch_column_sums(float* dbias, float* dweight, const float* dout, const float* inp,
                                const float* mean, const float* rstd, int N, int C,
                                cudaStream_t stream) {
  const dim3 block(kColTile, kRowLanes);
  const unsigned grid = static_cast<unsigned>((C + kColTile - 1) / kColTile);
  column_sums_kernel<kLayerNorm>
      <<<grid, block, 0, stream>>>(dbias, dweight, dout, inp, mean, rstd, N, C);
  return launch_status("launch of column_sums_kernel");
}

// ------------------------------------------------------------- matmul --

// out (N,OC) += bias (OC) broadcast over rows.
__global__ void __launch_bounds__(kThreads)
    add_bias_kernel(float* out, const float* bias, size_t total, int OC) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total; i += stride) {
    out[i] += bias[i % OC];
  }
}

// A row-major (batched) product C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C.
// A is stored (M,K) with row stride lda, or (K,M) when trans_a; B is stored (K,N)
// with row stride ldb, or (N,K) when trans_b; C is (M,N) with row stride ldc.
// Batch member i uses A + i*stride_a, B + i*stride_b, C + i*stride_c (elements).
struct Gemm {
  bool trans_a;
  bool trans_b;
  int M, N, K;
  int64_t lda, ldb, ldc;
  int batch;
  int64_t stride_a, stride_b, stride_c;
};

Gemm make_gemm(bool trans_a, bool trans_b, int M, int N, int K, int64_t lda, int64_t ldb,
               int64_t ldc, int batch = 1, int64_t stride_a = 0, int64_t stride_b = 0,
               int64_t stride_c = 0) {
  return Gemm{trans_a, trans_b, M, N, K, lda, ldb, ldc, batch, stride_a, stride_b, stride_c};
}

// The alignment cuBLASLt may assume for a matrix: the largest power of two (at
// most 256) dividing the address p and stride * sizeof(float), where `stride`
// (elements) divides the matrix's row stride and every offset (batch member,
// window, head group) the pointer is moved by. Rows that start less aligned
// than the base must not be assumed aligned either, hence the row stride.
uint32_t alignment(const void* p, int64_t stride) {
  const uint64_t x = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)) | uint64_t{256} |
                     (static_cast<uint64_t>(stride) * sizeof(float));
  return static_cast<uint32_t>(x & (~x + 1));
}

absl::Status compute_type(Precision p, cublasComputeType_t* out) {
  switch (p) {
    case Precision::kFp32:
      *out = CUBLAS_COMPUTE_32F;
      return absl::OkStatus();
    case Precision::kBf16:
      *out = CUBLAS_COMPUTE_32F_FAST_16BF;
      return absl::OkStatus();
    case Precision::kFp16:
      *out = CUBLAS_COMPUTE_32F_FAST_16F;
      return absl::OkStatus();
  }
  return invalid("unknown matmul precision");
}

// One cuBLASLt product's descriptors and algorithm, made once and run for as
// many pointer sets as share the shape (and the alignments given to init).
// The descriptors are host objects: destroying them after queuing is fine.
class Matmul {
 public:
  Matmul() = default;
  ~Matmul() {
    if (pref_ != nullptr) (void)cublasLtMatmulPreferenceDestroy(pref_);
    if (a_ != nullptr) (void)cublasLtMatrixLayoutDestroy(a_);
    if (b_ != nullptr) (void)cublasLtMatrixLayoutDestroy(b_);
    if (c_ != nullptr) (void)cublasLtMatrixLayoutDestroy(c_);
    if (op_ != nullptr) (void)cublasLtMatmulDescDestroy(op_);
  }
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  // align_a/b/c: the byte alignment (a power of two, <= 256) of every A, B, C pointer run() gets.
  absl::Status init(const Blas& blas, Precision precision, const Gemm& g, uint32_t align_a,
                    uint32_t align_b, uint32_t align_c) {
    cublasComputeType_t compute;
    DSINF_CUDA_RETURN_IF_ERROR(compute_type(precision, &compute));
    DSINF_CUDA_RETURN_IF_ERROR(blas_status(cublasLtMatmulDescCreate(&op_, compute, CUDA_R_32F),
                                           "cublasLtMatmulDescCreate"));
    // Column-major: D (N,M) = opA(our B) (N,K) @ opB(our A) (K,M).
    // Our B read column-major is B^T: stored (K,N) row-major it is the (N,K)
    // column-major matrix op(B)^T itself (no transpose); stored (N,K) (trans_b)
    // it is the (K,N) column-major matrix op(B), so cuBLAS transposes it.
    // Likewise our A: stored (M,K) it is (K,M) column-major = op(A)^T; stored
    // (K,M) (trans_a) it is (M,K) column-major = op(A), transposed by cuBLAS.
    const int32_t op_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int32_t op_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    DSINF_CUDA_RETURN_IF_ERROR(blas_status(
        cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)),
        "cublasLtMatmulDescSetAttribute (TRANSA)"));
    DSINF_CUDA_RETURN_IF_ERROR(blas_status(
        cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)),
        "cublasLtMatmulDescSetAttribute (TRANSB)"));
    // Layouts describe the stored matrices (before the op), column-major (rows, cols, ld).
    const uint64_t M = static_cast<uint64_t>(g.M);
    const uint64_t N = static_cast<uint64_t>(g.N);
    const uint64_t K = static_cast<uint64_t>(g.K);
    DSINF_CUDA_RETURN_IF_ERROR(
        make_layout(&a_, g.trans_b ? K : N, g.trans_b ? N : K, g.ldb, g.batch, g.stride_b));
    DSINF_CUDA_RETURN_IF_ERROR(
        make_layout(&b_, g.trans_a ? M : K, g.trans_a ? K : M, g.lda, g.batch, g.stride_a));
    DSINF_CUDA_RETURN_IF_ERROR(make_layout(&c_, N, M, g.ldc, g.batch, g.stride_c));

    DSINF_CUDA_RETURN_IF_ERROR(
        blas_status(cublasLtMatmulPreferenceCreate(&pref_), "cublasLtMatmulPreferenceCreate"));
    const uint64_t ws = kBlasWorkspaceBytes;
    DSINF_CUDA_RETURN_IF_ERROR(
        blas_status(cublasLtMatmulPreferenceSetAttribute(
                        pref_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
                    "cublasLtMatmulPreferenceSetAttribute (MAX_WORKSPACE_BYTES)"));
    // cuBLASLt's A is our B and its B our A.
    const uint32_t aligns[4] = {align_b, align_a, align_c, align_c};
    const cublasLtMatmulPreferenceAttributes_t align_attrs[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; ++i) {
      DSINF_CUDA_RETURN_IF_ERROR(
          blas_status(cublasLtMatmulPreferenceSetAttribute(pref_, align_attrs[i], &aligns[i],
                                                           sizeof(aligns[i])),
                      "cublasLtMatmulPreferenceSetAttribute (MIN_ALIGNMENT)"));
    }
    cublasLtMatmulHeuristicResult_t result{};
    int count = 0;
    // No algorithm for the problem comes back as CUBLAS_STATUS_NOT_SUPPORTED:
    // reported with the shape below, like an empty result.
    const cublasStatus_t found =
        cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(blas.handle()), op_, a_, b_,
                                       c_, c_, pref_, 1, &result, &count);
    if (found != CUBLAS_STATUS_NOT_SUPPORTED) {
      DSINF_CUDA_RETURN_IF_ERROR(blas_status(found, "cublasLtMatmulAlgoGetHeuristic"));
    }
    if (found != CUBLAS_STATUS_SUCCESS || count < 1 || result.state != CUBLAS_STATUS_SUCCESS) {
      return absl::InternalError(
          std::string("cuBLASLt cublasLtMatmulAlgoGetHeuristic found no algorithm for M=") +
          std::to_string(g.M) + " N=" + std::to_string(g.N) + " K=" + std::to_string(g.K) +
          " batch=" + std::to_string(g.batch) + " trans_a=" + std::to_string(g.trans_a) +
          " trans_b=" + std::to_string(g.trans_b) + " align=" + std::to_string(align_a) + "/" +
          std::to_string(align_b) + "/" + std::to_string(align_c) +
          " precision=" + precision_name(precision));
    }
    algo_ = result.algo;
    return absl::OkStatus();
  }

  // C = alpha * op(A) @ op(B) + beta * C (in place: C is cuBLASLt's C and D).
  // Every product uses the same cuBLASLt workspace, so all are queued on one
  // stream (the backend's compute stream); products on two streams at once would race.
  absl::Status run(const Blas& blas, float alpha, const float* A, const float* B, float beta,
                   float* C, cudaStream_t stream) const {
    return blas_status(
        cublasLtMatmul(static_cast<cublasLtHandle_t>(blas.handle()), op_, &alpha, B, a_, A, b_,
                       &beta, C, c_, C, c_, &algo_, blas.workspace(), kBlasWorkspaceBytes, stream),
        "cublasLtMatmul");
  }

 private:
  static absl::Status make_layout(cublasLtMatrixLayout_t* layout, uint64_t rows, uint64_t cols,
                                  int64_t ld, int batch, int64_t stride) {
    DSINF_CUDA_RETURN_IF_ERROR(
        blas_status(cublasLtMatrixLayoutCreate(layout, CUDA_R_32F, rows, cols, ld),
                    "cublasLtMatrixLayoutCreate"));
    if (batch > 1) {
      const int32_t count = batch;
      DSINF_CUDA_RETURN_IF_ERROR(
          blas_status(cublasLtMatrixLayoutSetAttribute(*layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                       &count, sizeof(count)),
                      "cublasLtMatrixLayoutSetAttribute (BATCH_COUNT)"));
      DSINF_CUDA_RETURN_IF_ERROR(blas_status(
          cublasLtMatrixLayoutSetAttribute(*layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                           &stride, sizeof(stride)),
          "cublasLtMatrixLayoutSetAttribute (STRIDED_BATCH_OFFSET)"));
    }
    return absl::OkStatus();
  }

  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr;  // cuBLASLt's A: our B
  cublasLtMatrixLayout_t b_ = nullptr;  // cuBLASLt's B: our A
  cublasLtMatrixLayout_t c_ = nullptr;  // C and D
  cublasLtMatmulPreference_t pref_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
};

// The planned product for a Gemm shape, from blas.plans() (planned on first use).
// Past kMaxPlans distinct shapes the cache starts over (a run uses a few
// dozen), so memory stays bounded; a caller's plan lives while it holds it.
absl::StatusOr<std::shared_ptr<const Matmul>> planned(const Blas& blas, Precision precision,
                                                      const Gemm& g, uint32_t align_a,
                                                      uint32_t align_b, uint32_t align_c);

// ---------------------------------------------------------- attention --

// In place on rows of att (rows of length T, row r is query t = r % T): causal
// softmax over t2 <= t of the (already scaled) scores, exact zeros above the
// diagonal. One warp per row; lane l owns elements l, l+32, ... in every pass.
__global__ void __launch_bounds__(kThreads) causal_softmax_kernel(float* att, int T, int64_t rows) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int t = static_cast<int>(row % T);
  float* a = att + row * T;
  float m = -INFINITY;
  for (int t2 = lane; t2 <= t; t2 += 32) m = fmaxf(m, a[t2]);
  m = warp_max(m);
  float sum = 0.0f;
  for (int t2 = lane; t2 <= t; t2 += 32) {
    const float e = expf(a[t2] - m);
    a[t2] = e;
    sum += e;
  }
  const float inv_sum = 1.0f / warp_sum(sum);
  for (int t2 = lane; t2 < T; t2 += 32) a[t2] = t2 <= t ? a[t2] * inv_sum : 0.0f;
}

// In place on rows of datt (d loss / d att) into d loss / d score:
// dscore = att * (datt - sum_t2 att*datt) * scale over t2 <= t, 0 above the
// diagonal. att rows correspond one to one. One warp per row.
__global__ void __launch_bounds__(kThreads)
    causal_softmax_backward_kernel(float* datt, const float* att, int T, int64_t rows,
                                   float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int t = static_cast<int>(row % T);
  float* d = datt + row * T;
  const float* a = att + row * T;
  float dot = 0.0f;
  for (int t2 = lane; t2 <= t; t2 += 32) dot += a[t2] * d[t2];
  dot = warp_sum(dot);
  for (int t2 = lane; t2 < T; t2 += 32) d[t2] = t2 <= t ? a[t2] * (d[t2] - dot) * scale : 0.0f;
}

absl::Status check_attention_shape(int B, int T, int C, int NH) {
  if (B < 0 || T < 0 || C < 0) return invalid("attention: negative shape");
  if (NH <= 0) return invalid("attention: NH must be positive");
  if (C % NH != 0) return invalid("attention: C must be a multiple of NH");
  return absl::OkStatus();
}

// ---------------------------------------------------------------- GELU --

constexpr float kSqrt2OverPi = static_cast<float>(0.79788456080286535588);  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;

// tanh(u) and 1 - tanh(u)^2 from one exp that cannot overflow (cpu/ops.cc's formula).
__device__ __forceinline__ void tanh_and_sech2(float u, float* th, float* sech2) {
  const float e = expf(-2.0f * fabsf(u));  // in (0, 1]
  const float r = 1.0f / (1.0f + e);
  *th = copysignf((1.0f - e) * r, u);
  *sech2 = 4.0f * e * r * r;
}

__global__ void __launch_bounds__(kThreads)
    gelu_forward_kernel(float* out, const float* inp, size_t n) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = inp[i];
    float th, sech2;
    tanh_and_sech2(kSqrt2OverPi * (x + kGeluCubic * x * x * x), &th, &sech2);
    out[i] = 0.5f * x * (1.0f + th);
  }
}

__global__ void __launch_bounds__(kThreads)
    gelu_backward_kernel(float* dinp, const float* inp, const float* dout, size_t n) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = inp[i];
    float th, sech2;
    tanh_and_sech2(kSqrt2OverPi * (x + kGeluCubic * x * x * x), &th, &sech2);
    const float grad =
        0.5f * (1.0f + th) + 0.5f * x * sech2 * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
    dinp[i] += grad * dout[i];
  }
}

// ------------------------------------------------------- elementwise --

__global__ void __launch_bounds__(kThreads)
    residual_kernel(float* out, const float* a, const float* b, size_t n) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = a[i] + b[i];
  }
}

__global__ void __launch_bounds__(kThreads) scale_kernel(float* x, float s, size_t n) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) x[i] *= s;
}

__global__ void __launch_bounds__(kThreads)
    dropout_scale_kernel(float* out, const float* in, size_t n, float s, float p, uint64_t key) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = dropout_keep(key, i, p) ? in[i] * s : 0.0f;
  }
}

// ------------------------------------------------ softmax cross-entropy --

// One block per row. dlogits may alias logits: every read of the row (the
// target logit, the max and sum passes) happens before the barriers inside the
// second block reduction, and in the write pass each thread reads an element
// just before writing that same element.
__global__ void __launch_bounds__(kCeThreads)
    crossentropy_kernel(float* losses, float* dlogits, const float* logits, const int32_t* targets,
                        int V, float dloss) {
  __shared__ float shared[32];
  const size_t row = blockIdx.x;
  const float* x = logits + row * V;
  const int target = targets[row];
  if (target < 0) {  // masked (kIgnoreTarget): no loss, no gradient
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (dlogits != nullptr) {
      for (int i = threadIdx.x; i < V; i += kCeThreads) dlogits[row * V + i] = 0.0f;
    }
    return;
  }
  const bool valid = target < V;
  const float target_logit = valid ? x[target] : NAN;
  float m = -INFINITY;
  for (int i = threadIdx.x; i < V; i += kCeThreads) m = fmaxf(m, x[i]);
  m = block_reduce<true>(m, shared);
  float sum = 0.0f;
  for (int i = threadIdx.x; i < V; i += kCeThreads) sum += expf(x[i] - m);
  sum = block_reduce<false>(sum, shared);
  // An out-of-range target (the CPU aborts) gives a NaN loss.
  if (threadIdx.x == 0) losses[row] = valid ? (m + logf(sum)) - target_logit : NAN;
  if (dlogits == nullptr) return;
  float* d = dlogits + row * V;
  const float inv_sum = 1.0f / sum;
  for (int i = threadIdx.x; i < V; i += kCeThreads) {
    const float p = expf(x[i] - m) * inv_sum;
    d[i] = (i == target ? p - 1.0f : p) * dloss;
  }
}

}  // namespace

// ---------------------------------------------------------------- Blas --

absl::StatusOr<std::unique_ptr<Blas>> Blas::create(void* workspace, size_t workspace_bytes) {
  if (workspace == nullptr) return invalid("Blas workspace is null");
  if (workspace_bytes < kBlasWorkspaceBytes) {
    return invalid("Blas workspace of " + std::to_string(workspace_bytes) +
                   " bytes is smaller than kBlasWorkspaceBytes (" +
                   std::to_string(kBlasWorkspaceBytes) + ")");
  }
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) {
    return invalid("Blas workspace is not 256-byte aligned");
  }
  cublasLtHandle_t handle = nullptr;
  DSINF_CUDA_RETURN_IF_ERROR(blas_status(cublasLtCreate(&handle), "cublasLtCreate"));
  return std::unique_ptr<Blas>(new Blas(handle, workspace, workspace_bytes));
}

struct Blas::Plans {
  using Key = std::array<int64_t, 16>;
  std::mutex mu;
  std::map<Key, std::shared_ptr<const Matmul>> by_key;
};

Blas::Blas(void* handle, void* workspace, size_t bytes)
    : handle_(handle), workspace_(workspace), workspace_bytes_(bytes), plans_(new Plans) {}

Blas::~Blas() {
  plans_.reset();  // the descriptors before the handle
  if (handle_ != nullptr) (void)cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
}

namespace {

constexpr size_t kMaxPlans = 256;

absl::StatusOr<std::shared_ptr<const Matmul>> planned(const Blas& blas, Precision precision,
                                                      const Gemm& g, uint32_t align_a,
                                                      uint32_t align_b, uint32_t align_c) {
  const Blas::Plans::Key key = {static_cast<int64_t>(precision),
                                g.trans_a,
                                g.trans_b,
                                g.M,
                                g.N,
                                g.K,
                                g.lda,
                                g.ldb,
                                g.ldc,
                                g.batch,
                                g.stride_a,
                                g.stride_b,
                                g.stride_c,
                                align_a,
                                align_b,
                                align_c};
  Blas::Plans& plans = blas.plans();
  std::lock_guard<std::mutex> lock(plans.mu);
  if (auto it = plans.by_key.find(key); it != plans.by_key.end()) return it->second;
  auto mm = std::make_shared<Matmul>();
  DSINF_CUDA_RETURN_IF_ERROR(mm->init(blas, precision, g, align_a, align_b, align_c));
  // Callers hold their plans while they use them: starting over frees none in use.
  if (plans.by_key.size() >= kMaxPlans) plans.by_key.clear();
  plans.by_key.emplace(key, mm);
  return std::shared_ptr<const Matmul>(std::move(mm));
}

}  // namespace

// ------------------------------------------------------------- encoder --

absl::Status encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe,
                             int B, int T, int C, StreamHandle stream) {
  if (B < 0 || T < 0 || C < 0) return invalid("encoder_forward: negative shape");
  const size_t total = static_cast<size_t>(B) * T * C;
  if (total == 0) return absl::OkStatus();
  if (!out || !inp || !wte) return invalid("encoder_forward: null tensor");  // wpe may be null
  encoder_forward_kernel<<<grid_for(total), kThreads, 0, as_stream(stream)>>>(out, inp, wte, wpe,
                                                                              total, T, C);
  return launch_status("launch of encoder_forward_kernel");
}

absl::Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp,
                              int B, int T, int C, StreamHandle stream) {
  if (B < 0 || T < 0 || C < 0) return invalid("encoder_backward: negative shape");
  const size_t tokens = static_cast<size_t>(B) * T;
  if (tokens == 0 || C == 0) return absl::OkStatus();
  if (tokens > static_cast<size_t>(INT32_MAX)) return invalid("encoder_backward: B*T too large");
  if (!dwte || !dout || !inp) return invalid("encoder_backward: null tensor");  // dwpe may be null
  const cudaStream_t st = as_stream(stream);
  if (dwpe != nullptr) {
    encoder_backward_wpe_kernel<<<grid_for(static_cast<size_t>(T) * C), kThreads, 0, st>>>(
        dwpe, dout, B, T, C);
    DSINF_CUDA_RETURN_IF_ERROR(launch_status("launch of encoder_backward_wpe_kernel"));
  }
  const dim3 grid(static_cast<unsigned>((C + kThreads - 1) / kThreads), kTokenClasses);
  encoder_backward_wte_kernel<<<grid, kThreads, 0, st>>>(dwte, dout, inp, static_cast<int>(tokens),
                                                         C);
  return launch_status("launch of encoder_backward_wte_kernel");
}

// ----------------------------------------------------------- layernorm --

absl::Status layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                               const float* weight, const float* bias, int N, int C,
                               StreamHandle stream) {
  if (N < 0 || C < 0) return invalid("layernorm_forward: negative shape");
  if (N == 0) return absl::OkStatus();
  if (!out || !mean || !rstd || !inp || !weight || !bias) {
    return invalid("layernorm_forward: null tensor");
  }
  layernorm_forward_kernel<<<row_blocks(N), kThreads, 0, as_stream(stream)>>>(out, mean, rstd, inp,
                                                                              weight, bias, N, C);
  return launch_status("launch of layernorm_forward_kernel");
}

absl::Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                const float* inp, const float* weight, const float* mean,
                                const float* rstd, int N, int C, StreamHandle stream) {
  if (N < 0 || C < 0) return invalid("layernorm_backward: negative shape");
  if (N == 0 || C == 0) return absl::OkStatus();
  if (!dinp || !dweight || !dbias || !dout || !inp || !weight || !mean || !rstd) {
    return invalid("layernorm_backward: null tensor");
  }
  const cudaStream_t st = as_stream(stream);
  layernorm_backward_kernel<<<row_blocks(N), kThreads, 0, st>>>(dinp, dout, inp, weight, mean, rstd,
                                                                N, C);
  DSINF_CUDA_RETURN_IF_ERROR(launch_status("launch of layernorm_backward_kernel"));
  return launch_column_sums<true>(dbias, dweight, dout, inp, mean, rstd, N, C, st);
}

// -------------------------------------------------------------- matmul --

absl::Status matmul_forward(Blas& blas, Precision precision, float* out, const float* inp,
                            const float* weight, const float* bias, int N, int C, int OC,
                            StreamHandle stream) {
  if (N < 0 || C < 0 || OC < 0) return invalid("matmul_forward: negative shape");
  if (N == 0 || OC == 0) return absl::OkStatus();
  if (!out || (C > 0 && (!inp || !weight))) return invalid("matmul_forward: null tensor");
  const cudaStream_t st = as_stream(stream);
  const size_t total = static_cast<size_t>(N) * OC;
  if (C == 0) {
    DSINF_CUDA_RETURN_IF_ERROR(
        cuda_status(cudaMemsetAsync(out, 0, total * sizeof(float), st), "cudaMemsetAsync (out)"));
  } else {
    // out (N,OC) = inp (N,C) @ weight^T, weight stored (OC,C): trans_b.
    absl::StatusOr<std::shared_ptr<const Matmul>> mm_plan =
        planned(blas, precision, make_gemm(false, true, N, OC, C, C, C, OC), alignment(inp, C),
                alignment(weight, C), alignment(out, OC));
    DSINF_CUDA_RETURN_IF_ERROR(mm_plan.status());
    const Matmul& mm = **mm_plan;
    DSINF_CUDA_RETURN_IF_ERROR(mm.run(blas, 1.0f, inp, weight, 0.0f, out, st));
  }
  if (bias == nullptr) return absl::OkStatus();
  add_bias_kernel<<<grid_for(total), kThreads, 0, st>>>(out, bias, total, OC);
  return launch_status("launch of add_bias_kernel");
}

absl::Status matmul_backward(Blas& blas, Precision precision, float* dinp, float* dweight,
                             float* dbias, const float* dout, const float* inp, const float* weight,
                             int N, int C, int OC, StreamHandle stream) {
  if (N < 0 || C < 0 || OC < 0) return invalid("matmul_backward: negative shape");
  if (dinp == nullptr) return invalid("matmul_backward: dinp may not be null");
  if (dweight == nullptr && dbias != nullptr) {
    return invalid("matmul_backward: a frozen weight's bias is frozen too");
  }
  if (N == 0 || C == 0 || OC == 0) return absl::OkStatus();
  if (!dout || !inp || !weight) return invalid("matmul_backward: null tensor");
  const cudaStream_t st = as_stream(stream);
  {
    // dinp (N,C) += dout (N,OC) @ weight (OC,C).
    absl::StatusOr<std::shared_ptr<const Matmul>> mm_plan =
        planned(blas, precision, make_gemm(false, false, N, C, OC, OC, C, C), alignment(dout, OC),
                alignment(weight, C), alignment(dinp, C));
    DSINF_CUDA_RETURN_IF_ERROR(mm_plan.status());
    const Matmul& mm = **mm_plan;
    DSINF_CUDA_RETURN_IF_ERROR(mm.run(blas, 1.0f, dout, weight, 1.0f, dinp, st));
  }
  if (dweight == nullptr) return absl::OkStatus();
  {
    // dweight (OC,C) += dout^T @ inp (N,C), dout stored (N,OC): trans_a.
    absl::StatusOr<std::shared_ptr<const Matmul>> mm_plan =
        planned(blas, precision, make_gemm(true, false, OC, C, N, OC, C, C), alignment(dout, OC),
                alignment(inp, C), alignment(dweight, C));
    DSINF_CUDA_RETURN_IF_ERROR(mm_plan.status());
    const Matmul& mm = **mm_plan;
    DSINF_CUDA_RETURN_IF_ERROR(mm.run(blas, 1.0f, dout, inp, 1.0f, dweight, st));
  }
  if (dbias == nullptr) return absl::OkStatus();
  return launch_column_sums<false>(dbias, nullptr, dout, nullptr, nullptr, nullptr, N, OC, st);
}

// ----------------------------------------------------------- attention --

absl::Status attention_forward(Blas& blas, Precision precision, float* out, float* att,
                               const float* qkv, int B, int T, int C, int NH, StreamHandle stream) {
  DSINF_CUDA_RETURN_IF_ERROR(check_attention_shape(B, T, C, NH));
  if (B == 0 || T == 0 || C == 0) return absl::OkStatus();
  if (!out || !att || !qkv) return invalid("attention_forward: null tensor");
  const cudaStream_t st = as_stream(stream);
  const int hs = C / NH;
  const float inv_sqrt_hs = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  const int64_t C3 = int64_t{3} * C;
  const int64_t TT = int64_t{T} * T;
  const int64_t qkv_window = int64_t{T} * C3;  // elements per b
  const int64_t att_window = int64_t{NH} * TT;
  const int64_t out_window = int64_t{T} * C;

  // Per b, batched over the NH heads (head h at +h*hs in qkv/out, +h*T*T in att):
  // scores_h (T,T) = q_h (T,hs) @ k_h^T * (1/sqrt(hs)), k_h stored (T,hs): trans_b.
  absl::StatusOr<std::shared_ptr<const Matmul>> scores_plan =
      planned(blas, precision, make_gemm(false, true, T, T, hs, C3, C3, T, NH, hs, hs, TT),
              alignment(qkv, hs), alignment(qkv + C, hs), alignment(att, T));
  DSINF_CUDA_RETURN_IF_ERROR(scores_plan.status());
  const Matmul& scores = **scores_plan;
  for (int b = 0; b < B; ++b) {
    const float* q = qkv + b * qkv_window;
    DSINF_CUDA_RETURN_IF_ERROR(
        scores.run(blas, inv_sqrt_hs, q, q + C, 0.0f, att + b * att_window, st));
  }
  const int64_t rows = int64_t{B} * NH * T;
  causal_softmax_kernel<<<row_blocks(rows), kThreads, 0, st>>>(att, T, rows);
  DSINF_CUDA_RETURN_IF_ERROR(launch_status("launch of causal_softmax_kernel"));
  // out_h (T,hs) = att_h (T,T) @ v_h (T,hs); zeros above the diagonal keep it causal.
  absl::StatusOr<std::shared_ptr<const Matmul>> av_plan =
      planned(blas, precision, make_gemm(false, false, T, hs, T, T, C3, C, NH, TT, hs, hs),
              alignment(att, T), alignment(qkv + int64_t{2} * C, hs), alignment(out, hs));
  DSINF_CUDA_RETURN_IF_ERROR(av_plan.status());
  const Matmul& av = **av_plan;
  for (int b = 0; b < B; ++b) {
    DSINF_CUDA_RETURN_IF_ERROR(av.run(blas, 1.0f, att + b * att_window,
                                      qkv + b * qkv_window + int64_t{2} * C, 0.0f,
                                      out + b * out_window, st));
  }
  return absl::OkStatus();
}

absl::Status attention_backward(Blas& blas, Precision precision, float* dqkv, const float* dout,
                                const float* qkv, const float* att, int B, int T, int C, int NH,
                                StreamHandle stream) {
  DSINF_CUDA_RETURN_IF_ERROR(check_attention_shape(B, T, C, NH));
  if (B == 0 || T == 0 || C == 0) return absl::OkStatus();
  if (!dqkv || !dout || !qkv || !att) return invalid("attention_backward: null tensor");
  const cudaStream_t st = as_stream(stream);
  const int hs = C / NH;
  const float inv_sqrt_hs = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  const int64_t C3 = int64_t{3} * C;
  const int64_t TT = int64_t{T} * T;
  const int64_t qkv_window = int64_t{T} * C3;  // elements per b
  const int64_t att_window = int64_t{NH} * TT;
  const int64_t out_window = int64_t{T} * C;

  // Scratch: datt / dscore for a group of heads, (g,T,T).
  float* scratch =
      reinterpret_cast<float*>(static_cast<char*>(blas.workspace()) + kBlasWorkspaceBytes);
  const size_t scratch_bytes = blas.workspace_bytes() - kBlasWorkspaceBytes;
  const size_t block_bytes = static_cast<size_t>(TT) * sizeof(float);
  const int group = static_cast<int>(std::min<size_t>(NH, scratch_bytes / block_bytes));
  if (group < 1) {
    return invalid("attention_backward: scratch of " + std::to_string(scratch_bytes) +
                   " bytes holds no (T,T) block for T=" + std::to_string(T));
  }

  // Heads [h_begin, h_begin + groups*g) in groups of g, for every b.
  const auto run_heads = [&](int g, int h_begin, int groups) -> absl::Status {
    // dv_h (T,hs) += att_h^T @ dout_h, att_h stored (T,T): trans_a.
    absl::StatusOr<std::shared_ptr<const Matmul>> dv_plan =
        planned(blas, precision, make_gemm(true, false, T, hs, T, T, C, C3, g, TT, hs, hs),
                alignment(att, T), alignment(dout, hs), alignment(dqkv + 2 * C, hs));
    DSINF_CUDA_RETURN_IF_ERROR(dv_plan.status());
    const Matmul& dv = **dv_plan;
    // datt_h (T,T) = dout_h (T,hs) @ v_h^T, v_h stored (T,hs): trans_b.
    absl::StatusOr<std::shared_ptr<const Matmul>> datt_plan =
        planned(blas, precision, make_gemm(false, true, T, T, hs, C, C3, T, g, hs, hs, TT),
                alignment(dout, hs), alignment(qkv + 2 * C, hs), alignment(scratch, T));
    DSINF_CUDA_RETURN_IF_ERROR(datt_plan.status());
    const Matmul& datt = **datt_plan;
    // dq_h (T,hs) += dscore_h (T,T) @ k_h (T,hs).
    absl::StatusOr<std::shared_ptr<const Matmul>> dq_plan =
        planned(blas, precision, make_gemm(false, false, T, hs, T, T, C3, C3, g, TT, hs, hs),
                alignment(scratch, T), alignment(qkv + C, hs), alignment(dqkv, hs));
    DSINF_CUDA_RETURN_IF_ERROR(dq_plan.status());
    const Matmul& dq = **dq_plan;
    // dk_h (T,hs) += dscore_h^T @ q_h (T,hs), dscore_h stored (T,T): trans_a.
    absl::StatusOr<std::shared_ptr<const Matmul>> dk_plan =
        planned(blas, precision, make_gemm(true, false, T, hs, T, T, C3, C3, g, TT, hs, hs),
                alignment(scratch, T), alignment(qkv, hs), alignment(dqkv + C, hs));
    DSINF_CUDA_RETURN_IF_ERROR(dk_plan.status());
    const Matmul& dk = **dk_plan;
    const int64_t rows = int64_t{g} * T;
    for (int b = 0; b < B; ++b) {
      for (int k = 0; k < groups; ++k) {
        const int h0 = h_begin + k * g;
        const float* q = qkv + b * qkv_window + int64_t{h0} * hs;  // k at +C, v at +2C
        float* dq_ptr = dqkv + b * qkv_window + int64_t{h0} * hs;  // dk at +C, dv at +2C
        const float* dout_h = dout + b * out_window + int64_t{h0} * hs;
        const float* att_h = att + b * att_window + int64_t{h0} * TT;
        DSINF_CUDA_RETURN_IF_ERROR(dv.run(blas, 1.0f, att_h, dout_h, 1.0f, dq_ptr + 2 * C, st));
        DSINF_CUDA_RETURN_IF_ERROR(datt.run(blas, 1.0f, dout_h, q + 2 * C, 0.0f, scratch, st));
        causal_softmax_backward_kernel<<<row_blocks(rows), kThreads, 0, st>>>(scratch, att_h, T,
                                                                              rows, inv_sqrt_hs);
        DSINF_CUDA_RETURN_IF_ERROR(launch_status("launch of causal_softmax_backward_kernel"));
        DSINF_CUDA_RETURN_IF_ERROR(dq.run(blas, 1.0f, scratch, q + C, 1.0f, dq_ptr, st));
        DSINF_CUDA_RETURN_IF_ERROR(dk.run(blas, 1.0f, scratch, q, 1.0f, dq_ptr + C, st));
      }
    }
    return absl::OkStatus();
  };
  DSINF_CUDA_RETURN_IF_ERROR(run_heads(group, 0, NH / group));
  if (NH % group != 0) {
    DSINF_CUDA_RETURN_IF_ERROR(run_heads(NH % group, NH / group * group, 1));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------- elementwise --

absl::Status gelu_forward(float* out, const float* inp, size_t n, StreamHandle stream) {
  if (n == 0) return absl::OkStatus();
  if (!out || !inp) return invalid("gelu_forward: null tensor");
  gelu_forward_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(out, inp, n);
  return launch_status("launch of gelu_forward_kernel");
}

absl::Status gelu_backward(float* dinp, const float* inp, const float* dout, size_t n,
                           StreamHandle stream) {
  if (n == 0) return absl::OkStatus();
  if (!dinp || !inp || !dout) return invalid("gelu_backward: null tensor");
  gelu_backward_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(dinp, inp, dout, n);
  return launch_status("launch of gelu_backward_kernel");
}

absl::Status residual_forward(float* out, const float* a, const float* b, size_t n,
                              StreamHandle stream) {
  if (n == 0) return absl::OkStatus();
  if (!out || !a || !b) return invalid("residual_forward: null tensor");
  residual_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(out, a, b, n);
  return launch_status("launch of residual_kernel");
}

absl::Status softmax_crossentropy(float* losses, float* dlogits, const float* logits,
                                  const int32_t* targets, int N, int V, float dloss,
                                  StreamHandle stream) {
  if (N < 0 || V < 0) return invalid("softmax_crossentropy: negative shape");
  if (N == 0) return absl::OkStatus();
  if (V == 0) return invalid("softmax_crossentropy: empty vocabulary");
  if (!losses || !logits || !targets) return invalid("softmax_crossentropy: null tensor");
  crossentropy_kernel<<<static_cast<unsigned>(N), kCeThreads, 0, as_stream(stream)>>>(
      losses, dlogits, logits, targets, V, dloss);
  return launch_status("launch of crossentropy_kernel");
}

absl::Status scale(float* x, float s, size_t n, StreamHandle stream) {
  if (n == 0) return absl::OkStatus();
  if (!x) return invalid("scale: null tensor");
  scale_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(x, s, n);
  return launch_status("launch of scale_kernel");
}

absl::Status dropout_scale(float* out, const float* in, size_t n, float s, float p, uint64_t key,
                           StreamHandle stream) {
  if (n == 0) return absl::OkStatus();
  if (!out || !in) return invalid("dropout_scale: null tensor");
  dropout_scale_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(out, in, n, s, p, key);
  return launch_status("launch of dropout_scale_kernel");
}

}  // namespace dsinf::kernels::cuda

#undef DSINF_CUDA_RETURN_IF_ERROR
