// Training on the CUDA backend through the CLI, against the CPU reference:
// 20 steps of a small GPT-2 give the CPU's loss curve within each precision's
// tolerance, and the offload runtime on the GPU under a device budget gives
// the GPU's in-memory losses. Every test skips when there is no CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/backend.h"
#include "tests/cli/train_util.h"
#include "tests/test_util.h"

namespace dsinf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class GpuTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<kernels::CudaDeviceInfo> info = kernels::cuda_device_info(0);
    if (!info.ok()) GTEST_SKIP() << "no CUDA device: " << info.status().message();
  }
};

CommandResult train(const TempDir& dir, const std::string& name, const json& config) {
  const std::string path = dir / (name + ".json");
  write_text(path, config.dump(2));
  return run_command("env -u DSINF_DEVICE " + dsinf_binary() + " train " + path + " --json",
                     dir.path());
}

std::vector<double> losses(const CommandResult& r) {
  std::vector<double> out;
  for (const json& line : json_lines(r.out)) {
    if (line.value("event", "") == "step") out.push_back(line["loss"].get<double>());
  }
  return out;
}

// A 4-layer GPT-2 with accumulation and clipping, every step printed.
json small(const TempDir& dir, const std::string& out, const std::string& device,
           const std::string& precision, int steps) {
  json c = base_config(dir, out, steps);
  c["model"] = {
      {"n_layer", 4}, {"n_head", 4}, {"n_embd", 128}, {"n_positions", 64}, {"vocab_size", 256}};
  c["train_micro_batch_size_per_gpu"] = 4;
  c["device"] = device;
  if (precision == "bf16") c["bf16"] = {{"enabled", true}};
  // A scale far from overflow on either backend, so both skip the same (no) steps.
  if (precision == "fp16") c["fp16"] = {{"enabled", true}, {"initial_scale_power", 10}};
  return c;
}

void expect_curves_close(const std::vector<double>& got, const std::vector<double>& want,
                         double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_LE(std::abs(got[i] - want[i]), tol * std::abs(want[i]))
        << "step " << i + 1 << ": " << got[i] << " vs " << want[i];
  }
}

TEST_F(GpuTrain, TwentyStepsFollowTheCpuLossCurve) {
  TempDir dir;
  // fp32 products: only summation order differs. bf16/fp16 round the
  // products' operands on both backends; the GPU also rounds attention's.
  for (const auto& [precision, tol] :
       {std::pair{"fp32", 1e-3}, std::pair{"bf16", 2e-2}, std::pair{"fp16", 2e-2}}) {
    SCOPED_TRACE(precision);
    const std::string p = precision;
    const CommandResult cpu = train(dir, "cpu_" + p, small(dir, dir / ("cpu_" + p), "cpu", p, 20));
    const CommandResult gpu = train(dir, "gpu_" + p, small(dir, dir / ("gpu_" + p), "cuda", p, 20));
    ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
    ASSERT_EQ(gpu.exit_code, 0) << gpu.err;
    EXPECT_NE(gpu.err.find("device cuda:0"), std::string::npos) << gpu.err;
    const std::vector<double> want = losses(cpu), got = losses(gpu);
    expect_curves_close(got, want, tol);
    // It learned: the last loss is well below the first.
    ASSERT_EQ(got.size(), 20u);
    EXPECT_LT(got.back(), got.front() - 0.3);
  }
}

TEST_F(GpuTrain, OffloadUnderADeviceBudgetMatchesTheInMemoryRun) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  const CommandResult resident =
      train(dir, "resident", small(dir, dir / "resident", "cuda", "bf16", 8));
  ASSERT_EQ(resident.exit_code, 0) << resident.err;
  const std::vector<double> want = losses(resident);
  for (const auto& [params, optimizer] :
       {std::pair{"cpu", "cpu"}, std::pair{"nvme", "nvme"}, std::pair{"none", "cpu"}}) {
    const std::string name = std::string("p") + params + "_o" + optimizer;
    SCOPED_TRACE(name);
    json c = small(dir, dir / name, "cuda", "bf16", 8);
    c["zero_optimization"] = {{"stage", 3},
                              {"offload_param", offload(params, dir / "swap")},
                              {"offload_optimizer", offload(optimizer, dir / "swap")}};
    // Two layers' working set and the activations, not the whole model.
    c["memory"] = {{"device_budget_bytes", 48 << 20}};
    const CommandResult r = train(dir, name, c);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_curves_close(losses(r), want, 1e-2);
  }
}

TEST_F(GpuTrain, Fp16OverflowsAreSkippedOnTheGpu) {
  TempDir dir;
  json c = small(dir, dir / "fp16", "cuda", "fp16", 8);
  c["fp16"]["initial_scale_power"] = 40;
  c["fp16"]["hysteresis"] = 1;
  const CommandResult r = train(dir, "fp16", c);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(summary(r)["skipped_steps"].get<int>(), 0) << r.out;
  EXPECT_NE(r.err.find("OVERFLOW! Skipping step"), std::string::npos);
}

