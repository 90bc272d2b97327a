// Reading and writing the safetensors format (8-byte little-endian header
// length, a JSON header, then the raw tensor bytes). Reading bounds-checks
// every offset, shape and size against the file before touching data.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dsinf::trainer {

struct SafetensorsEntry {
  std::string dtype;  // "F32", "F16", "BF16", "F64", "I32", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // kNotFound if missing; kInvalidArgument naming the file (and tensor) for any
  // malformed header, overlapping or out-of-range offsets, or size mismatch.
  static absl::StatusOr<SafetensorsFile> open(const std::string& path);

  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The tensor as fp32 (F32 copied; F16, BF16, F64 converted). kInvalidArgument
  // if missing, of a non-float dtype, or of a shape other than `expected_shape`
  // (empty expected_shape: any shape).
  absl::StatusOr<std::vector<float>> read_f32(const std::string& name,
                                              const std::vector<int64_t>& expected_shape) const;
  // I32 or I64 tensors as int64.
  absl::StatusOr<std::vector<int64_t>> read_int(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<char> bytes_;  // the whole file
  uint64_t data_begin_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;  // numel(shape) fp32 values, row-major
};

// Writes fp32 tensors atomically: a temporary file in the same directory,
// fsync, rename, fsync of the directory. Tensors are written in the given order.
absl::Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata);

}  // namespace dsinf::trainer
