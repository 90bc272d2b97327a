// The Llama family through the CLI: every offload placement trains to the
// in-memory run's checkpoint bytes; eval of a Hugging Face directory agrees
// with the independent float64 reference (torch_llama.py); an export after
// training loads into that reference with the loss dsinf eval reports; export
// and init_from round-trip byte for byte; bad checkpoint directories and
// unsupported config.json keys exit 2 naming the file, tensor or key; a
// window of 8192 tokens trains with activations linear in the window.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "tests/cli/train_util.h"
#include "tests/test_util.h"
#include "trainer/data/data.h"

namespace dsinf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string llama_script() {
  return std::string("/usr/bin/python3 ") + DSINF_SOURCE_DIR +
         "/tests/trainer/models/torch_llama.py";
}

// A Hugging Face directory of random bf16 weights written by the reference
// (`dir`/model), and a token shard of random ids (`dir`/tokens.bin).
void make_reference_model(const TempDir& dir, const std::string& args) {
  const CommandResult gen =
      run_command(llama_script() + " golden --out " + dir.path() + " " + args, dir.path());
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  std::vector<int32_t> tokens(2000);
  uint64_t x = 12345;
  for (int32_t& t : tokens) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t = static_cast<int32_t>((x >> 33) % 300);
  }
  ASSERT_TRUE(trainer::write_token_shard(dir / "tokens.bin", tokens).ok());
}

json finetune_config(const TempDir& dir, const std::string& model_dir, const std::string& out,
                     int steps) {
  json c = base_config(dir, out, steps);
  c["model"] = {{"init_from", model_dir}};
  c["data"] = {{"path", dir / "tokens.bin"}, {"seq_len", 16}};
  return c;
}

double reference_loss(const TempDir& dir, const std::string& model_dir) {
  const CommandResult r = run_command(
      llama_script() + " eval --dir " + model_dir + " --data " + (dir / "tokens.bin") + " --seq 16",
      dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? json::parse(r.out)["loss"].get<double>() : -1;
}

// Every placement, in fp32 and with bf16 / fp16 storage (working weights and
// gradient visits rounded to 16 bits off the device, fp32 master weights).
TEST(LlamaCli, EveryPlacementTrainsBitIdenticalToTheInMemoryRun) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  std::map<std::string, std::string> by_precision;  // llama's in-memory checkpoints
  for (const auto& [family_name, precision_name] :
       std::vector<std::pair<std::string, std::string>>{
           {"llama", "fp32"}, {"qwen3", "fp32"}, {"llama", "bf16"}, {"qwen3", "fp16"}}) {
    // Copies: a lambda may not capture a structured binding (C++20 as clang 14 has it).
    const std::string family = family_name, precision = precision_name;
    const std::string tag = family + "_" + precision;
    SCOPED_TRACE(tag);
    auto config_for = [&](const std::string& name) {
      json c = llama_config(dir, dir / name, 3);
      c["model"]["type"] = family;
      if (family == "qwen3") {
        c["model"]["head_dim"] = 12;
        c["model"]["tie_word_embeddings"] = true;
      }
      if (precision != "fp32") c[precision] = {{"enabled", true}};
      return c;
    };
    const CommandResult base = run_config(dir, "train", tag + "_mem", config_for(tag + "_mem"));
    ASSERT_EQ(base.exit_code, 0) << base.err;
    const std::string expected = checkpoint(dir / (tag + "_mem"), 3);
    ASSERT_GT(expected.size(), 4096u);
    if (family == "llama") by_precision[precision] = expected;
    // Each path new weights take to the working copy: Adam on the host, on
    // NVMe-staged state or on the device, into device, host or NVMe homes,
    // NVMe parameters with and without their host cache (max_in_cpu 0).
    struct Case {
      int stage;
      std::string params, optimizer;
      bool checkpointing = false, uncached = false;
    };
    for (const Case& k :
         {Case{2, "none", "cpu"}, Case{3, "none", "nvme"}, Case{3, "cpu", "cpu", true},
          Case{3, "cpu", "none"}, Case{3, "nvme", "nvme"}, Case{3, "nvme", "nvme", true, true},
          Case{3, "nvme", "cpu", false, true}, Case{3, "nvme", "none", false, true}}) {
      const std::string name = tag + "_s" + std::to_string(k.stage) + k.params + k.optimizer +
                               (k.checkpointing ? "_ckpt" : "") + (k.uncached ? "_uncached" : "");
      SCOPED_TRACE(name);
      json c = config_for(name);
      c["model"]["activation_checkpointing"] = k.checkpointing;
      c["zero_optimization"] = {{"stage", k.stage},
                                {"offload_optimizer", offload(k.optimizer, dir / "swap")}};
      if (k.stage == 3) {
        c["zero_optimization"]["offload_param"] = offload(k.params, dir / "swap");
        if (k.uncached) c["zero_optimization"]["offload_param"]["max_in_cpu"] = 0;
      }
      const CommandResult r = run_config(dir, "train", name, c);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_TRUE(checkpoint(dir / name, 3) == expected) << "checkpoint differs from stage 0";
    }
  }
  // The 16-bit storage was in effect: the weights trained differ from fp32's.
  EXPECT_NE(by_precision["bf16"], by_precision["fp32"]);
}