// The decoder family on the GPU: a Llama with grouped-query attention, tied
// embeddings and a 256-token window (the tiled attention's several tiles), a
// Qwen3 (q/k norms, biases off) with parameters on NVMe, and the Llama in
// bf16 with parameters and optimizer on NVMe.
TEST_F(GpuTrain, LlamaFollowsTheCpuLossCurve) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  auto llama = [&](const std::string& out, const std::string& device, const std::string& type,
                   const std::string& precision) {
    json c = small(dir, out, device, precision, 10);
    c["model"] = {{"type", type},
                  {"hidden_size", 128},
                  {"num_hidden_layers", 3},
                  {"num_attention_heads", 8},
                  {"num_key_value_heads", 2},
                  {"intermediate_size", 256},
                  {"vocab_size", 256},
                  {"max_position_embeddings", 256},
                  {"tie_word_embeddings", type == "llama"}};
    c["train_micro_batch_size_per_gpu"] = 2;
    c["data"]["seq_len"] = 256;
    return c;
  };
  // The bf16 run stores the working weights in bf16 on NVMe and the host,
  // widened on the GPU after each upload; its products round to bf16 too.
  struct Case {
    std::string type, precision, params, optimizer;
    double tolerance;
  };
  for (const Case& k : {Case{"llama", "fp32", "", "", 1e-3}, Case{"qwen3", "fp32", "nvme", "cpu", 1e-3},
                        Case{"llama", "bf16", "nvme", "nvme", 2e-2}}) {
    const std::string name = k.type + "_" + k.precision;
    SCOPED_TRACE(name);
    const CommandResult cpu =
        train(dir, "cpu_" + name, llama(dir / ("cpu_" + name), "cpu", k.type, k.precision));
    ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
    json on_gpu = llama(dir / ("gpu_" + name), "cuda", k.type, k.precision);
    if (!k.params.empty()) {
      on_gpu["zero_optimization"] = {{"stage", 3},
                                     {"offload_param", offload(k.params, dir / "swap")},
                                     {"offload_optimizer", offload(k.optimizer, dir / "swap")}};
    }
    const CommandResult gpu = train(dir, "gpu_" + name, on_gpu);
    ASSERT_EQ(gpu.exit_code, 0) << gpu.err;
    expect_curves_close(losses(gpu), losses(cpu), k.tolerance);
  }
}

// LoRA on the GPU: adapters with dropout over a frozen base (no weight
// gradient for it, the dropout masks the CPU's), on the device and with the
// bf16 base on NVMe, follow the CPU's loss curve.
TEST_F(GpuTrain, LoraFollowsTheCpuLossCurve) {
  TempDir dir;
  fs::create_directories(dir / "swap");
  auto lora = [&](const std::string& out, const std::string& device, const std::string& precision) {
    json c = small(dir, out, device, precision, 10);
    c["model"] = {{"type", "llama"},          {"hidden_size", 128},
                  {"num_hidden_layers", 3},   {"num_attention_heads", 8},
                  {"num_key_value_heads", 2}, {"intermediate_size", 256},
                  {"vocab_size", 256},        {"max_position_embeddings", 128}};
    c["data"]["seq_len"] = 128;
    c["optimizer"]["params"]["lr"] = 1e-2;
    c["lora"] = {{"r", 8},
                 {"lora_alpha", 16},
                 {"lora_dropout", 0.1},
                 {"target_modules", "all-linear"},
                 {"modules_to_save", {"lm_head"}}};
    return c;
  };
  for (const auto& [precision, params, tol] :
       {std::tuple{"fp32", "", 1e-3}, std::tuple{"bf16", "nvme", 2e-2}}) {
    const std::string name = std::string("lora_") + precision;
    SCOPED_TRACE(name);
    const CommandResult cpu = train(dir, "cpu_" + name, lora(dir / ("cpu_" + name), "cpu", precision));
    ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
    json on_gpu = lora(dir / ("gpu_" + name), "cuda", precision);
    if (std::string(params) == "nvme") {
      on_gpu["zero_optimization"] = {{"stage", 3},
                                     {"offload_param", offload("nvme", dir / "swap")},
                                     {"offload_optimizer", offload("none", dir / "swap")}};
    }
    const CommandResult gpu = train(dir, "gpu_" + name, on_gpu);
    ASSERT_EQ(gpu.exit_code, 0) << gpu.err;
    expect_curves_close(losses(gpu), losses(cpu), tol);
  }
}

}  // namespace
}  // namespace dsinf::testing
