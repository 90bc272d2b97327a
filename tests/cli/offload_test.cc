// The offload runtime through the CLI: every placement of parameters and
// optimizer state (device, host, NVMe) at ZeRO stages 1-3 trains to the same
// checkpoint bytes as the all-in-memory stage-0 run, with gradient accumulation
// and clipping on; a model whose state is many times the device budget trains
// inside that budget; a budget below one layer's working set is refused with
// the least budget that works; a resumed NVMe run is bit-identical.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <set>
#include <string>
#include <tuple>

#include "tests/cli/train_util.h"
#include "tests/test_util.h"

namespace dsinf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

CommandResult train(const TempDir& dir, const std::string& name, const json& config) {
  const std::string path = dir / (name + ".json");
  write_text(path, config.dump(2));
  return run_dsinf("train " + path + " --json", dir.path());
}

TEST(Offload, EveryPlacementTrainsBitIdenticalToTheInMemoryRun) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  const CommandResult base = train(dir, "stage0", base_config(dir, dir / "stage0", 4));
  ASSERT_EQ(base.exit_code, 0) << base.err;
  const std::string expected = checkpoint(dir / "stage0", 4);
  ASSERT_GT(expected.size(), 4096u);

  struct Case {
    int stage;
    std::string params, optimizer;
  };
  const Case cases[] = {{1, "none", "cpu"},  {2, "none", "cpu"},  {3, "none", "cpu"},
                        {3, "none", "nvme"}, {3, "cpu", "none"},  {3, "cpu", "cpu"},
                        {3, "cpu", "nvme"},  {3, "nvme", "none"}, {3, "nvme", "cpu"},
                        {3, "nvme", "nvme"}};
  for (const Case& c : cases) {
    for (bool checkpointing : {false, true}) {
      const std::string name = "s" + std::to_string(c.stage) + "_p" + c.params + "_o" +
                               c.optimizer + (checkpointing ? "_ckpt" : "");
      SCOPED_TRACE(name);
      json config = base_config(dir, dir / name, 4);
      config["model"]["activation_checkpointing"] = checkpointing;
      config["zero_optimization"] = {{"stage", c.stage},
                                     {"offload_optimizer", offload(c.optimizer, dir / "swap")}};
      if (c.stage == 3)
        config["zero_optimization"]["offload_param"] = offload(c.params, dir / "swap");
      const CommandResult r = train(dir, name, config);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_TRUE(checkpoint(dir / name, 4) == expected) << "checkpoint differs from stage 0";
      const json peak = summary(r)["peak_bytes"];
      const bool nvme = c.params == "nvme" || c.optimizer == "nvme";
      EXPECT_EQ(peak["nvme"].get<int64_t>() > 0, nvme) << peak.dump();
    }
  }
  // Parameters on NVMe with no host cache (offload_param.max_in_cpu 0): every
  // visit reads its chunk from NVMe.
  for (const std::string optimizer : {"nvme", "cpu"}) {
    const std::string name = "uncached_o" + optimizer;
    SCOPED_TRACE(name);
    json config = base_config(dir, dir / name, 4);
    json param = offload("nvme", dir / "swap");
    param["max_in_cpu"] = 0;
    config["zero_optimization"] = {{"stage", 3},
                                   {"offload_param", param},
                                   {"offload_optimizer", offload(optimizer, dir / "swap")}};
    const CommandResult r = train(dir, name, config);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(checkpoint(dir / name, 4) == expected) << "checkpoint differs from stage 0";
  }
  // offload_optimizer.buffer_count sets how many chunks' state the optimizer
  // stages (read ahead during the last micro-batch, written back lazily):
  // the fewest (2), some, and every chunk; with and without the master
  // weights in the parameters' host cache.
  for (const auto& [params, cached, buffers] :
       {std::tuple{"nvme", true, 2}, std::tuple{"nvme", true, 16}, std::tuple{"nvme", false, 9},
        std::tuple{"none", true, 6}}) {
    const std::string name = std::string("buffers_p") + params + (cached ? "" : "_uncached") + "_" +
                             std::to_string(buffers);
    SCOPED_TRACE(name);
    json config = base_config(dir, dir / name, 4);
    json param = offload(params, dir / "swap");
    if (!cached) param["max_in_cpu"] = 0;
    json optimizer = offload("nvme", dir / "swap");
    optimizer["buffer_count"] = buffers;
    config["zero_optimization"] = {
        {"stage", 3}, {"offload_param", param}, {"offload_optimizer", optimizer}};
    const CommandResult r = train(dir, name, config);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(checkpoint(dir / name, 4) == expected) << "checkpoint differs from stage 0";
  }
  // The zero_optimization.stage3_* keys change where and when parameter chunks
  // move, never the numbers. The chunks: embed 9216 elements, 3 blocks of 12704,
  // ln_f 64. A threshold of 10000 keeps embed and ln_f on the device (embed is
  // visited three times a micro-batch), max_live gives the blocks 2 slots, the
  // bucket of 1 element one chunk ahead; 1e9 keeps every chunk on the device.
  struct KeysCase {
    std::string params, optimizer;
    bool cached;  // offload_param.max_in_cpu default, else 0
    int64_t threshold;
  };
  for (const KeysCase& k :
       {KeysCase{"cpu", "cpu", true, 10000}, KeysCase{"nvme", "nvme", false, 10000},
        KeysCase{"nvme", "cpu", true, 10000}, KeysCase{"nvme", "nvme", false, 1000000000}}) {
    const std::string name = "keys_p" + k.params + "_o" + k.optimizer +
                             (k.cached ? "" : "_uncached") + "_t" + std::to_string(k.threshold);
    SCOPED_TRACE(name);
    json config = base_config(dir, dir / name, 4);
    json param = offload(k.params, dir / "swap");
    if (!k.cached) param["max_in_cpu"] = 0;
    config["zero_optimization"] = {{"stage", 3},
                                   {"offload_param", param},
                                   {"offload_optimizer", offload(k.optimizer, dir / "swap")},
                                   {"stage3_prefetch_bucket_size", 1},
                                   {"stage3_max_live_parameters", 2 * 12704},
                                   {"stage3_param_persistence_threshold", k.threshold}};
    const CommandResult r = train(dir, name, config);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(checkpoint(dir / name, 4) == expected) << "checkpoint differs from stage 0";
    const json streaming = summary(r)["streaming"];
    ASSERT_TRUE(streaming.is_object()) << summary(r).dump();
    if (k.threshold == 1000000000) {
      // No shared slot, so nothing to prefetch into: each of the 5 chunks is
      // loaded at its first visit, then once after each of the 4 updates.
      EXPECT_EQ(streaming["prefetches"].get<uint64_t>(), 0u) << streaming.dump();
      EXPECT_EQ(streaming["loads"].get<uint64_t>(), 5u * (1 + 4)) << streaming.dump();
    } else {
      EXPECT_GT(streaming["prefetches"].get<uint64_t>(), 0u) << streaming.dump();
    }
  }
  // Every private swap directory was removed at exit.
  EXPECT_TRUE(list_dir(dir / "swap").empty());
}

