// Chunks swapped to NVMe: each chunk id maps to one extent of a swap file
// under one of the configured nvme paths, chunks spread round-robin over the
// paths so several drives add up without RAID. Every run gets a private
// directory per path ("dsinf-swap-<pid>-<n>", mode 0700; files 0600) that is
// removed when the store goes away, also after an error. Free space is checked
// before anything is written. Every block of a chunk carries a CRC32C kept in
// memory (out of band), computed before a write and verified after every read:
// a mismatch is kDataLoss naming the chunk and the file, and the data is never
// handed on as good.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nvme/engine.h"

namespace dsinf::nvme {

using ChunkId = uint32_t;

struct SwapStoreOptions {
  std::vector<std::string> paths;  // existing, writable directories (nvme_path)
  std::vector<size_t>
      chunk_bytes;  // chunk i has chunk_bytes[i] bytes (any size; stored page-padded)
  size_t checksum_block_bytes = 1 << 20;  // one CRC32C per this many bytes of a chunk
  std::string config_key = "nvme_path";   // named in errors about the paths
};

struct SwapExtent {
  size_t path_index;
  std::string file;
  uint64_t offset;
  size_t bytes;  // padded to kDirectIoAlignment
};

class SwapStore {
 public:
  // Creates the private directories and swap files (sized up front) after
  // checking each path's free space against what it will hold:
  // kResourceExhausted naming the path and the shortfall; kInvalidArgument for
  // a path that is missing or not writable.
  static absl::StatusOr<std::unique_ptr<SwapStore>> create(IoEngine* engine,
                                                           const SwapStoreOptions& options);
  // Drains the engine's requests on the store's files, then removes the files and directories.
  ~SwapStore();

  // Writes chunk `id` from `data` (aligned; at least the padded size readable).
  // The checksums are taken before the I/O is queued. `done` gets the result.
  absl::Status write(ChunkId id, const std::byte* data, IoCallback done);
  // Reads chunk `id` into `data` and verifies every block's checksum before
  // calling `done`; a mismatch or a chunk never written is kDataLoss.
  absl::Status read(ChunkId id, std::byte* data, IoCallback done);

  const SwapExtent& extent(ChunkId id) const;
  size_t num_chunks() const;
  // The private directories (one per path), for tests and logs.
  std::vector<std::string> directories() const;
  uint64_t bytes_on_disk() const;

  struct Impl;

 private:
  explicit SwapStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsinf::nvme
