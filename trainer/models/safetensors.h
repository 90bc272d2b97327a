// Reading and writing the safetensors format (8-byte little-endian header
// length, a JSON header, then the raw tensor bytes). Reading bounds-checks
// every offset, shape and size against the file before touching data.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "memory/util/atomic_file.h"

namespace dsinf::trainer {

struct SafetensorsEntry {
  std::string dtype;  // "F32", "F16", "BF16", "F64", "I32", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

// Where model code loads tensors from: one safetensors file or a Hugging
// Face directory of shards (hf_weights.h).
class TensorReader {
 public:
  virtual ~TensorReader() = default;
  virtual std::vector<std::string> names() const = 0;                       // every tensor, sorted
  virtual const SafetensorsEntry* find(const std::string& name) const = 0;  // null: absent
  // As fp32; kInvalidArgument naming the file and tensor if absent, not a
  // float type, or of a shape other than expected_shape (empty: any).
  virtual absl::StatusOr<std::vector<float>> read_f32(
      const std::string& name, const std::vector<int64_t>& expected_shape) const = 0;
  // The file holding `name` (where() if absent), for messages.
  virtual std::string file_of(const std::string& name) const = 0;
  virtual std::string where() const = 0;  // the path it was opened from
};

// One file: its header is read and checked at open; tensors are read with
// pread when asked, so memory holds one tensor at a time.
class SafetensorsFile final : public TensorReader {
 public:
  // kNotFound if missing; kInvalidArgument naming the file (and tensor) for any
  // malformed header (over 100 MB, a name twice), overlapping or out-of-range
  // offsets (a truncated file), or size mismatch.
  static absl::StatusOr<SafetensorsFile> open(const std::string& path);

  std::vector<std::string> names() const override;
  const SafetensorsEntry* find(const std::string& name) const override;
  std::string file_of(const std::string&) const override { return path_; }
  std::string where() const override { return path_; }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The tensor as fp32 (F32 copied; F16, BF16, F64 converted). kInvalidArgument
  // if missing, of a non-float dtype, or of a shape other than `expected_shape`
  // (empty expected_shape: any shape); kDataLoss if the file shrank since open
  // or the read failed with EIO.
  absl::StatusOr<std::vector<float>> read_f32(
      const std::string& name, const std::vector<int64_t>& expected_shape) const override;
  // I32 or I64 tensors as int64.
  absl::StatusOr<std::vector<int64_t>> read_int(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  struct Fd {
    int fd = -1;
    ~Fd();
  };
  // Receives consecutive blocks of a tensor's stored elements: (bytes, index
  // of the block's first element, elements in the block).
  using ElementSink = std::function<void(const char*, size_t, size_t)>;
  absl::Status parse_header(const std::string& header, uint64_t data_bytes);
  // Reads `entry` block by block (memory: one block besides the caller's output).
  absl::Status read_elements(const SafetensorsEntry& entry, const ElementSink& sink) const;

  std::string path_;
  std::shared_ptr<Fd> fd_;  // shared by copies, closed with the last
  uint64_t data_begin_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;  // numel(shape) fp32 values, row-major
};

// The type tensors are stored in when written: fp32 values are rounded to
// nearest even for the 16-bit types.
enum class TensorDtype { kF32, kBF16, kF16 };
const char* tensor_dtype_name(TensorDtype dtype);  // "F32", "BF16", "F16"

// Writes tensors atomically: a temporary file in the same directory, fsync,
// rename, fsync of the directory. Tensors are written in the given order.
absl::Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata,
                               TensorDtype dtype = TensorDtype::kF32);

// The 8-byte length and the JSON header of a file holding `tensors` (data
// may be null) stored as `dtype`: for writers that stream the data after it.
absl::StatusOr<std::string> safetensors_header(const std::vector<TensorToWrite>& tensors,
                                               const std::map<std::string, std::string>& metadata,
                                               TensorDtype dtype, const std::string& path);
// Appends `numel` floats stored as `dtype` (little-endian).
absl::Status write_tensor_data(util::AtomicFileWriter& writer, const float* data, size_t numel,
                               TensorDtype dtype);

}  // namespace dsinf::trainer
