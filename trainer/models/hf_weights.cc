#include "trainer/models/hf_weights.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/util/errno_status.h"
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

// Where a weight file of `dir` may resolve to: `dir` itself, or the cache
// repository folder when `dir` is a Hugging Face cache snapshot
// (<repo>/snapshots/<revision>, whose files link to <repo>/blobs/<hash>).
fs::path allowed_root(const fs::path& canonical_dir) {
  const fs::path parent = canonical_dir.parent_path();
  if (parent.filename() == "snapshots") return parent.parent_path();
  return canonical_dir;
}

// A weight file that is a symbolic link is followed only to a file inside
// allowed_root(dir): a link cannot make dsinf read outside the model.
absl::Status check_contained(const std::string& where, const fs::path& dir, const fs::path& file) {
  std::error_code ec;
  if (!fs::is_symlink(fs::symlink_status(file, ec))) return absl::OkStatus();
  const fs::path target = fs::canonical(file, ec);
  if (ec) {
    return invalid(where, absl::StrCat(file.string(), " is a symbolic link that cannot be resolved: ",
                                       ec.message()));
  }
  const fs::path root = allowed_root(fs::canonical(dir, ec));
  if (ec) return invalid(dir.string(), absl::StrCat("cannot be resolved: ", ec.message()));
  const auto [r, t] = std::mismatch(root.begin(), root.end(), target.begin(), target.end());
  if (r != root.end() || t == target.end()) {
    return invalid(where, absl::StrCat(file.string(), " is a symbolic link to ", target.string(),
                                       ", outside ", root.string()));
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> read_index(const std::string& path) {
  std::error_code ec;
  const uintmax_t bytes = fs::file_size(path, ec);
  if (ec) return invalid(path, absl::StrCat("cannot read the index: ", ec.message()));
  if (bytes > kMaxIndexBytes) {
    return invalid(
        path, absl::StrCat("index is ", bytes, " bytes, over the ", kMaxIndexBytes, "-byte limit"));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) return invalid(path, "cannot read the index");
  nlohmann::json index = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object())
    return invalid(path, "index is not a JSON object");
  const auto metadata = index.find("metadata");
  if (metadata != index.end() && !metadata->is_object()) {
    return invalid(path, "index \"metadata\" is not an object");
  }
  const auto map = index.find("weight_map");
  if (map == index.end() || !map->is_object()) {
    return invalid(path, "index has no \"weight_map\" object");
  }
  if (map->empty()) return invalid(path, "index \"weight_map\" lists no tensor");
  for (const auto& [name, file] : map->items()) {
    if (!file.is_string() || !plain_file_name(file.get<std::string>())) {
      return invalid(path, absl::StrCat("weight_map entry of '", name,
                                        "' is not a file name inside the directory"));
    }
  }
  return *map;
}

// Why `dir` holds no safetensors weights: the files looked for, and a hint
// when it holds PyTorch pickles instead.
absl::Status no_weights(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return invalid(dir, "is not a directory");
  bool pickles = false;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    // pytorch_model.bin, its shards and their index (not training_args.bin).
    if (name.starts_with("pytorch_model") && (name.ends_with(".bin") || name.ends_with(".json"))) {
      pickles = true;
    }
  }
  return invalid(dir, absl::StrCat("has neither ", kIndexName, " nor ", kSingleName,
                                   pickles ? " (only PyTorch pytorch_model*.bin files: dsinf reads "
                                             "safetensors only; convert the checkpoint to "
                                             "safetensors)"
                                           : ""));
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfWeights>> HfWeights::open(const std::string& dir) {
  std::unique_ptr<HfWeights> w(new HfWeights());
  w->dir_ = dir;
  std::error_code ec;
  const fs::path index = fs::path(dir) / kIndexName;
  const fs::path single = fs::path(dir) / kSingleName;
  if (fs::exists(index, ec)) {
    if (absl::Status s = check_contained(dir, dir, index); !s.ok()) return s;
    if (absl::Status s = w->open_index(index.string()); !s.ok()) return s;
    return w;
  }
  if (!fs::exists(single, ec)) return no_weights(dir);
  if (absl::Status s = check_contained(dir, dir, single); !s.ok()) return s;
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
      if (absl::Status s = check_contained(index_path, dir_, path); !s.ok()) return s;
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

namespace {

// Each tensor's stored bytes; kInvalidArgument naming `dir` and the tensor
// for an empty plan, a reserved or repeated name, or a negative or
// overflowing shape.
absl::StatusOr<std::vector<uint64_t>> planned_bytes(const std::string& dir,
                                                    const std::vector<HfTensorInfo>& tensors,
                                                    TensorDtype dtype) {
  if (tensors.empty()) return invalid(dir, "no tensors to write");
  std::set<std::string> seen;
  std::vector<uint64_t> out;
  uint64_t total = 0;
  for (const HfTensorInfo& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return invalid(dir, absl::StrCat("reserved tensor name '", t.name, "'"));
    }
    if (!seen.insert(t.name).second) {
      return invalid(dir, absl::StrCat("tensor '", t.name, "' appears twice in the plan"));
    }
    uint64_t bytes = dtype == TensorDtype::kF32 ? 4 : 2;
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes)) {
        return invalid(dir,
                       absl::StrCat("tensor '", t.name, "' has a negative or overflowing shape"));
      }
    }
    if (__builtin_add_overflow(total, bytes, &total)) {
      return invalid(dir, "the tensors' total size overflows");
    }
    out.push_back(bytes);
  }
  return out;
}

