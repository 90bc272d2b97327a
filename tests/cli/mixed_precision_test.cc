// Mixed precision through the CLI on the CPU backend: fp16 runs whose
// gradients really overflow (the CPU
// backend rounds matmul operands to fp16, as tensor cores do), skipping
// exactly those steps, resuming and offloading bit-identically; bf16 acting on
// the numbers; and the "device" key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/half.h"
#include "tests/cli/train_util.h"
#include "tests/test_util.h"
#include "trainer/config/config.h"

namespace dsinf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using trainer::Config;

// ---- through the CLI ----

CommandResult train(const TempDir& dir, const std::string& name, const json& config,
                    const std::string& env = "") {
  const std::string path = dir / (name + ".json");
  write_text(path, config.dump(2));
  // env: "NAME=value" for this command only; ctest's DSINF_DEVICE=cpu is removed
  // so the config's key is what these runs see.
  return run_command(
      "env -u DSINF_DEVICE " + env + " " + dsinf_binary() + " train " + path + " --json",
      dir.path());
}

std::vector<json> events(const CommandResult& r, const std::string& kind) {
  std::vector<json> out;
  for (const json& line : json_lines(r.out)) {
    if (line.value("event", "") == kind) out.push_back(line);
  }
  return out;
}

// A scale of 2^20 overflows this model's fp16 gradients (each visit is
// rounded to fp16 as it leaves the device, as DeepSpeed's fp16 gradients are);
// the scaler halves it (after a hysteresis of 2) until they fit.
json fp16_run(const TempDir& dir, const std::string& out, int steps) {
  json c = base_config(dir, out, steps);
  c["fp16"] = {
      {"enabled", true}, {"initial_scale_power", 20}, {"loss_scale_window", 3}, {"hysteresis", 2}};
  return c;
}

TEST(MixedPrecision, Fp16OverflowsSkipTheirStepsAsDeepSpeedDoes) {
  TempDir dir;
  json config = fp16_run(dir, dir / "fp16", 12);
  config["csv_monitor"] = {{"enabled", true}, {"output_path", dir / "monitor"}, {"job_name", "j"}};
  const CommandResult r = train(dir, "fp16", config);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<json> overflows = events(r, "overflow");
  const std::vector<json> steps = events(r, "step");
  ASSERT_EQ(steps.size(), 12u);
  ASSERT_GE(overflows.size(), 3u) << r.out;
  // The first two overflows come at steps 1 and 2: the first spends the
  // hysteresis and keeps 2^30, the second halves it.
  EXPECT_EQ(overflows[0]["step"], 1);
  EXPECT_EQ(overflows[0]["attempted_loss_scale"], std::ldexp(1.0, 20));
  EXPECT_EQ(overflows[0]["loss_scale"], std::ldexp(1.0, 20));
  EXPECT_EQ(overflows[1]["step"], 2);
  EXPECT_EQ(overflows[1]["loss_scale"], std::ldexp(1.0, 19));
  EXPECT_NE(r.err.find("step 1: OVERFLOW! Skipping step. Attempted loss scale: 1048576, but "
                       "hysteresis is 2. Reducing hysteresis to 1"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("step 2: OVERFLOW! Skipping step. Attempted loss scale: 1048576, "
                       "reducing to 524288"),
            std::string::npos);
  const int64_t skipped = static_cast<int64_t>(overflows.size());
  EXPECT_EQ(summary(r)["skipped_steps"], skipped);
  EXPECT_LT(skipped, 12) << "no step was applied";
  // The schedule stands still over skipped steps: the first applied step has
  // the learning rate of an fp32 run's first step.
  json fp32 = base_config(dir, dir / "fp32", 1);
  const CommandResult f = train(dir, "fp32", fp32);
  ASSERT_EQ(f.exit_code, 0) << f.err;
  const double first_lr = events(f, "step").at(0)["lr"];
  const int first_applied = overflows.back()["step"].get<int>() + 1;
  if (static_cast<size_t>(skipped) == static_cast<size_t>(first_applied - 1)) {
    EXPECT_EQ(steps.at(first_applied - 1)["lr"], first_lr);
  }
  // Every skipped step's line reports the scale after it; the monitor's series
  // is the scale each step ran with.
  EXPECT_EQ(steps[1]["loss_scale"], std::ldexp(1.0, 19));
  EXPECT_EQ(steps[11]["skipped_steps"], skipped);
  // DeepSpeed's series: the scale each step ran with, over samples seen (4 a step).
  const std::string csv = read_text(dir / "monitor/j/Train_Samples_loss_scale.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "step,loss_scale");
  EXPECT_NE(csv.find("\n4,1048576.0\n8,1048576.0\n12,524288.0\n"), std::string::npos)
      << csv;
}

TEST(MixedPrecision, Fp16RunResumesBitIdenticalAcrossItsOverflows) {
  TempDir dir;
  ASSERT_EQ(train(dir, "straight", fp16_run(dir, dir / "a", 8)).exit_code, 0);
  // Stopped at step 2, between overflows: the scale, hysteresis and skipped
  // count come back from the checkpoint.
  ASSERT_EQ(train(dir, "first", fp16_run(dir, dir / "b", 2)).exit_code, 0);
  const CommandResult resumed = train(dir, "second", fp16_run(dir, dir / "b", 8));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const std::string a = checkpoint(dir / "a", 8);
  ASSERT_GT(a.size(), 4096u);
  EXPECT_TRUE(a == checkpoint(dir / "b", 8));
}

TEST(MixedPrecision, Fp16OffloadedRunsMatchTheInMemoryRunBitForBit) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  ASSERT_EQ(train(dir, "resident", fp16_run(dir, dir / "resident", 6)).exit_code, 0);
  const std::string expected = checkpoint(dir / "resident", 6);
  ASSERT_GT(expected.size(), 4096u);
  // NVMe optimizer state is read ahead during the last micro-batch: a skipped
  // step drops what was read.
  for (const auto& [params, optimizer] :
       {std::pair{"none", "cpu"}, std::pair{"nvme", "nvme"}, std::pair{"cpu", "nvme"}}) {
    const std::string name = std::string("p") + params + "_o" + optimizer;
    SCOPED_TRACE(name);
    json c = fp16_run(dir, dir / name, 6);
    c["zero_optimization"] = {{"stage", 3},
                              {"offload_param", offload(params, dir / "swap")},
                              {"offload_optimizer", offload(optimizer, dir / "swap")}};
    const CommandResult r = train(dir, name, c);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_GT(summary(r)["skipped_steps"].get<int>(), 0);
    EXPECT_TRUE(checkpoint(dir / name, 6) == expected)
        << "checkpoint differs from the resident run";
  }
}

TEST(MixedPrecision, OverflowAtTheMinimumScaleEndsTheRunKeepingTheCheckpoint) {
  TempDir dir;
  json c = fp16_run(dir, dir / "out", 6);
  c["fp16"]["min_loss_scale"] = std::ldexp(1.0, 19);
  c["fp16"]["hysteresis"] = 1;
  const CommandResult r = train(dir, "min", c);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("fp16.min_loss_scale"), std::string::npos) << r.err;
  EXPECT_TRUE(checkpoint(dir / "out", 6).empty());
}