// On a GPU a copy completes only when an event after it does. The CPU
// backend's deferred-copy mode runs every copy as late as that allows, so a
// buffer used (or reused) before its copy was waited for gives other numbers,
// or worse, here too: every placement must still train to the same bytes.
TEST(Offload, CopiesCompletingAsLateAsOnAGpuChangeNothing) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  // fp32, and bf16 storage: 16-bit uploads widened on the device, visits
  // rounded and downloaded, new weights narrowed on their way to each home.
  for (const std::string precision : {"fp32", "bf16"}) {
    SCOPED_TRACE(precision);
    auto config_for = [&](const std::string& name) {
      json config = base_config(dir, dir / name, 3);
      if (precision == "bf16") config["bf16"] = {{"enabled", true}};
      return config;
    };
    const std::string base_name = "stage0_" + precision;
    const CommandResult base = train(dir, base_name, config_for(base_name));
    ASSERT_EQ(base.exit_code, 0) << base.err;
    const std::string expected = checkpoint(dir / base_name, 3);
    ASSERT_GT(expected.size(), 4096u);
    struct Case {
      int stage;
      std::string params, optimizer;
    };
    for (const Case& c : {Case{0, "none", "none"}, Case{2, "none", "cpu"}, Case{3, "cpu", "cpu"},
                          Case{3, "nvme", "nvme"}, Case{3, "none", "nvme"},
                          Case{3, "cpu", "none"}}) {
      const std::string name = "deferred_" + precision + "_s" + std::to_string(c.stage) + "_p" +
                               c.params + "_o" + c.optimizer;
      SCOPED_TRACE(name);
      json config = config_for(name);
      config["model"]["activation_checkpointing"] = c.stage == 3;
      if (c.stage > 0) {
        config["zero_optimization"] = {{"stage", c.stage},
                                       {"offload_optimizer", offload(c.optimizer, dir / "swap")}};
      }
      if (c.stage == 3)
        config["zero_optimization"]["offload_param"] = offload(c.params, dir / "swap");
      const std::string path = dir / (name + ".json");
      write_text(path, config.dump(2));
      const CommandResult r = run_command(
          "DSINF_CPU_DEFER_COPIES=1 " + dsinf_binary() + " train " + path + " --json", dir.path());
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_NE(r.err.find("copies deferred"), std::string::npos) << r.err;
      EXPECT_TRUE(checkpoint(dir / name, 3) == expected) << "checkpoint differs from stage 0";
    }
  }
}