// "model-00001-of-00003.safetensors" and the like, as transformers names shards.
bool is_shard_name(const std::string& name) {
  if (name.size() != 32 || !name.starts_with("model-") || !name.ends_with(".safetensors") ||
      name.substr(11, 4) != "-of-") {
    return false;
  }
  const std::string digits = name.substr(6, 5) + name.substr(15, 5);
  return digits.find_first_not_of("0123456789") == std::string::npos;
}

absl::Status remove_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::remove(path, ec) && ec) {
    return util::errno_status(ec.value(), absl::StrCat(path.string(), ": cannot remove"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HfShardWriter> HfShardWriter::create(const std::string& dir,
                                                    std::vector<HfTensorInfo> tensors,
                                                    TensorDtype dtype, uint64_t max_shard_bytes,
                                                    std::map<std::string, std::string> metadata) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return absl::NotFoundError(absl::StrCat(dir, ": no such directory"));
  if (!fs::is_directory(dir, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, ": is not a directory"));
  }
  if (max_shard_bytes == 0) return invalid(dir, "max_shard_bytes is 0");
  absl::StatusOr<std::vector<uint64_t>> bytes = planned_bytes(dir, tensors, dtype);
  if (!bytes.ok()) return bytes.status();
  HfShardWriter w;
  w.dir_ = dir;
  w.dtype_ = dtype;
  w.metadata_ = std::move(metadata);
  uint64_t in_shard = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (i == 0 || (in_shard > 0 && in_shard + (*bytes)[i] > max_shard_bytes)) {
      w.shard_first_.push_back(i);
      in_shard = 0;
    }
    in_shard += (*bytes)[i];
    w.total_bytes_ += (*bytes)[i];
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

size_t HfShardWriter::shard_end(size_t shard) const {
  return shard + 1 < num_shards() ? shard_first_[shard + 1] : tensors_.size();
}

absl::Status HfShardWriter::open_shard(size_t shard) {
  std::vector<TensorToWrite> plan;
  for (size_t i = shard_first_[shard]; i < shard_end(shard); ++i) {
    plan.push_back({tensors_[i].name, tensors_[i].shape, nullptr});
  }
  const std::string path = (fs::path(dir_) / shard_name(shard)).string();
  absl::StatusOr<std::string> header = safetensors_header(plan, metadata_, dtype_, path);
  if (!header.ok()) return header.status();
  if (shard == 0) {
    // An earlier index would otherwise describe the shards as they are
    // replaced one by one; without it a half-written directory does not load.
    const fs::path index = fs::path(dir_) / kIndexName;
    std::error_code ec;
    if (fs::exists(index, ec)) {
      if (absl::Status s = remove_file(index); !s.ok()) return s;
      if (absl::Status s = util::sync_parent_dir(index.string()); !s.ok()) return s;
    }
  }
  absl::StatusOr<util::AtomicFileWriter> writer = util::AtomicFileWriter::open(path);
  if (!writer.ok()) return writer.status();
  writer_.emplace(*std::move(writer));
  return writer_->write(*header);
}

absl::Status HfShardWriter::write(const std::string& name, const float* data) {
  if (failed_) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir_, ": shard writer: an earlier step failed; nothing more is written"));
  }
  absl::Status status = write_next(name, data);
  if (!status.ok()) abandon();
  return status;
}

