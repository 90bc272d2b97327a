#include "trainer/models/hf_weights.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;

constexpr char kIndexName[] = "model.safetensors.index.json";
constexpr char kSingleName[] = "model.safetensors";
constexpr size_t kMaxIndexBytes = size_t{64} << 20;

absl::Status invalid(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

// A shard name the index may give: a plain file name inside the directory.
bool plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

absl::StatusOr<nlohmann::json> read_index(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid(path, "cannot read the index");
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > kMaxIndexBytes) return invalid(path, "index is too large");
  nlohmann::json index = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object())
    return invalid(path, "index is not a JSON object");
  const auto map = index.find("weight_map");
  if (map == index.end() || !map->is_object()) {
    return invalid(path, "index has no \"weight_map\" object");
  }
  for (const auto& [name, file] : map->items()) {
    if (!file.is_string() || !plain_file_name(file.get<std::string>())) {
      return invalid(path, absl::StrCat("weight_map entry of '", name,
                                        "' is not a file name inside the directory"));
    }
  }
  return *map;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfWeights>> HfWeights::open(const std::string& dir) {
  std::unique_ptr<HfWeights> w(new HfWeights());
  w->dir_ = dir;
  std::error_code ec;
  const fs::path index = fs::path(dir) / kIndexName;
  const fs::path single = fs::path(dir) / kSingleName;
  if (fs::exists(index, ec)) {
    if (absl::Status s = w->open_index(index.string()); !s.ok()) return s;
    return w;
  }
  if (!fs::exists(single, ec)) {
    const bool bin = fs::exists(fs::path(dir) / "pytorch_model.bin", ec) ||
                     fs::exists(fs::path(dir) / "pytorch_model.bin.index.json", ec);
    return invalid(dir, absl::StrCat("has neither ", kIndexName, " nor ", kSingleName,
                                     bin ? " (only pytorch_model.bin: dsinf reads safetensors "
                                           "only; convert the checkpoint to safetensors)"
                                         : ""));
  }
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::open(single.string());
  if (!file.ok()) return file.status();
  w->files_.push_back(*std::move(file));
  for (const std::string& name : w->files_[0].names()) w->owner_[name] = 0;
  return w;
}