TEST(MixedPrecision, Bf16RoundsTheProductsAndStillTrains) {
  TempDir dir;
  const CommandResult f = train(dir, "fp32", base_config(dir, dir / "fp32", 4));
  json c = base_config(dir, dir / "bf16", 4);
  c["bf16"] = {{"enabled", true}};
  const CommandResult b = train(dir, "bf16", c);
  ASSERT_EQ(f.exit_code, 0) << f.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(b.err.find("not acted on"), std::string::npos) << b.err;
  const double lf = summary(f)["final_loss"], lb = summary(b)["final_loss"];
  EXPECT_NE(lf, lb);
  EXPECT_NEAR(lb, lf, 0.02 * lf);
  EXPECT_EQ(summary(b)["skipped_steps"], 0);
  EXPECT_NE(b.err.find("matmul operands bf16"), std::string::npos) << b.err;
}

TEST(Device, TheKeyAndTheEnvironmentChooseTheBackend) {
  TempDir dir;
  json c = base_config(dir, dir / "cpu", 1);
  c["device"] = "cpu";
  const CommandResult cpu = train(dir, "cpu", c);
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  EXPECT_NE(cpu.err.find("device cpu (device \"cpu\" from the config"), std::string::npos)
      << cpu.err;

  c["device"] = "gpu";
  const CommandResult bad = train(dir, "bad", c);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("device"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("\"cuda:N\""), std::string::npos) << bad.err;

  c["device"] = "auto";
  c["train"]["output_dir"] = dir / "env";
  const CommandResult env = train(dir, "env", c, "DSINF_DEVICE=cpu");
  ASSERT_EQ(env.exit_code, 0) << env.err;
  EXPECT_NE(env.err.find("device cpu (device \"cpu\" from DSINF_DEVICE"), std::string::npos)
      << env.err;
  const CommandResult env_bad = train(dir, "env", c, "DSINF_DEVICE=tpu");
  EXPECT_EQ(env_bad.exit_code, 2);
  EXPECT_NE(env_bad.err.find("DSINF_DEVICE"), std::string::npos) << env_bad.err;

  // Asking for CUDA where there is none is refused, naming the key, before
  // anything is written.
  if (!kernels::cuda_device_info(0).ok()) {
    c["device"] = "cuda";
    c["train"]["output_dir"] = dir / "cuda";
    const CommandResult cuda = train(dir, "cuda", c);
    EXPECT_EQ(cuda.exit_code, 2);
    EXPECT_NE(cuda.err.find(": device: \"cuda\" asks for a CUDA device"), std::string::npos)
        << cuda.err;
    EXPECT_FALSE(fs::exists(dir / "cuda"));
  }
}

}  // namespace
}  // namespace dsinf::testing