// Parameters, gradients and Adam state (16 bytes a parameter) at least 8x the
// device budget; the budget is the least the runtime says it needs.
TEST(Offload, ModelEightTimesTheDeviceBudgetTrainsInsideIt) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  auto config_for = [&](const std::string& out, uint64_t budget) {
    json config = base_config(dir, out, 3);
    config["train_micro_batch_size_per_gpu"] = 1;
    config["model"] = {{"n_layer", 8},      {"n_head", 4},
                       {"n_embd", 64},      {"n_positions", 32},
                       {"vocab_size", 256}, {"activation_checkpointing", true}};
    config["zero_optimization"] = {{"stage", 3},
                                   {"offload_param", offload("nvme", dir / "swap")},
                                   {"offload_optimizer", offload("nvme", dir / "swap")}};
    if (budget > 0) config["memory"] = {{"device_budget_bytes", budget}};
    return config;
  };
  json in_memory = config_for(dir / "mem", 0);
  in_memory.erase("zero_optimization");
  const CommandResult reference = train(dir, "mem", in_memory);
  ASSERT_EQ(reference.exit_code, 0) << reference.err;

  // Far too small: exit 2, nothing written, and the least budget that works.
  const CommandResult refused = train(dir, "tiny", config_for(dir / "tiny", 100000));
  EXPECT_EQ(refused.exit_code, 2);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(refused.err, match,
                                std::regex("least budget that trains this config is ([0-9]+)")))
      << refused.err;
  EXPECT_NE(refused.err.find("memory.device_budget_bytes"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "tiny"));
  const uint64_t minimum = std::stoull(match[1]);

  const CommandResult r = train(dir, "nvme", config_for(dir / "nvme", minimum));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json s = summary(r);
  const uint64_t params = 8 * 12 * 64 * 64 + (256 + 32) * 64;  // weights, biases left out
  EXPECT_GE(16 * params, 8 * minimum) << "the model is not 8x the budget";
  EXPECT_LE(s["peak_bytes"]["device"].get<uint64_t>(), minimum);
  EXPECT_GT(s["peak_bytes"]["nvme"].get<uint64_t>(), 3 * 4 * params);
  EXPECT_EQ(s["final_loss"].get<double>(), summary(reference)["final_loss"].get<double>());
  EXPECT_TRUE(checkpoint(dir / "nvme", 3) == checkpoint(dir / "mem", 3));
}

TEST(Offload, NvmeRunResumesBitIdentical) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  auto config_for = [&](const std::string& out, int steps) {
    json config = base_config(dir, out, steps);
    config["zero_optimization"] = {{"stage", 3},
                                   {"offload_param", offload("nvme", dir / "swap")},
                                   {"offload_optimizer", offload("nvme", dir / "swap")}};
    return config;
  };
  ASSERT_EQ(train(dir, "straight", config_for(dir / "a", 5)).exit_code, 0);
  ASSERT_EQ(train(dir, "first", config_for(dir / "b", 2)).exit_code, 0);
  const CommandResult resumed = train(dir, "second", config_for(dir / "b", 5));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(checkpoint(dir / "a", 5) == checkpoint(dir / "b", 5));
}

// A checkpoint of offloaded state is written while the next steps train: it
// must hold its own step, bit for bit, however far training gets meanwhile.
// DSINF_SAVE_PACE_MS holds each chunk of the snapshot 40 ms, so the next
// steps' optimizer runs certainly reach chunks the save has not read yet.
TEST(Offload, BackgroundSaveHoldsItsStepWhileTrainingGoesOn) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  struct Case {
    std::string params, optimizer;
    bool cached;
  };
  for (const Case& k : {Case{"nvme", "nvme", true}, Case{"nvme", "nvme", false},
                        Case{"cpu", "cpu", true}, Case{"none", "nvme", true}}) {
    const std::string name = "p" + k.params + "_o" + k.optimizer + (k.cached ? "" : "_uncached");
    SCOPED_TRACE(name);
    auto config_for = [&](const std::string& out, int steps) {
      json config = base_config(dir, out, steps);
      json param = offload(k.params, dir / "swap");
      if (!k.cached) param["max_in_cpu"] = 0;
      config["zero_optimization"] = {{"stage", 3},
                                     {"offload_param", param},
                                     {"offload_optimizer", offload(k.optimizer, dir / "swap")}};
      config["train"]["save_interval"] = 2;
      return config;
    };
    // The reference: 2 steps, whose last save is written before exit.
    ASSERT_EQ(train(dir, name + "_ref", config_for(dir / (name + "_ref"), 2)).exit_code, 0);
    const std::string path = dir / (name + ".json");
    write_text(path, config_for(dir / name, 6).dump(2));
    const CommandResult r = run_command(
        "DSINF_SAVE_PACE_MS=40 " + dsinf_binary() + " train " + path + " --json", dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(checkpoint(dir / name, 2) == checkpoint(dir / (name + "_ref"), 2))
        << "the background save of step 2 holds other bytes than step 2";
    EXPECT_GT(summary(r)["checkpoint_wait_s"].get<double>(), 0.0)
        << "no update waited for the snapshot: the test did not race";
  }
}

