// Small training configs and the checks the CLI-level training tests share.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>

#include "tests/test_util.h"

namespace dsinf::testing {

// A license text of the machine, else a generated corpus in `dir`.
inline std::string corpus(const TempDir& dir) {
  const std::string licenses = "/usr/share/common-licenses/GPL-3";
  if (std::filesystem::exists(licenses)) return licenses;
  std::string text;
  for (int i = 0; text.size() < 40000; ++i) text += "lorem ipsum " + std::to_string(i) + ". ";
  write_text(dir / "corpus.txt", text);
  return dir / "corpus.txt";
}

// A 3-layer GPT-2 with gradient accumulation and clipping on: the math the
// offload runtime must reproduce bit for bit.
inline nlohmann::json base_config(const TempDir& dir, const std::string& out, int steps) {
  return {
      {"train_micro_batch_size_per_gpu", 2},
      {"gradient_accumulation_steps", 2},
      {"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 3e-3}, {"weight_decay", 0.01}}}}},
      {"scheduler",
       {{"type", "WarmupDecayLR"},
        {"params", {{"total_num_steps", 40}, {"warmup_num_steps", 2}, {"warmup_max_lr", 3e-3}}}}},
      {"gradient_clipping", 0.5},
      {"steps_per_print", 1},
      {"model",
       {{"n_layer", 3}, {"n_head", 2}, {"n_embd", 32}, {"n_positions", 32}, {"vocab_size", 256}}},
      {"data", {{"path", corpus(dir)}}},
      {"train", {{"steps", steps}, {"output_dir", out}, {"seed", 7}}}};
}

// A 3-layer Llama with grouped-query attention and an untied head, seeded.
inline nlohmann::json llama_config(const TempDir& dir, const std::string& out, int steps) {
  nlohmann::json c = base_config(dir, out, steps);
  c["model"] = {{"type", "llama"},          {"hidden_size", 32},
                {"num_hidden_layers", 3},   {"num_attention_heads", 4},
                {"num_key_value_heads", 2}, {"intermediate_size", 48},
                {"vocab_size", 256},        {"max_position_embeddings", 64}};
  c["data"]["seq_len"] = 32;
  return c;
}

// An offload_param / offload_optimizer block.
inline nlohmann::json offload(const std::string& device, const std::string& nvme_dir) {
  nlohmann::json o = {{"device", device}};
  if (device == "nvme") o["nvme_path"] = nvme_dir;
  return o;
}

// `dsinf COMMAND <dir>/<name>.json --json EXTRA` with `config` written there.
inline CommandResult run_config(const TempDir& dir, const std::string& command,
                                const std::string& name, const nlohmann::json& config,
                                const std::string& extra = "") {
  const std::string path = dir / (name + ".json");
  write_text(path, config.dump(2));
  return run_dsinf(command + " " + path + " --json " + extra, dir.path());
}

// The loss `eval --json` reports.
inline double eval_loss(const CommandResult& r) {
  for (const nlohmann::json& line : json_lines(r.out)) {
    if (line.contains("loss")) return line["loss"].get<double>();
  }
  ADD_FAILURE() << r.out << r.err;
  return -1;
}

// The summary line of `train --json`.
inline nlohmann::json summary(const CommandResult& r) {
  for (const nlohmann::json& line : json_lines(r.out)) {
    if (line.value("event", "") == "summary") return line;
  }
  ADD_FAILURE() << "no summary in " << r.out << r.err;
  return nlohmann::json();
}

inline std::string checkpoint_name(int step) {
  char name[32];
  std::snprintf(name, sizeof(name), "ckpt-%08d.dsinf", step);
  return name;
}

// The bytes of checkpoint `step` in `dir` ("" when missing).
inline std::string checkpoint(const std::string& dir, int step) {
  return read_text((std::filesystem::path(dir) / checkpoint_name(step)).string());
}

}  // namespace dsinf::testing
