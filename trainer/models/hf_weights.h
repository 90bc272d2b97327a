// A Hugging Face model directory's weights: model.safetensors, or the shards
// model.safetensors.index.json lists, read as one TensorReader; and the
// writer of such a directory's shards and index.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "memory/util/atomic_file.h"
#include "trainer/models/safetensors.h"

namespace dsinf::trainer {

class HfWeights final : public TensorReader {
 public:
  // Checks the index (every shard a plain file name in `dir`, present; every
  // tensor in the shard the index names, in no other shard, and every shard's
  // tensor in the index) or the single file; kInvalidArgument naming the
  // directory, the file and the tensor otherwise.
  static absl::StatusOr<std::unique_ptr<HfWeights>> open(const std::string& dir);

  std::vector<std::string> names() const override;
  const SafetensorsEntry* find(const std::string& name) const override;
  absl::StatusOr<std::vector<float>> read_f32(
      const std::string& name, const std::vector<int64_t>& expected_shape) const override;
  std::string file_of(const std::string& name) const override;
  std::string where() const override { return dir_; }

 private:
  absl::Status open_index(const std::string& index_path);
  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> owner_;  // tensor -> index into files_
};

// The files of a Hugging Face directory that describe its tokenizer and
// generation settings (export copies them from model.init_from's directory).
const std::vector<std::string>& hf_tokenizer_files();
// Whether `dir` holds a tokenizer (tokenizer.json, tokenizer.model or vocab.json).
bool has_tokenizer(const std::string& dir);

// `path` as weights: a Hugging Face directory, else one safetensors file.
absl::StatusOr<std::unique_ptr<TensorReader>> open_weights(const std::string& path);

struct HfTensorInfo {
  std::string name;
  std::vector<int64_t> shape;
};

// Writes tensors into a directory as transformers' save_pretrained does:
// "model.safetensors" when they fit one shard, else
// "model-00001-of-0000N.safetensors"... and "model.safetensors.index.json".
// Each shard is written tensor by tensor into a temporary file (its header
// is known from the plan) and renamed when complete: memory holds one tensor.
class HfShardWriter {
 public:
  // A new shard starts when the next tensor would take the current one past
  // max_shard_bytes (a larger tensor gets a shard of its own). `dir` exists
  // (kNotFound otherwise; kFailedPrecondition if it is not a directory);
  // kInvalidArgument for an empty plan, a repeated or reserved name, a
  // negative shape, or max_shard_bytes 0. Nothing is written until the first
  // write().
  static absl::StatusOr<HfShardWriter> create(const std::string& dir,
                                              std::vector<HfTensorInfo> tensors, TensorDtype dtype,
                                              uint64_t max_shard_bytes,
                                              std::map<std::string, std::string> metadata);
  // The next tensor of the plan: numel(shape) floats (kFailedPrecondition
  // out of order). The first write removes an index an earlier save left in
  // `dir`. Any failure removes the shard being written and ends the writer:
  // every later call is kFailedPrecondition.
  absl::Status write(const std::string& name, const float* data);
  // After the last tensor: the index, when there are several shards, then
  // the removal of weight files of an earlier save that this one did not
  // replace (an old model.safetensors, index or shard).
  absl::Status finish();

  size_t num_shards() const { return shard_first_.size(); }
  uint64_t total_bytes() const { return total_bytes_; }
  // The files the plan writes, in order: shards, then the index if sharded.
  std::vector<std::string> files() const;

 private:
  std::string shard_name(size_t shard) const;
  size_t shard_end(size_t shard) const;  // one past the shard's last tensor
  absl::Status open_shard(size_t shard);
  absl::Status write_next(const std::string& name, const float* data);
  absl::Status write_index() const;
  absl::Status remove_stale_files() const;
  void abandon();

  std::string dir_;
  std::vector<HfTensorInfo> tensors_;
  TensorDtype dtype_ = TensorDtype::kF32;
  std::map<std::string, std::string> metadata_;
  std::vector<size_t> shard_first_;  // index of each shard's first tensor
  uint64_t total_bytes_ = 0;         // of every tensor's stored data
  size_t next_ = 0;                  // next tensor to write
  bool failed_ = false;
  std::optional<util::AtomicFileWriter> writer_;  // the shard being written
};

}  // namespace dsinf::trainer
