// LoRA through the CLI: a run with the frozen base on the host or on NVMe
// writes the in-memory run's checkpoint bytes and never writes the base back;
// exports (--adapter in PEFT's layout, --merged as a Hugging Face directory)
// load back with the loss of base + adapter; model.adapter_from round-trips
// byte for byte; resuming on another base and bad lora sections exit 2.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tests/cli/train_util.h"
#include "tests/test_util.h"
#include "trainer/data/data.h"
#include "trainer/models/safetensors.h"

namespace dsinf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A 3-layer Llama (GQA, untied head) with adapters on every projection,
// dropout and a trained copy of lm_head.
json lora_config(const TempDir& dir, const std::string& out, int steps) {
  json c = llama_config(dir, out, steps);
  c["lora"] = {{"r", 4},
               {"lora_alpha", 8},
               {"lora_dropout", 0.1},
               {"target_modules", "all-linear"},
               {"modules_to_save", {"lm_head"}}};
  return c;
}

TEST(LoraCli, BaseOnHostOrNvmeTrainsBitIdenticalToTheBaseOnTheDevice) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  for (const std::string precision : {"fp32", "bf16"}) {
    SCOPED_TRACE(precision);
    auto config_for = [&](const std::string& name) {
      json c = lora_config(dir, dir / name, 3);
      if (precision != "fp32") c[precision] = {{"enabled", true}};
      return c;
    };
    const CommandResult base = run_config(dir, "train", precision + "_mem", config_for(precision + "_mem"));
    ASSERT_EQ(base.exit_code, 0) << base.err;
    const std::string expected = checkpoint(dir / (precision + "_mem"), 3);
    ASSERT_GT(expected.size(), 4096u);
    struct Case {
      const char* name;
      const char* params;
      const char* optimizer;
    };
    for (const Case& c : {Case{"host", "cpu", "cpu"}, Case{"nvme_device", "nvme", "none"},
                          Case{"nvme_nvme", "nvme", "nvme"}, Case{"nvme_host", "nvme", "cpu"}}) {
      SCOPED_TRACE(c.name);
      const std::string name = precision + "_" + c.name;
      json config = config_for(name);
      config["zero_optimization"] = {{"stage", 3},
                                     {"offload_param", offload(c.params, dir / "swap")},
                                     {"offload_optimizer", offload(c.optimizer, dir / "swap")}};
      const CommandResult r = run_config(dir, "train", name, config);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_TRUE(checkpoint(dir / name, 3) == expected) << "checkpoint differs";
    }
  }
}

// Adapters on q_proj and v_proj do not grow with intermediate_size; the base
// does. With the base on NVMe, a run's swap writes are the adapters' only.
TEST(LoraCli, TheFrozenBaseIsReadFromNvmeAndNeverWritten) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  std::map<int, json> io;
  for (int inter : {48, 192}) {
    const std::string name = "inter" + std::to_string(inter);
    json c = lora_config(dir, dir / name, 2);
    c["model"]["intermediate_size"] = inter;
    c["lora"] = {{"r", 2}, {"target_modules", {"q_proj", "v_proj"}}};
    c["zero_optimization"] = {{"stage", 3},
                              {"offload_param", offload("nvme", dir / "swap")},
                              {"offload_optimizer", offload("none", dir / "swap")}};
    c["zero_optimization"]["offload_param"]["max_in_cpu"] = 0;
    const CommandResult r = run_config(dir, "train", name, c);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    io[inter] = summary(r)["swap_io"];
  }
  EXPECT_GT(io[192]["read_bytes"].get<uint64_t>(), io[48]["read_bytes"].get<uint64_t>());
  EXPECT_GT(io[48]["written_bytes"].get<uint64_t>(), 0u);  // the adapters' new weights
  EXPECT_EQ(io[192]["written_bytes"], io[48]["written_bytes"]);
}

// The names and shapes PEFT gives a LoRA of this model (PEFT's documented
// layout: "base_model.model." + the module path + ".lora_A.weight" (r, in) /
// ".lora_B.weight" (out, r); a modules_to_save module by its own weight name).
std::map<std::string, std::vector<int64_t>> peft_layout(int layers, int r) {
  const std::map<std::string, std::pair<int64_t, int64_t>> io = {
      {"self_attn.q_proj", {32, 32}}, {"self_attn.k_proj", {32, 16}},
      {"self_attn.v_proj", {32, 16}}, {"self_attn.o_proj", {32, 32}},
      {"mlp.gate_proj", {32, 48}},    {"mlp.up_proj", {32, 48}},
      {"mlp.down_proj", {48, 32}}};
  std::map<std::string, std::vector<int64_t>> out;
  for (int l = 0; l < layers; ++l) {
    for (const auto& [module, shape] : io) {
      const std::string p = "base_model.model.model.layers." + std::to_string(l) + "." + module;
      out[p + ".lora_A.weight"] = {r, shape.first};
      out[p + ".lora_B.weight"] = {shape.second, r};
    }
  }
  out["base_model.model.lm_head.weight"] = {256, 32};
  return out;
}