void HfShardWriter::abandon() {
  writer_.reset();  // an uncommitted writer removes its temporary file
  failed_ = true;
}

absl::Status HfShardWriter::write_next(const std::string& name, const float* data) {
  if (next_ >= tensors_.size() || tensors_[next_].name != name) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir_, ": shard writer: '", name, "' is not the next tensor of the plan",
                     next_ < tensors_.size() ? absl::StrCat(" ('", tensors_[next_].name, "')")
                                             : std::string(" (all were written)")));
  }
  size_t numel = 1;
  for (int64_t d : tensors_[next_].shape) numel *= static_cast<size_t>(d);
  if (numel > 0 && data == nullptr)
    return invalid(dir_, absl::StrCat("null data for '", name, "'"));
  size_t shard = 0;
  while (shard + 1 < num_shards() && shard_first_[shard + 1] <= next_) ++shard;
  if (next_ == shard_first_[shard]) {
    if (absl::Status s = open_shard(shard); !s.ok()) return s;
  }
  if (absl::Status s = write_tensor_data(*writer_, data, numel, dtype_); !s.ok()) return s;
  ++next_;
  if (next_ != shard_end(shard)) return absl::OkStatus();
  absl::Status committed = writer_->commit();
  writer_.reset();
  return committed;
}

absl::Status HfShardWriter::finish() {
  if (failed_ || next_ != tensors_.size()) {
    const std::string why =
        failed_ ? "an earlier step failed"
                : absl::StrCat(tensors_.size() - next_, " tensors of the plan were not written");
    abandon();
    return absl::FailedPreconditionError(absl::StrCat(dir_, ": shard writer: ", why));
  }
  absl::Status status = num_shards() > 1 ? write_index() : absl::OkStatus();
  if (status.ok()) status = remove_stale_files();
  if (!status.ok()) abandon();
  return status;
}

absl::Status HfShardWriter::write_index() const {
  // As transformers writes it: sorted keys, two-space indent, a final newline.
  nlohmann::json map = nlohmann::json::object();
  for (size_t s = 0; s < num_shards(); ++s) {
    for (size_t i = shard_first_[s]; i < shard_end(s); ++i) map[tensors_[i].name] = shard_name(s);
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total_bytes_}}},
                                {"weight_map", std::move(map)}};
  absl::StatusOr<util::AtomicFileWriter> writer =
      util::AtomicFileWriter::open((fs::path(dir_) / kIndexName).string());
  if (!writer.ok()) return writer.status();
  if (absl::Status s = writer->write(index.dump(2) + "\n"); !s.ok()) return s;
  return writer->commit();
}

// Weight files of an earlier save into the same directory that this one did
// not replace (transformers' save_pretrained removes them too): left behind,
// an old index or shard could be read in place of the new weights.
absl::Status HfShardWriter::remove_stale_files() const {
  const std::vector<std::string> ours = files();
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const fs::directory_entry& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    const bool weights = name == kIndexName || name == kSingleName || is_shard_name(name);
    if (weights && std::find(ours.begin(), ours.end(), name) == ours.end()) {
      stale.push_back(e.path());
    }
  }
  if (ec) return util::errno_status(ec.value(), absl::StrCat(dir_, ": cannot list"));
  for (const fs::path& path : stale) {
    if (absl::Status s = remove_file(path); !s.ok()) return s;
  }
  // sync_parent_dir syncs the directory holding its argument: dir_.
  if (stale.empty()) return absl::OkStatus();
  return util::sync_parent_dir((fs::path(dir_) / kIndexName).string());
}

}  // namespace dsinf::trainer