TEST(Offload, HostBudgetTooSmallIsRefusedNamingTheKey) {
  TempDir dir;
  json config = base_config(dir, dir / "out", 2);
  config["zero_optimization"] = {{"stage", 2}, {"offload_optimizer", {{"device", "cpu"}}}};
  config["memory"] = {{"host_budget_bytes", 4096}};
  const CommandResult r = train(dir, "c", config);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("memory.host_budget_bytes"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("least budget"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// `dsinf bench step`: the JSON contract, every component measured, and a
// trace whose lanes show the resources of one step.
TEST(Offload, BenchStepReportsStepBoundComponentsAndTrace) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  json config = base_config(dir, dir / "out", 1);
  config["zero_optimization"] = {{"stage", 3},
                                 {"offload_param", offload("nvme", dir / "swap")},
                                 {"offload_optimizer", offload("nvme", dir / "swap")}};
  const std::string path = dir / "c.json";
  write_text(path, config.dump(2));
  const std::string trace = dir / "trace.json";
  const CommandResult r =
      run_dsinf("bench step " + path + " --steps 1 --json --trace " + trace, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json result = json_lines(r.out).back();
  for (const char* key : {"step_s", "bound_s", "ratio"}) {
    EXPECT_GT(result.value(key, 0.0), 0.0) << key << " in " << result.dump();
  }
  for (const char* key :
       {"compute_s", "copy_in_s", "copy_out_s", "adam_s", "checksums_s", "nvme_read_s",
        "nvme_write_s"}) {
    EXPECT_GT(result["components"].value(key, 0.0), 0.0) << key;
  }
  EXPECT_GT(result["bytes_per_step"]["nvme_read"].get<uint64_t>(), 0u);
  EXPECT_GT(result["bytes_per_step"]["nvme_write"].get<uint64_t>(), 0u);
  EXPECT_EQ(result["trace"], trace);
  // Throughput: tokens/s from the step, model FLOPs a token (6 x 47392
  // parameters + 12 x 3 layers x 32 channels x 32 positions), TFLOP/s; no MFU
  // without a GPU's peak.
  const double step_s = result["step_s"];
  const double tokens = 2.0 * 2 * 32;  // batch 2 x 2 micro-batches x 32 positions
  EXPECT_DOUBLE_EQ(result["tokens_per_s"].get<double>(), tokens / step_s);
  EXPECT_EQ(result["flops_per_token"].get<double>(), 6.0 * 47392 + 12.0 * 3 * 32 * 32);
  EXPECT_DOUBLE_EQ(result["tflops"].get<double>(),
                   result["flops_per_token"].get<double>() * tokens / step_s / 1e12);
  if (result["device"].get<std::string>().rfind("cpu", 0) == 0) {
    EXPECT_TRUE(result["mfu"].is_null());
    // The CPU backend's cores run compute, copies, Adam and the checksums one
    // after another; the disk reads and writes beside them.
    const json& c = result["components"];
    const double cores = c["compute_s"].get<double>() + c["copy_in_s"].get<double>() +
                         c["copy_out_s"].get<double>() + c["adam_s"].get<double>() +
                         c["checksums_s"].get<double>();
    EXPECT_DOUBLE_EQ(result["bound_s"].get<double>(),
                     std::max({cores, c["nvme_read_s"].get<double>(),
                               c["nvme_write_s"].get<double>()}));
  }
  const json events = json::parse(read_text(trace))["traceEvents"];
  std::set<int> lanes;
  for (const json& e : events) {
    if (e["ph"] == "X") lanes.insert(e["tid"].get<int>());
  }
  // compute, copy in, copy out, adam, nvme read, nvme write all appear.
  for (int lane = 0; lane < 6; ++lane) EXPECT_TRUE(lanes.count(lane)) << "lane " << lane;
  EXPECT_FALSE(fs::exists(dir / "out/latest"));  // a benchmark writes no checkpoint
  EXPECT_TRUE(list_dir(dir / "swap").empty());
  EXPECT_EQ(run_dsinf("bench step " + path + " --steps 0", dir.path()).exit_code, 2);
  EXPECT_EQ(run_dsinf("bench step", dir.path()).exit_code, 2);
}

}  // namespace
}  // namespace dsinf::testing