TEST(LoraCli, AdapterAndMergedExportsLoadBackWithTheSameLoss) {
  TempDir dir;
  const json config = lora_config(dir, dir / "run", 2);
  ASSERT_EQ(run_config(dir, "train", "lora", config).exit_code, 0);
  const CommandResult eval = run_config(dir, "eval", "lora", config);
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  const double trained = eval_loss(eval);

  ASSERT_EQ(run_config(dir, "export", "lora", config, "--out " + (dir / "adapter") + " --adapter")
                .exit_code,
            0);
  auto file = trainer::SafetensorsFile::open(dir / "adapter/adapter_model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  std::map<std::string, std::vector<int64_t>> written;
  for (const std::string& name : file->names()) written[name] = file->find(name)->shape;
  EXPECT_EQ(written, peft_layout(3, 4));
  const json adapter_config = json::parse(read_text(dir / "adapter/adapter_config.json"));
  EXPECT_EQ(adapter_config["peft_type"], "LORA");
  EXPECT_EQ(adapter_config["r"], 4);
  EXPECT_EQ(adapter_config["lora_alpha"], 8);
  EXPECT_EQ(adapter_config["target_modules"].size(), 7u);
  EXPECT_EQ(adapter_config["modules_to_save"], json::array({"lm_head"}));

  // The merged model alone, with no lora section, evaluates to base + adapter.
  ASSERT_EQ(run_config(dir, "export", "lora", config, "--out " + (dir / "merged") + " --merged").exit_code,
            0);
  json merged = lora_config(dir, dir / "merged_run", 2);
  merged.erase("lora");
  merged["model"] = {{"init_from", dir / "merged"}};
  const CommandResult merged_eval = run_config(dir, "eval", "merged", merged);
  ASSERT_EQ(merged_eval.exit_code, 0) << merged_eval.err;
  EXPECT_NEAR(eval_loss(merged_eval), trained, 1e-5 * trained);

  // adapter_from (settings from adapter_config.json): the same loss, the same bytes out.
  json again = lora_config(dir, dir / "again_run", 2);
  again.erase("lora");
  again["model"]["adapter_from"] = dir / "adapter";
  const CommandResult again_eval = run_config(dir, "eval", "again", again);
  ASSERT_EQ(again_eval.exit_code, 0) << again_eval.err;
  EXPECT_EQ(eval_loss(again_eval), trained);
  ASSERT_EQ(run_config(dir, "export", "again", again, "--out " + (dir / "adapter2") + " --adapter")
                .exit_code,
            0);
  EXPECT_TRUE(read_text(dir / "adapter/adapter_model.safetensors") ==
              read_text(dir / "adapter2/adapter_model.safetensors"));
}

// The reference's own model (tests/trainer/models/torch_llama.py) as the
// base, fine-tuned with LoRA; the merged export loads into the reference with
// the loss dsinf's eval gives base + adapter.
TEST(LoraCli, MergedExportLoadsIntoTheReferenceWithTheAdaptedLoss) {
  if (!have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  TempDir dir;
  const std::string script =
      std::string("/usr/bin/python3 ") + DSINF_SOURCE_DIR + "/tests/trainer/models/torch_llama.py";
  const CommandResult gen = run_command(
      script + " golden --out " + dir.path() + " --family llama --heads 4 --kv-heads 2",
      dir.path());
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  std::vector<int32_t> tokens(2000);
  uint64_t x = 99;
  for (int32_t& t : tokens) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t = static_cast<int32_t>((x >> 33) % 300);
  }
  ASSERT_TRUE(trainer::write_token_shard(dir / "tokens.bin", tokens).ok());
  json config = base_config(dir, dir / "ft", 3);
  config["model"] = {{"init_from", dir / "model"}};
  config["data"] = {{"path", dir / "tokens.bin"}, {"seq_len", 16}};
  config["lora"] = {{"r", 4}, {"lora_alpha", 16}, {"target_modules", "all-linear"}};
  ASSERT_EQ(run_config(dir, "train", "ft", config).exit_code, 0);
  const CommandResult evaluated = run_config(dir, "eval", "ft", config);
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.err;
  ASSERT_EQ(run_config(dir, "export", "ft", config, "--out " + (dir / "merged")).exit_code, 0);
  const CommandResult reference = run_command(
      script + " eval --dir " + (dir / "merged") + " --data " + (dir / "tokens.bin") + " --seq 16",
      dir.path());
  ASSERT_EQ(reference.exit_code, 0) << reference.err;
  const double expected = json::parse(reference.out)["loss"].get<double>();
  EXPECT_NEAR(eval_loss(evaluated), expected, 1e-4 * expected);
  // ... and the adapters changed the model: the base alone has another loss.
  const CommandResult base = run_command(
      script + " eval --dir " + (dir / "model") + " --data " + (dir / "tokens.bin") + " --seq 16",
      dir.path());
  ASSERT_EQ(base.exit_code, 0) << base.err;
  EXPECT_GT(std::abs(json::parse(base.out)["loss"].get<double>() - expected), 1e-4);
}

TEST(LoraCli, CheckpointsHoldTheAdaptersAndRefuseAnotherBase) {
  TempDir dir;
  // Two bases: the seeded initialisation of two seeds, exported.
  for (int seed : {1, 2}) {
    json base = lora_config(dir, dir / ("none" + std::to_string(seed)), 1);
    base.erase("lora");
    base["model"]["seed"] = seed;
    const std::string out = dir / ("base" + std::to_string(seed));
    ASSERT_EQ(run_config(dir, "export", "base", base, "--out " + out).exit_code, 0);
  }
  json config = lora_config(dir, dir / "run", 2);
  config["model"] = {{"init_from", dir / "base1"}};
  config["lora"] = {{"r", 2}, {"target_modules", {"q_proj"}}};
  ASSERT_EQ(run_config(dir, "train", "lora", config).exit_code, 0);
  // The adapters with their m and v (a page a chunk and class): less than the base alone.
  EXPECT_LT(checkpoint(dir / "run", 2).size(), fs::file_size(dir / "base1/model.safetensors"));
  config["train"]["steps"] = 3;
  config["model"]["init_from"] = dir / "base2";
  const CommandResult other = run_config(dir, "train", "lora", config);
  EXPECT_EQ(other.exit_code, 2) << other.err;
  EXPECT_NE(other.err.find("fingerprint"), std::string::npos) << other.err;
  EXPECT_FALSE(fs::exists(fs::path(dir / "run") / checkpoint_name(3)));
  config["model"]["init_from"] = dir / "base1";
  const CommandResult same = run_config(dir, "train", "lora", config);
  EXPECT_EQ(same.exit_code, 0) << same.err;
  EXPECT_TRUE(fs::exists(fs::path(dir / "run") / checkpoint_name(3)));
}

TEST(LoraCli, BadLoraSectionsExitTwoNamingTheKey) {
  TempDir dir;
  struct Case {
    const char* what;
    std::function<void(json&)> edit;
    const char* key;
  };
  const std::vector<Case> cases = {
      {"unknown module", [](json& c) { c["lora"]["target_modules"] = {"qkv_proj"}; },
       "lora.target_modules"},
      {"bias", [](json& c) { c["lora"]["bias"] = "all"; }, "lora.bias"},
      {"rank", [](json& c) { c["lora"]["r"] = 0; }, "lora.r"},
      {"dropout", [](json& c) { c["lora"]["lora_dropout"] = 1.0; }, "lora.lora_dropout"},
      {"unknown key", [](json& c) { c["lora"]["alpha"] = 16; }, "lora.alpha"},
      {"tied copy",
       [](json& c) { c["model"]["tie_word_embeddings"] = true; },
       "lora.modules_to_save"},
      {"gpt2",
       [](json& c) {
         c["model"] = {{"n_layer", 2}, {"n_head", 2}, {"n_embd", 32}, {"vocab_size", 256}};
       },
       "lora"},
      {"missing adapter",
       [&](json& c) { c["model"]["adapter_from"] = dir / "no-such-adapter"; },
       "model.adapter_from"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    json config = lora_config(dir, dir / "bad", 1);
    c.edit(config);
    const CommandResult r = run_config(dir, "train", "bad", config);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(c.key), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir / "bad"));
  }
  const CommandResult no_lora = run_config(dir, "export", "plain", base_config(dir, dir / "p", 1),
                                    "--out " + (dir / "x") + " --adapter");
  EXPECT_EQ(no_lora.exit_code, 2);
  EXPECT_NE(no_lora.err.find("no lora section"), std::string::npos) << no_lora.err;
}

}  // namespace
}  // namespace dsinf::testing
