// `dsinf export`: the weights with Hugging Face names, as a Hugging Face
// model directory (config.json, shards, index, the source's tokenizer files)
// or, for GPT-2, as one safetensors file.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/util/atomic_file.h"
#include "memory/util/format.h"
#include "trainer/config/model_reader.h"
#include "trainer/models/hf_weights.h"
#include "trainer/models/safetensors.h"
#include "trainer/train/jobs.h"
#include "trainer/train/session.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;

std::string torch_dtype(TensorDtype dtype) {
  return dtype == TensorDtype::kBF16  ? "bfloat16"
         : dtype == TensorDtype::kF16 ? "float16"
                                      : "float32";
}

// A single file says which model and weights it holds; a directory's
// config.json says the model, and its shards hold only what transformers
// reads, so an export of an import of an export is the same bytes.
std::map<std::string, std::string> export_metadata(const Session& session, bool directory) {
  if (directory) return {{"format", "pt"}};
  return {{"format", "pt"},
          {"dsinf_model", session.model->shape_text()},
          {"dsinf_weights", session.weights_source}};
}

absl::Status bad_out(const std::string& out, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("--out: '", out, "' ", why));
}

// --out for a directory export: an empty or new directory in an existing one.
absl::Status check_out_directory(const std::string& out) {
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec)) return bad_out(out, "exists and is not a directory");
    if (!fs::is_empty(out, ec)) {
      return bad_out(out,
                     "is a directory that is not empty (dsinf exports into a new or "
                     "empty directory and overwrites nothing)");
    }
    return absl::OkStatus();
  }
  const fs::path parent = fs::absolute(out, ec).parent_path();
  if (!fs::is_directory(parent, ec)) {
    return bad_out(out,
                   absl::StrCat("cannot be created: '", parent.string(), "' is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status write_file_atomic(const std::string& path, const std::string& bytes) {
  absl::StatusOr<util::AtomicFileWriter> writer = util::AtomicFileWriter::open(path);
  if (!writer.ok()) return writer.status();
  if (absl::Status s = writer->write(bytes); !s.ok()) return s;
  return writer->commit();
}

absl::Status copy_file_atomic(const fs::path& from, const fs::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read '", from.string(), "'"));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad())
    return absl::InvalidArgumentError(absl::StrCat("error reading '", from.string(), "'"));
  return write_file_atomic(to.string(), bytes);
}

// Every tensor, chunk by chunk through the shard writer: host memory holds
// one chunk at a time.
absl::StatusOr<HfShardWriter> write_shards(const Session& session, const std::string& out,
                                           TensorDtype dtype, uint64_t max_shard_bytes) {
  std::vector<HfTensorInfo> plan;
  for (const HostTensor& t : session.model->hf_tensors()) plan.push_back({t.name, t.shape});
  absl::StatusOr<HfShardWriter> writer =
      HfShardWriter::create(out, plan, dtype, max_shard_bytes, export_metadata(session, true));
  if (!writer.ok()) return writer.status();
  for (size_t c = 0; c < session.model->layouts().size(); ++c) {
    absl::StatusOr<std::vector<HostTensor>> tensors =
        session.model->export_chunk(*session.runtime, c, /*gradients=*/false);
    if (!tensors.ok()) return tensors.status();
    for (const HostTensor& t : *tensors) {
      if (absl::Status s = writer->write(t.name, t.data.data()); !s.ok()) return s;
    }
  }
  if (absl::Status s = writer->finish(); !s.ok()) return s;
  return writer;
}

absl::Status export_directory(const Config& config, Session& session, const std::string& out,
                              const ExportOptions& options, const RunOptions& run) {
  std::error_code ec;
  const bool created = !fs::exists(out, ec);
  if (created && !fs::create_directory(out, ec)) {
    return bad_out(out, absl::StrCat("cannot be created: ", ec.message()));
  }
  absl::StatusOr<HfShardWriter> writer =
      write_shards(session, out, options.dtype, options.max_shard_bytes);
  absl::Status status = writer.status();
  if (status.ok()) {
    status =
        write_file_atomic((fs::path(out) / "config.json").string(),
                          hf_config_json(config.model, torch_dtype(options.dtype)).dump(2) + "\n");
  }
  int copied = 0;
  for (const std::string& name : hf_tokenizer_files()) {
    if (!status.ok() || !config.model.init_from_directory) break;
    const fs::path from = fs::path(config.model.init_from) / name;
    if (!fs::is_regular_file(from, ec)) continue;
    status = copy_file_atomic(from, fs::path(out) / name);
    ++copied;
  }
  if (!status.ok()) {
    // Nothing half-written is left: the directory was empty or new.
    for (const fs::directory_entry& e : fs::directory_iterator(out, ec)) fs::remove(e.path(), ec);
    if (created) fs::remove(out, ec);
    return status;
  }
  human(run.json) << absl::StrFormat(
      "exported %s (%s, %s) from %s to %s: %d shard(s), config.json, %d tokenizer file(s)\n",
      config.model.type, torch_dtype(options.dtype), util::format_bytes(writer->total_bytes()),
      session.weights_source, out, writer->num_shards(), copied);
  if (run.json) {
    emit_json({{"directory", out},
               {"files", writer->files()},
               {"shards", writer->num_shards()},
               {"bytes", writer->total_bytes()},
               {"dtype", torch_dtype(options.dtype)},
               {"tokenizer_files", copied},
               {"weights", session.weights_source}});
  }
  return absl::OkStatus();
}

// PEFT's adapter_config.json for the lora section.
nlohmann::ordered_json peft_adapter_config(const ModelConfig& m) {
  const LoraConfig& lora = m.lora;
  nlohmann::ordered_json alpha = lora.alpha;
  if (lora.alpha == std::floor(lora.alpha) && lora.alpha < 1e9) {
    alpha = static_cast<int64_t>(lora.alpha);
  }
  nlohmann::ordered_json saved = nullptr;
  if (!lora.modules_to_save.empty()) saved = lora.modules_to_save;
  return {{"alpha_pattern", nlohmann::ordered_json::object()},
          {"base_model_name_or_path", m.init_from.empty() ? nlohmann::ordered_json(nullptr)
                                                          : nlohmann::ordered_json(m.init_from)},
          {"bias", "none"},
          {"fan_in_fan_out", false},
          {"inference_mode", true},
          {"init_lora_weights", true},
          {"layers_pattern", nullptr},
          {"layers_to_transform", nullptr},
          {"lora_alpha", alpha},
          {"lora_dropout", lora.dropout},
          {"modules_to_save", saved},
          {"peft_type", "LORA"},
          {"r", lora.r},
          {"rank_pattern", nlohmann::ordered_json::object()},
          {"revision", nullptr},
          {"target_modules", lora.target_modules},
          {"task_type", "CAUSAL_LM"},
          {"use_dora", false},
          {"use_rslora", lora.use_rslora}};
}

// A PEFT adapter directory: adapter_config.json and adapter_model.safetensors.
absl::Status export_adapter(const Config& config, Session& session, const std::string& out,
                            const ExportOptions& options, const RunOptions& run) {
  absl::StatusOr<std::vector<HostTensor>> tensors = session.model->adapter_tensors(*session.runtime);
  if (!tensors.ok()) return tensors.status();
  std::error_code ec;
  const bool created = !fs::exists(out, ec);
  if (created && !fs::create_directory(out, ec)) {
    return bad_out(out, absl::StrCat("cannot be created: ", ec.message()));
  }
  std::vector<TensorToWrite> to_write;
  size_t elements = 0;
  for (const HostTensor& t : *tensors) {
    to_write.push_back({t.name, t.shape, t.data.data()});
    elements += t.data.size();
  }
  absl::Status status = write_safetensors((fs::path(out) / "adapter_model.safetensors").string(),
                                          to_write, {{"format", "pt"}}, options.dtype);
  if (status.ok()) {
    status = write_file_atomic((fs::path(out) / "adapter_config.json").string(),
                               peft_adapter_config(config.model).dump(2) + "\n");
  }
  if (!status.ok()) {
    for (const fs::directory_entry& e : fs::directory_iterator(out, ec)) fs::remove(e.path(), ec);
    if (created) fs::remove(out, ec);
    return status;
  }
  const size_t bytes = elements * (options.dtype == TensorDtype::kF32 ? 4 : 2);
  human(run.json) << absl::StrFormat(
      "exported the LoRA adapter (%d tensors, %s, r=%d) from %s to %s\n", to_write.size(),
      util::format_bytes(bytes), config.model.lora.r, session.weights_source, out);
  if (run.json) {
    emit_json({{"directory", out},
               {"adapter", true},
               {"tensors", to_write.size()},
               {"bytes", bytes},
               {"dtype", torch_dtype(options.dtype)},
               {"weights", session.weights_source}});
  }
  return absl::OkStatus();
}

// GPT-2's single safetensors file.
absl::Status export_file(Session& session, const std::string& out, const ExportOptions& options,
                         const RunOptions& run) {
  std::error_code ec;
  const fs::path parent = fs::absolute(out, ec).parent_path();
  if (fs::is_directory(out, ec) || !fs::is_directory(parent, ec)) {
    return bad_out(out, "must name a file in an existing directory");
  }
  absl::StatusOr<std::vector<HostTensor>> tensors =
      session.model->export_hf(*session.runtime, /*gradients=*/false);
  if (!tensors.ok()) return tensors.status();
  std::vector<TensorToWrite> to_write;
  size_t elements = 0;
  for (const HostTensor& t : *tensors) {
    to_write.push_back({t.name, t.shape, t.data.data()});
    elements += t.data.size();
  }
  if (absl::Status s =
          write_safetensors(out, to_write, export_metadata(session, false), options.dtype);
      !s.ok()) {
    return s;
  }
  const size_t bytes = elements * (options.dtype == TensorDtype::kF32 ? 4 : 2);
  human(run.json) << absl::StrFormat("exported %d tensors (%s) from %s to %s\n", to_write.size(),
                                     util::format_bytes(bytes), session.weights_source, out);
  if (run.json) {
    emit_json({{"file", out},
               {"tensors", to_write.size()},
               {"bytes", bytes},
               {"dtype", torch_dtype(options.dtype)},
               {"weights", session.weights_source}});
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status run_export(const LoadedConfig& loaded, const std::string& out_path,
                        const ExportOptions& export_options, const RunOptions& options) {
  const Config& config = loaded.config;
  if (out_path.empty()) return bad_out(out_path, "is empty");
  if (export_options.kind != ExportOptions::Kind::kModel && !config.model.lora.enabled) {
    return absl::InvalidArgumentError(
        absl::StrCat(export_options.kind == ExportOptions::Kind::kAdapter ? "--adapter" : "--merged",
                     ": ", config.source_path, " has no lora section (no adapters to export)"));
  }
  const bool adapter = export_options.kind == ExportOptions::Kind::kAdapter;
  // GPT-2 keeps its single-file export for an --out ending in .safetensors.
  const bool single_file = absl::EndsWith(out_path, ".safetensors");
  if (single_file && (config.model.type != "gpt2" || adapter)) {
    return bad_out(out_path, absl::StrCat("names a file; a ", config.model.type,
                                          " exports as a Hugging Face directory"));
  }
  if (!single_file) {
    if (absl::Status s = check_out_directory(out_path); !s.ok()) return s;
  }
  absl::StatusOr<Session> session = open_session(config, options.env, /*training=*/false, /*fp32_weights=*/true);
  if (!session.ok()) return session.status();
  if (absl::Status s = load_inference_weights(config, *session); !s.ok()) return s;
  if (adapter) return export_adapter(config, *session, out_path, export_options, options);
  return single_file ? export_file(*session, out_path, export_options, options)
                     : export_directory(config, *session, out_path, export_options, options);
}

}  // namespace dsinf::trainer
