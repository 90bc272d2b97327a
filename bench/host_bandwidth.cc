#include "bench/host_bandwidth.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "bench/interrupt.h"
#include "bench/timing.h"
#include "kernels/cpu/adam.h"
#include "memory/aligned_buffer.h"
#include "memory/util/args.h"
#include "memory/util/format.h"
#include "oneapi/tbb/blocked_range.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/partitioner.h"
#include "oneapi/tbb/task_arena.h"

namespace dsinf::bench {
namespace {

constexpr size_t kMinArrayBytes = size_t{1} << 20;
constexpr size_t kCopySliceBytes = size_t{4} << 20;
constexpr size_t kUpdateGrain = size_t{1} << 16;  // floats per task at least
constexpr float kUpdateScale = 1e-3f;

// Bytes of memory the kernel reports as available, 0 if unknown.
size_t available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  size_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

// The same static partition for first touch and for the timed passes, so each
// thread updates the pages it faulted in.
template <typename Body>
void parallel_slices(size_t count, size_t grain, Body&& body) {
  tbb::parallel_for(
      tbb::blocked_range<size_t>(0, count, grain),
      [&](const tbb::blocked_range<size_t>& r) { body(r.begin(), r.end()); },
      tbb::static_partitioner());
}

}  // namespace

absl::StatusOr<UpdateCeiling> UpdateCeiling::create(size_t array_bytes) {
  UpdateCeiling c;
  c.n_ = array_bytes / sizeof(float);
  c.a_.reset(new (std::nothrow) float[c.n_]);
  c.b_.reset(new (std::nothrow) float[c.n_]);
  if (!c.a_ || !c.b_) return absl::ResourceExhaustedError("cannot allocate the update arrays");
  float* a = c.a_.get();
  float* b = c.b_.get();
  parallel_slices(c.n_, kUpdateGrain, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      a[i] = 1.0f;
      b[i] = static_cast<float>(i % 1024) * 0.5f;
    }
  });
  return c;
}

void UpdateCeiling::pass() { kernels::cpu::axpy(a_.get(), b_.get(), kUpdateScale, n_); }

absl::StatusOr<double> measure_update_gbps(const HostOptions& options) {
  absl::StatusOr<UpdateCeiling> ceiling = UpdateCeiling::create(options.array_bytes);
  if (!ceiling.ok()) return ceiling.status();
  absl::StatusOr<double> seconds = median_seconds(options.passes, [&] { ceiling->pass(); });
  if (!seconds.ok()) return seconds.status();
  return ceiling->bytes_per_pass() / *seconds / 1e9;
}

namespace {

void parallel_copy(std::byte* dst, const std::byte* src, size_t bytes) {
  const size_t slices = (bytes + kCopySliceBytes - 1) / kCopySliceBytes;
  parallel_slices(slices, 1, [&](size_t begin, size_t end) {
    for (size_t s = begin; s < end; ++s) {
      const size_t offset = s * kCopySliceBytes;
      std::memcpy(dst + offset, src + offset, std::min(kCopySliceBytes, bytes - offset));
    }
  });
}

}  // namespace

size_t last_level_cache_bytes() {
  // sysfs: the highest cache level of every online CPU, each shared instance
  // counted once, so the sum is the cache all threads together can hold.
  // (glibc's sysconf reports a whole package's L3 on some AMD parts even where
  // this machine sees one slice of it.)
  int top_level = 0;
  std::map<std::string, size_t> instances;  // shared_cpu_list -> bytes
  std::error_code ec;
  for (const auto& cpu : std::filesystem::directory_iterator("/sys/devices/system/cpu", ec)) {
    const std::string name = cpu.path().filename().string();
    if (name.size() < 4 || name.rfind("cpu", 0) != 0 ||
        !std::isdigit(static_cast<unsigned char>(name[3])))
      continue;
    std::error_code cache_ec;
    for (const auto& index : std::filesystem::directory_iterator(cpu.path() / "cache", cache_ec)) {
      int level = 0;
      std::string size_text, shared;
      std::ifstream(index.path() / "level") >> level;
      std::ifstream(index.path() / "size") >> size_text;
      std::ifstream(index.path() / "shared_cpu_list") >> shared;
      std::optional<uint64_t> bytes = util::parse_byte_count(size_text);
      if (level <= 0 || !bytes || level < top_level) continue;
      if (level > top_level) instances.clear();
      top_level = level;
      instances[shared] = *bytes;
    }
  }
  size_t total = 0;
  for (const auto& [shared, bytes] : instances) total += bytes;
  if (total > 0) return total;
  for (int name : {_SC_LEVEL4_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long bytes = sysconf(name);
    if (bytes > 0) return static_cast<size_t>(bytes);
  }
  return 0;
}

size_t default_array_bytes() {
  size_t bytes = std::max(size_t{256} << 20, 4 * last_level_cache_bytes());
  const size_t available = available_memory_bytes();
  if (available > 0) bytes = std::min(bytes, available / 8);
  bytes = std::max(bytes, kMinArrayBytes);
  return bytes / memory::kChunkAlignment * memory::kChunkAlignment;
}

absl::StatusOr<HostBandwidth> measure_host(const HostOptions& options) {
  HostBandwidth result;
  result.array_bytes = options.array_bytes;
  result.passes = options.passes;
  result.threads = tbb::this_task_arena::max_concurrency();

  absl::StatusOr<double> update = measure_update_gbps(options);
  if (!update.ok()) return update.status();
  result.update_gbps = *update;

  const size_t bytes = options.array_bytes;
  std::unique_ptr<std::byte[]> pageable(new (std::nothrow) std::byte[bytes]);
  absl::StatusOr<memory::AlignedBuffer> aligned = memory::AlignedBuffer::allocate(bytes);
  if (!pageable || !aligned.ok()) {
    return absl::ResourceExhaustedError("cannot allocate the copy buffers");
  }
  parallel_slices(
      (bytes + kCopySliceBytes - 1) / kCopySliceBytes, 1, [&](size_t begin, size_t end) {
        for (size_t s = begin; s < end; ++s) {
          const size_t offset = s * kCopySliceBytes;
          std::memset(pageable.get() + offset, 0x5A, std::min(kCopySliceBytes, bytes - offset));
        }
      });
  absl::StatusOr<double> to_aligned = median_seconds(
      options.passes, [&] { parallel_copy(aligned->data(), pageable.get(), bytes); });
  if (!to_aligned.ok()) return to_aligned.status();
  absl::StatusOr<double> to_pageable = median_seconds(
      options.passes, [&] { parallel_copy(pageable.get(), aligned->data(), bytes); });
  if (!to_pageable.ok()) return to_pageable.status();
  result.pageable_to_aligned_gbps = static_cast<double>(bytes) / *to_aligned / 1e9;
  result.aligned_to_pageable_gbps = static_cast<double>(bytes) / *to_pageable / 1e9;
  return result;
}

}  // namespace dsinf::bench