TEST(LlamaCli, ModelEightTimesTheDeviceBudgetTrainsOnNvmeBitIdentical) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  auto config_for = [&](const std::string& out, uint64_t budget) {
    json c = llama_config(dir, out, 3);
    c["train_micro_batch_size_per_gpu"] = 1;
    c["model"]["num_hidden_layers"] = 12;
    c["model"]["hidden_size"] = 64;
    c["model"]["intermediate_size"] = 128;
    c["model"]["activation_checkpointing"] = true;
    c["zero_optimization"] = {{"stage", 3},
                              {"offload_param", offload("nvme", dir / "swap")},
                              {"offload_optimizer", offload("nvme", dir / "swap")}};
    if (budget > 0) c["memory"] = {{"device_budget_bytes", budget}};
    c["bf16"] = {{"enabled", true}};
    return c;
  };
  json in_memory = config_for(dir / "mem", 0);
  in_memory.erase("zero_optimization");
  const CommandResult reference = run_config(dir, "train", "mem", in_memory);
  ASSERT_EQ(reference.exit_code, 0) << reference.err;
  const CommandResult refused = run_config(dir, "train", "tiny", config_for(dir / "tiny", 100000));
  ASSERT_EQ(refused.exit_code, 2);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(refused.err, match,
                                std::regex("least budget that trains this config is ([0-9]+)")))
      << refused.err;
  const uint64_t minimum = std::stoull(match[1]);
  const CommandResult r = run_config(dir, "train", "nvme", config_for(dir / "nvme", minimum));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json s = summary(r);
  // Parameters: embedding and head 2 x 256 x 64, 12 layers of q, o (64x64),
  // k, v (32x64) and three 128x64 MLP matrices; norms left out. State is 18
  // bytes a parameter (fp32 master weights, gradients, Adam m and v, and bf16
  // working weights); 16 of them are counted.
  const uint64_t params = 2 * 256 * 64 + 12 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 128 * 64);
  EXPECT_GE(16 * params, 8 * minimum) << "the model is not 8x the budget";
  EXPECT_LE(s["peak_bytes"]["device"].get<uint64_t>(), minimum);
  EXPECT_EQ(s["final_loss"].get<double>(), summary(reference)["final_loss"].get<double>());
  EXPECT_TRUE(checkpoint(dir / "nvme", 3) == checkpoint(dir / "mem", 3));
  // The plan: working params stored and moved in bf16, 2 bytes a parameter.
  // Given bandwidths (a `bench tiers` result), so nothing is timed.
  const json tiers = {{"host_update_gbps", 10.0},
                      {"host_copy", {{"pageable_to_aligned_gbps", 5.0}, {"aligned_to_pageable_gbps", 5.0}}},
                      {"nvme", {{"read_gbps", 2.0}, {"write_gbps", 1.0}, {"engine", "uring"}}},
                      {"device", nullptr},
                      {"cpu_gflops", 100.0}};
  write_text(dir / "tiers.json", tiers.dump());
  const CommandResult plan =
      run_config(dir, "plan", "nvme", config_for(dir / "nvme", minimum), "--tiers " + (dir / "tiers.json"));
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  const json p = json::parse(plan.out);
  EXPECT_EQ(p["placement"]["working_dtype"], "bf16");
  bool found = false;
  for (const json& cls : p["classes"]) {
    if (cls["class"] != "params") continue;
    found = true;
    EXPECT_EQ(cls["tier"], "nvme");
    EXPECT_EQ(cls["stored_dtype"], "bf16");
    EXPECT_EQ(cls["moved_bytes_per_param"], 2);
    // Page-padded chunks of 2 bytes an element: at least 2 and under 3 bytes a parameter.
    EXPECT_GE(cls["bytes"].get<uint64_t>(), 2 * params);
    EXPECT_LT(cls["bytes"].get<uint64_t>(), 3 * params);
  }
  EXPECT_TRUE(found) << plan.out;
}