absl::Status HfWeights::open_index(const std::string& index_path) {
  absl::StatusOr<nlohmann::json> map = read_index(index_path);
  if (!map.ok()) return map.status();
  std::map<std::string, size_t> file_of_name;  // shard file -> index into files_
  for (const auto& [tensor, file_json] : map->items()) {
    const std::string file = file_json.get<std::string>();
    if (!file_of_name.contains(file)) {
      const fs::path path = fs::path(dir_) / file;
      std::error_code ec;
      if (!fs::exists(path, ec)) {
        return invalid(index_path, absl::StrCat("lists shard '", file, "' (for tensor '", tensor,
                                                "'), which is missing from ", dir_));
      }
      absl::StatusOr<SafetensorsFile> shard = SafetensorsFile::open(path.string());
      if (!shard.ok()) return shard.status();
      file_of_name[file] = files_.size();
      files_.push_back(*std::move(shard));
    }
    const size_t f = file_of_name[file];
    if (files_[f].find(tensor) == nullptr) {
      return invalid(files_[f].where(), absl::StrCat("has no tensor '", tensor, "', which ",
                                                     index_path, " places there"));
    }
    owner_[tensor] = f;
  }
  for (size_t f = 0; f < files_.size(); ++f) {
    for (const std::string& name : files_[f].names()) {
      const auto it = owner_.find(name);
      if (it == owner_.end() || it->second != f) {
        return invalid(files_[f].where(), absl::StrCat("holds tensor '", name, "', which ",
                                                       index_path, " does not place there"));
      }
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> HfWeights::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : owner_) out.push_back(name);
  return out;
}

const SafetensorsEntry* HfWeights::find(const std::string& name) const {
  const auto it = owner_.find(name);
  return it == owner_.end() ? nullptr : files_[it->second].find(name);
}

absl::StatusOr<std::vector<float>> HfWeights::read_f32(
    const std::string& name, const std::vector<int64_t>& expected_shape) const {
  const auto it = owner_.find(name);
  if (it == owner_.end()) return invalid(dir_, absl::StrCat("no tensor '", name, "'"));
  return files_[it->second].read_f32(name, expected_shape);
}

std::string HfWeights::file_of(const std::string& name) const {
  const auto it = owner_.find(name);
  return it == owner_.end() ? dir_ : files_[it->second].where();
}

const std::vector<std::string>& hf_tokenizer_files() {
  static const std::vector<std::string> files = {"tokenizer.json",
                                                 "tokenizer_config.json",
                                                 "special_tokens_map.json",
                                                 "tokenizer.model",
                                                 "vocab.json",
                                                 "merges.txt",
                                                 "generation_config.json",
                                                 "added_tokens.json",
                                                 "chat_template.jinja"};
  return files;
}

bool has_tokenizer(const std::string& dir) {
  std::error_code ec;
  for (const char* name : {"tokenizer.json", "tokenizer.model", "vocab.json"}) {
    if (fs::exists(fs::path(dir) / name, ec)) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<TensorReader>> open_weights(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    absl::StatusOr<std::unique_ptr<HfWeights>> dir = HfWeights::open(path);
    if (!dir.ok()) return dir.status();
    return std::unique_ptr<TensorReader>(*std::move(dir));
  }
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::open(path);
  if (!file.ok()) return file.status();
  return std::unique_ptr<TensorReader>(std::make_unique<SafetensorsFile>(*std::move(file)));
}

absl::StatusOr<HfShardWriter> HfShardWriter::create(const std::string& dir,
                                                    std::vector<HfTensorInfo> tensors,
                                                    TensorDtype dtype, uint64_t max_shard_bytes,
                                                    std::map<std::string, std::string> metadata) {
  HfShardWriter w;
  w.dir_ = dir;
  w.dtype_ = dtype;
  w.metadata_ = std::move(metadata);
  const uint64_t elem = dtype == TensorDtype::kF32 ? 4 : 2;
  uint64_t in_shard = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    uint64_t bytes = elem;
    for (int64_t d : tensors[i].shape) bytes *= static_cast<uint64_t>(d);
    if (i == 0 || (in_shard > 0 && in_shard + bytes > max_shard_bytes)) {
      w.shard_first_.push_back(i);
      in_shard = 0;
    }
    in_shard += bytes;
    w.total_bytes_ += bytes;
  }
  w.tensors_ = std::move(tensors);
  return w;
}

std::string HfShardWriter::shard_name(size_t shard) const {
  if (num_shards() == 1) return kSingleName;
  return absl::StrFormat("model-%05d-of-%05d.safetensors", shard + 1, num_shards());
}

std::vector<std::string> HfShardWriter::files() const {
  std::vector<std::string> out;
  for (size_t s = 0; s < num_shards(); ++s) out.push_back(shard_name(s));
  if (num_shards() > 1) out.push_back(kIndexName);
  return out;
}

absl::Status HfShardWriter::open_shard(size_t shard) {
  const size_t end = shard + 1 < num_shards() ? shard_first_[shard + 1] : tensors_.size();
  std::vector<TensorToWrite> plan;
  for (size_t i = shard_first_[shard]; i < end; ++i) {
    plan.push_back({tensors_[i].name, tensors_[i].shape, nullptr});
  }
  const std::string path = (fs::path(dir_) / shard_name(shard)).string();
  absl::StatusOr<std::string> header = safetensors_header(plan, metadata_, dtype_, path);
  if (!header.ok()) return header.status();
  writer_.reset();
  absl::StatusOr<util::AtomicFileWriter> writer = util::AtomicFileWriter::open(path);
  if (!writer.ok()) return writer.status();
  writer_.emplace(*std::move(writer));
  open_shard_ = shard;
  return writer_->write(*header);
}

absl::Status HfShardWriter::write(const std::string& name, const float* data) {
  if (next_ >= tensors_.size() || tensors_[next_].name != name) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard writer: '", name, "' is not the next tensor of the plan"));
  }
  size_t shard = 0;
  while (shard + 1 < num_shards() && shard_first_[shard + 1] <= next_) ++shard;
  if (next_ == shard_first_[shard]) {
    if (absl::Status s = open_shard(shard); !s.ok()) return s;
  }
  size_t numel = 1;
  for (int64_t d : tensors_[next_].shape) numel *= static_cast<size_t>(d);
  if (absl::Status s = write_tensor_data(*writer_, data, numel, dtype_); !s.ok()) return s;
  ++next_;
  const bool last_of_shard =
      shard + 1 < num_shards() ? next_ == shard_first_[shard + 1] : next_ == tensors_.size();
  if (!last_of_shard) return absl::OkStatus();
  absl::Status committed = writer_->commit();
  writer_.reset();
  return committed;
}

absl::Status HfShardWriter::finish() {
  if (next_ != tensors_.size()) {
    return absl::FailedPreconditionError(absl::StrCat("shard writer: ", tensors_.size() - next_,
                                                      " tensors of the plan were not written"));
  }
  if (num_shards() <= 1) return absl::OkStatus();
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total_bytes_}};
  nlohmann::ordered_json map = nlohmann::ordered_json::object();
  for (size_t s = 0; s < num_shards(); ++s) {
    const size_t end = s + 1 < num_shards() ? shard_first_[s + 1] : tensors_.size();
    for (size_t i = shard_first_[s]; i < end; ++i) map[tensors_[i].name] = shard_name(s);
  }
  index["weight_map"] = std::move(map);
  absl::StatusOr<util::AtomicFileWriter> writer =
      util::AtomicFileWriter::open((fs::path(dir_) / kIndexName).string());
  if (!writer.ok()) return writer.status();
  if (absl::Status s = writer->write(index.dump(2) + "\n"); !s.ok()) return s;
  return writer->commit();
}

}  // namespace dsinf::trainer
