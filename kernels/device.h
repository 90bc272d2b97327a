// The device half of the backend interface: its memory (a budgeted arena),
// host memory registered for DMA, asynchronous copies on three streams, and
// the events that order them. Everything above kernels/ that touches device
// memory does it through this interface; the ops live in kernels/ops.h.
//
// Pointers passed to copies as "device" pointers must come from allocate().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "memory/arena.h"

namespace dsinf::kernels {

enum class Stream : int { kCompute = 0, kUpload = 1, kDownload = 2 };

// Element types of stored tensors: fp32, and the 16-bit formats (bf16, IEEE
// fp16) that working weights and gradient visits take off the device when
// bf16 or fp16 is on. Conversions round as kernels/cpu/half.h defines.
enum class DType : uint8_t { kF32 = 0, kBF16 = 1, kF16 = 2 };
inline size_t dtype_bytes(DType dtype) { return dtype == DType::kF32 ? 4 : 2; }
inline const char* dtype_name(DType dtype) {
  return dtype == DType::kF32 ? "fp32" : dtype == DType::kBF16 ? "bf16" : "fp16";
}
inline constexpr int kNumStreams = 3;

// An event marks a point in one stream's work; 0 is "no event".
using Event = uint64_t;

class Device {
 public:
  virtual ~Device() = default;
  virtual std::string name() const = 0;
  // Device memory is host memory (the CPU backend): host code may read a
  // device buffer in place instead of copying it out first.
  virtual bool device_memory_is_host() const { return false; }
  // Device memory the backend holds outside the arena budget for its own
  // kernels (matmul and attention workspaces), fixed at creation.
  virtual size_t workspace_bytes() const { return 0; }

  // ---- host memory the device copies from and to ----
  // Pins [base, base + bytes) (page aligned) for direct DMA, once at start-up
  // (the host pool); unregister before freeing it. A no-op where copies are
  // plain memcpy (the CPU backend).
  virtual absl::Status register_host_memory(void* base, size_t bytes) { return absl::OkStatus(); }
  virtual void unregister_host_memory(void* base) {}
  // Page-locked host memory the backend allocates itself (cudaHostAlloc):
  // what its copies run fastest from. kUnimplemented where there is none.
  virtual absl::StatusOr<void*> allocate_pinned_host(size_t bytes) {
    return absl::UnimplementedError(name() + " has no pinned host memory");
  }
  virtual void release_pinned_host(void* ptr) {}

  // ---- memory: the backend's arena, with a hard byte budget ----
  virtual absl::StatusOr<void*> allocate(size_t bytes) = 0;  // page aligned, zero filled
  virtual void release(void* ptr) = 0;
  virtual memory::ArenaStats memory_stats() const = 0;

  // ---- transfers: queued on `stream`, complete when an event recorded after them completes ----
  virtual absl::Status copy_to_device(void* dst_device, const void* src_host, size_t bytes,
                                      Stream stream) = 0;
  virtual absl::Status copy_to_host(void* dst_host, const void* src_device, size_t bytes,
                                    Stream stream) = 0;
  virtual absl::Status fill_zero(void* dst_device, size_t bytes, Stream stream) = 0;

  // ---- conversions of device buffers, queued on `stream` like a copy ----
  // dst[i] = src[i] as dst_type, for i < n: fp32 to bf16/fp16 rounds to
  // nearest even (half.h), the other way is exact, the same type is a copy.
  virtual absl::Status convert(const void* src, DType src_type, void* dst, DType dst_type, size_t n,
                               Stream stream) = 0;
  // acc[i] = acc[i] + float(src[i]), for i < n: one fp32 addition an element,
  // so a sum of visits is the same bits on every backend and on the host.
  virtual absl::Status accumulate(float* acc, const void* src, DType src_type, size_t n,
                                  Stream stream) = 0;

  // ---- ordering ----
  virtual Event record(Stream stream) = 0;
  // Work queued on `stream` after this call starts only once `event` completed.
  virtual void stream_wait(Stream stream, Event event) = 0;
  // Blocks the caller until `event` completed; reports any failure of the work before it.
  virtual absl::Status wait(Event event) = 0;
  absl::Status synchronize(Stream stream) { return wait(record(stream)); }
};

}  // namespace dsinf::kernels