TEST(LlamaCli, CheckpointLargerThanTheHostBudgetLoadsWithParametersOnNvme) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  json c = llama_config(dir, dir / "src", 1);
  c["model"]["num_hidden_layers"] = 16;
  c["model"]["hidden_size"] = 128;
  c["model"]["intermediate_size"] = 256;
  ASSERT_EQ(run_config(dir, "train", "src", c).exit_code, 0);
  const CommandResult exported = run_config(dir, "export", "src", c, "--out " + (dir / "hf"));
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  const uint64_t checkpoint_bytes = json_lines(exported.out).back()["bytes"].get<uint64_t>();
  const uint64_t budget = 4000000;
  ASSERT_GT(checkpoint_bytes, 2 * budget);
  json from_dir = c;
  from_dir["model"] = {{"init_from", dir / "hf"}};
  from_dir["train"]["output_dir"] = dir / "none";
  from_dir["zero_optimization"] = {{"stage", 3},
                                   {"offload_param", offload("nvme", dir / "swap")},
                                   {"offload_optimizer", offload("nvme", dir / "swap")}};
  from_dir["memory"] = {{"host_budget_bytes", budget}};
  const CommandResult a = run_config(dir, "eval", "src", c);
  const CommandResult b = run_config(dir, "eval", "from_dir", from_dir);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(eval_loss(a), eval_loss(b));
}

TEST(LlamaCli, EvalOfHuggingFaceDirectoriesAgreesWithTheReference) {
  if (!have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  for (const std::string args :
       {"--family llama --heads 4 --kv-heads 2 --rope-scaling llama3 --tie",
        "--family mistral --heads 4 --kv-heads 2 --head-dim 16",
        "--family qwen2 --heads 4 --kv-heads 2", "--family qwen3 --heads 4 --kv-heads 1"}) {
    SCOPED_TRACE(args);
    TempDir dir;
    make_reference_model(dir, args);
    const double expected = reference_loss(dir, dir / "model");
    const CommandResult r =
        run_config(dir, "eval", "eval", finetune_config(dir, dir / "model", dir / "o", 1));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NEAR(eval_loss(r), expected, 1e-4 * expected);
  }
}

TEST(LlamaCli, ExportAfterTrainingLoadsIntoTheReferenceAndRoundTrips) {
  if (!have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  TempDir dir;
  make_reference_model(dir, "--family qwen2 --heads 4 --kv-heads 2");
  write_text(dir / "model/tokenizer.json", "{\"model\": {}}");
  const CommandResult trained =
      run_config(dir, "train", "ft", finetune_config(dir, dir / "model", dir / "ft", 2));
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  const CommandResult evaluated =
      run_config(dir, "eval", "ft", finetune_config(dir, dir / "model", dir / "ft", 2));
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.err;
  const CommandResult exported =
      run_config(dir, "export", "ft", finetune_config(dir, dir / "model", dir / "ft", 2),
          "--out " + (dir / "a") + " --max-shard-bytes 20000");
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_GT(json_lines(exported.out).back()["shards"].get<int>(), 1);
  EXPECT_EQ(read_text(dir / "a/tokenizer.json"), read_text(dir / "model/tokenizer.json"));
  EXPECT_NEAR(reference_loss(dir, dir / "a"), eval_loss(evaluated), 1e-4 * eval_loss(evaluated));

  // init_from the export, export again: the same bytes, in fp32 and in bf16.
  for (const std::string dtype : {"fp32", "bf16"}) {
    SCOPED_TRACE(dtype);
    const std::string first = dir / ("first_" + dtype), second = dir / ("second_" + dtype);
    ASSERT_EQ(run_config(dir, "export", "ft", finetune_config(dir, dir / "model", dir / "ft", 2),
                  "--out " + first + " --dtype " + dtype + " --max-shard-bytes 20000")
                  .exit_code,
              0);
    const CommandResult again =
        run_config(dir, "export", "again", finetune_config(dir, first, dir / ("none_" + dtype), 2),
            "--out " + second + " --dtype " + dtype + " --max-shard-bytes 20000");
    ASSERT_EQ(again.exit_code, 0) << again.err;
    const std::vector<std::string> files = list_dir(first);
    ASSERT_EQ(files, list_dir(second));
    for (const std::string& f : files) {
      EXPECT_TRUE(read_text(first + "/" + f) == read_text(second + "/" + f)) << f;
    }
  }
  // Text goes through the model's own tokenizer (bytes are not its tokens):
  // this one is not a tokenizer, so the run is refused, naming it.
  json text = finetune_config(dir, dir / "model", dir / "text", 1);
  text["data"]["path"] = corpus(dir);
  const CommandResult refused_text = run_config(dir, "train", "text", text);
  EXPECT_EQ(refused_text.exit_code, 2);
  EXPECT_NE(refused_text.err.find("model.init_from"), std::string::npos) << refused_text.err;
  EXPECT_NE(refused_text.err.find("tokenizer.json"), std::string::npos) << refused_text.err;

  // A directory that is not empty is refused, and left as it was.
  const CommandResult refused =
      run_config(dir, "export", "ft", finetune_config(dir, dir / "model", dir / "ft", 2),
          "--out " + (dir / "a"));
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("not empty"), std::string::npos) << refused.err;
}

TEST(LlamaCli, Gpt2ExportsAndLoadsAsAHuggingFaceDirectory) {
  TempDir dir;
  const CommandResult trained = run_config(dir, "train", "g", base_config(dir, dir / "g", 2));
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  const CommandResult exported =
      run_config(dir, "export", "g", base_config(dir, dir / "g", 2), "--out " + (dir / "hf"));
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  const json hf = json::parse(read_text(dir / "hf/config.json"));
  EXPECT_EQ(hf["model_type"], "gpt2");
  EXPECT_EQ(hf["n_layer"], 3);
  json from_dir = base_config(dir, dir / "none", 2);
  from_dir["model"] = {{"init_from", dir / "hf"}};
  const CommandResult a = run_config(dir, "eval", "g", base_config(dir, dir / "g", 2));
  const CommandResult b = run_config(dir, "eval", "from_dir", from_dir);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(eval_loss(a), eval_loss(b));
}

// Rewrites the JSON header of safetensors file `path` with `edit`, keeping its data.
template <typename Edit>
void edit_header(const std::string& path, Edit edit) {
  const std::string bytes = read_text(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  json header = json::parse(bytes.substr(8, n));
  edit(header);
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  write_text(path, out + text + bytes.substr(8 + n));
}

TEST(LlamaCli, BadCheckpointDirectoriesExitTwoNamingTheFileAndTensor) {
  if (!have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  const std::string shard1 = "model-00001-of-00003.safetensors";
  const std::string shard3 = "model-00003-of-00003.safetensors";
  const std::string embed = "model.embed_tokens.weight";
  struct Case {
    std::string name;
    std::function<void(const TempDir&)> spoil;
    std::vector<std::string> said;  // what the message names
  };
  const std::vector<Case> cases = {
      {"missing shard", [&](const TempDir& d) { fs::remove(d / ("model/" + shard3)); }, {shard3}},
      {"wrong dtype",
       [&](const TempDir& d) {
         edit_header(d / ("model/" + shard1), [&](json& h) { h[embed]["dtype"] = "I16"; });
       },
       {shard1, embed}},
      {"wrong shape",
       [&](const TempDir& d) {
         edit_header(d / ("model/" + shard1), [&](json& h) {
           h[embed]["shape"] = {h[embed]["shape"][1], h[embed]["shape"][0]};
         });
       },
       {shard1, embed}},
      {"truncated",
       [&](const TempDir& d) {
         const std::string path = d / ("model/" + shard3);
         fs::resize_file(path, fs::file_size(path) - 100);
       },
       {shard3}},
      {"missing tensor",
       [&](const TempDir& d) {
         edit_header(d / ("model/" + shard1), [&](json& h) { h.erase(embed); });
       },
       {embed}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir dir;
    make_reference_model(dir, "--family llama");
    c.spoil(dir);
    const CommandResult r =
        run_config(dir, "train", "t", finetune_config(dir, dir / "model", dir / "out", 1));
    EXPECT_EQ(r.exit_code, 2) << r.err;
    for (const std::string& s : c.said) EXPECT_NE(r.err.find(s), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir / "out"));
  }
}

TEST(LlamaCli, UnsupportedOrDisagreeingConfigKeysExitTwoNamingTheKey) {
  if (!have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  struct Case {
    std::string name;
    json hf_changes;   // merged into config.json
    json dsinf_model;  // merged into the dsinf model section
    std::vector<std::string> said;
  };
  const std::vector<Case> cases = {
      {"yarn",
       {{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}}},
       json::object(),
       {"rope_scaling.rope_type", "yarn"}},
      {"sliding window",
       {{"model_type", "mistral"}, {"sliding_window", 4096}},
       json::object(),
       {"sliding_window"}},
      {"qwen sliding window",
       {{"model_type", "qwen2"}, {"use_sliding_window", true}},
       json::object(),
       {"use_sliding_window"}},
      {"hidden_act", {{"hidden_act", "gelu"}}, json::object(), {"hidden_act"}},
      {"disagreement", json::object(), {{"hidden_size", 64}}, {"model.hidden_size", "32"}},
      {"type disagreement", json::object(), {{"type", "qwen3"}}, {"model.type", "llama"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir dir;
    make_reference_model(dir, "--family llama");
    json hf = json::parse(read_text(dir / "model/config.json"));
    hf.update(c.hf_changes);
    write_text(dir / "model/config.json", hf.dump());
    json config = finetune_config(dir, dir / "model", dir / "out", 1);
    config["model"].update(c.dsinf_model);
    const CommandResult r = run_config(dir, "train", "t", config);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    for (const std::string& s : c.said) EXPECT_NE(r.err.find(s), std::string::npos) << r.err;
  }
}

TEST(LlamaCli, WindowOf8192TrainsWithActivationsLinearInTheWindow) {
  TempDir dir;
  std::vector<double> activations;
  for (int T : {1024, 2048, 4096, 8192}) {
    SCOPED_TRACE(T);
    json c = llama_config(dir, dir / ("w" + std::to_string(T)), 1);
    c["train_micro_batch_size_per_gpu"] = 1;
    c["gradient_accumulation_steps"] = 1;
    c["model"]["num_hidden_layers"] = 1;
    c["model"]["max_position_embeddings"] = 8192;
    c["data"]["seq_len"] = T;
    const CommandResult r = run_config(dir, "train", "w" + std::to_string(T), c);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json s = summary(r);
    EXPECT_TRUE(std::isfinite(s["final_loss"].get<double>()));
    activations.push_back(s["peak_bytes"]["activations"].get<double>());
  }
  // Each doubling of T adds twice what the one before added (up to page
  // rounding): bytes = a + b T, nothing in T^2.
  for (size_t i = 2; i < activations.size(); ++i) {
    const double step = activations[i] - activations[i - 1];
    const double before = activations[i - 1] - activations[i - 2];
    EXPECT_NEAR(step / before, 2.0, 0.01) << activations[i];
  }
  EXPECT_LT(activations.back(), 1.0 * (1 << 30)) << "a 8192-token window should fit in 1 GiB";
}

}  // namespace
}  // namespace dsinf::testing
