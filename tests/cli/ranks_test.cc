// ZeRO across ranks through the CLI (`dsinf launch`, i.e. mpirun): at every
// stage, with and without host/NVMe offload, 2 and 3 ranks train exactly as
// one process with the same global batch (losses, norms, exported weights);
// each rank keeps its share of the parameters, gradients and optimizer state; a
// partitioned checkpoint resumes at another world size; a failing rank stops
// the job with its message; a batch that does not divide is exit 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "tests/cli/train_util.h"
#include "tests/test_util.h"

namespace dsinf::testing {
namespace {

using json = nlohmann::json;

bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

#define REQUIRE_MPI()                                                         \
  do {                                                                        \
    if (!have_mpirun()) GTEST_SKIP() << "mpirun (openmpi-bin) not installed"; \
  } while (0)

// Global micro-batches a step: 6, so 1, 2 and 3 ranks split it evenly.
constexpr int kMicroBatches = 6;

json offload_of(const std::string& device, const std::string& nvme) {
  return offload(device, nvme);
}

// The base config at `stage` with the optimizer (and, at stage 3, the
// parameters) on `offload` ("none", "cpu" or "nvme"), for `ranks` ranks.
json zero_config(json c, int stage, const std::string& offload, const std::string& nvme,
                 int ranks) {
  c["gradient_accumulation_steps"] = kMicroBatches / ranks;
  c["zero_optimization"] = {{"stage", stage}};
  if (offload != "none") c["zero_optimization"]["offload_optimizer"] = offload_of(offload, nvme);
  if (offload != "none" && stage == 3) {
    c["zero_optimization"]["offload_param"] = offload_of(offload, nvme);
  }
  c["train"]["save_interval"] = 2;
  return c;
}

// overlap_comm, with `bucket` elements of visits in flight.
void overlapped(json& c, int64_t bucket) {
  c["zero_optimization"]["overlap_comm"] = true;
  c["zero_optimization"]["reduce_bucket_size"] = bucket;
}

// `dsinf train` (one rank) or `dsinf launch -n N` with `config`.
CommandResult train(const TempDir& dir, const std::string& name, const json& config, int ranks) {
  const std::string path = dir / (name + ".json");
  write_text(path, config.dump(2));
  const std::string command = ranks == 1
                                  ? "train " + path + " --json"
                                  : "launch -n " + std::to_string(ranks) + " " + path + " --json";
  return run_dsinf(command, dir.path());
}

// Every step's loss and gradient norm, as printed (the exact doubles).
std::vector<std::pair<double, double>> steps_of(const CommandResult& r) {
  std::vector<std::pair<double, double>> steps;
  for (const json& line : json_lines(r.out)) {
    if (line.value("event", "") == "step") {
      steps.emplace_back(line["loss"].get<double>(), line["grad_norm"].get<double>());
    }
  }
  return steps;
}

// The model exported (by one process) from the run's newest checkpoint.
std::string exported(const TempDir& dir, const std::string& name) {
  const std::string out = dir / (name + "-export");
  const CommandResult r =
      run_dsinf("export " + (dir / (name + ".json")) + " --out " + out, dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string model = read_text(out + "/model.safetensors");
  EXPECT_FALSE(model.empty()) << out;
  return model;
}

// Trains `config` at 1 and at `ranks` ranks and requires the same steps and weights.
void expect_same_as_one_rank(const TempDir& dir, const std::string& tag, const json& one,
                             const json& many, int ranks) {
  const CommandResult a = train(dir, tag + "-1", one, 1);
  const CommandResult b = train(dir, tag + "-n", many, ranks);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const auto sa = steps_of(a), sb = steps_of(b);
  ASSERT_EQ(sa.size(), 4u);
  EXPECT_EQ(sa, sb) << tag;
  EXPECT_TRUE(exported(dir, tag + "-1") == exported(dir, tag + "-n")) << tag;
}

TEST(RanksCli, GptAtEveryStageMatchesOneRank) {
  REQUIRE_MPI();
  TempDir dir;
  struct Case {
    int stage;
    const char* offload;
    int ranks;
    bool overlap = false;  // overlap_comm with the least bucket: the pool is always short
  };
  for (const Case& k : {Case{0, "none", 2}, Case{1, "none", 3}, Case{2, "cpu", 2},
                        Case{2, "cpu", 3, true}, Case{3, "none", 2}, Case{3, "none", 3, true},
                        Case{3, "cpu", 3}, Case{3, "nvme", 2, true}, Case{3, "nvme", 3}}) {
    const std::string tag = "s" + std::to_string(k.stage) + k.offload + std::to_string(k.ranks) +
                            (k.overlap ? "o" : "");
    const std::string nvme = dir / (tag + "-swap");
    std::filesystem::create_directories(nvme);
    const json one =
        zero_config(base_config(dir, dir / (tag + "-1"), 4), k.stage, k.offload, nvme, 1);
    json many =
        zero_config(base_config(dir, dir / (tag + "-n"), 4), k.stage, k.offload, nvme, k.ranks);
    if (k.overlap) overlapped(many, 1);
    expect_same_as_one_rank(dir, tag, one, many, k.ranks);
  }
}

// A tied embedding (two gradient visits a micro-batch) in bf16, an untied
// head, and LoRA adapters over a frozen base.
TEST(RanksCli, LlamaMatchesOneRank) {
  REQUIRE_MPI();
  TempDir dir;
  const std::string nvme = dir / "swap";
  std::filesystem::create_directories(nvme);
  json tied = llama_config(dir, "", 4);
  tied["model"]["tie_word_embeddings"] = true;
  tied["bf16"] = {{"enabled", true}};
  auto with_out = [&](json c, const std::string& out) {
    c["train"]["output_dir"] = dir / out;
    return c;
  };
  expect_same_as_one_rank(dir, "tied", with_out(zero_config(tied, 3, "nvme", nvme, 1), "tied-1"),
                          with_out(zero_config(tied, 3, "nvme", nvme, 2), "tied-n"), 2);
  const json untied = llama_config(dir, "", 4);
  expect_same_as_one_rank(dir, "untied", with_out(zero_config(untied, 2, "none", nvme, 1), "u-1"),
                          with_out(zero_config(untied, 2, "none", nvme, 3), "u-n"), 3);
  // LoRA: the adapters (each with a device slot of its own) are partitioned,
  // the frozen base streams from NVMe on every rank.
  json lora = llama_config(dir, "", 4);
  lora["lora"] = {
      {"r", 4}, {"lora_alpha", 8}, {"lora_dropout", 0.1}, {"target_modules", "all-linear"}};
  json lora_n = with_out(zero_config(lora, 3, "nvme", nvme, 3), "l-n");
  overlapped(lora_n, 500000000);  // every adapter's visits in flight
  expect_same_as_one_rank(dir, "lora", with_out(zero_config(lora, 3, "nvme", nvme, 1), "l-1"),
                          lora_n, 3);
}

// Stage 3, 3 ranks: the parameters, gradients and optimizer state are split,
// each rank within one chunk of an even share, on the device and offloaded to
// NVMe (where each rank's swap files hold its share too).
TEST(RanksCli, EachRankKeepsItsShareOfTheState) {
  REQUIRE_MPI();
  TempDir dir;
  for (const std::string offload : {"none", "nvme"}) {
    const std::string nvme = dir / (offload + "-swap");
    std::filesystem::create_directories(nvme);
    const std::string one_name = offload + "-one", many_name = offload + "-many";
    const CommandResult one = train(
        dir, one_name, zero_config(base_config(dir, dir / one_name, 2), 3, offload, nvme, 1), 1);
    const CommandResult many = train(
        dir, many_name, zero_config(base_config(dir, dir / many_name, 2), 3, offload, nvme, 3), 3);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    ASSERT_EQ(many.exit_code, 0) << many.err;
    const json whole = summary(one)["ranks"][0];
    const json ranks = summary(many)["ranks"];
    ASSERT_EQ(ranks.size(), 3u);
    std::map<std::string, uint64_t> sums;
    for (const json& r : ranks) {
      const uint64_t chunk = r["largest_chunk_bytes"].get<uint64_t>();
      for (auto [key, chunks] : {std::pair{"param_bytes", 1}, std::pair{"grad_bytes", 1},
                                 std::pair{"optimizer_bytes", 2}}) {
        const uint64_t mine = r[key].get<uint64_t>(), all = whole[key].get<uint64_t>();
        EXPECT_GT(mine, 0u) << key;
        EXPECT_LE(mine, all / 3 + chunks * chunk)
            << offload << " " << key << " of rank " << r["rank"];
        sums[key] += mine;
      }
      if (offload == "nvme") {
        // Parameters, m, v (the master weights are the parameters): one chunk
        // each over an even share, and a page for each chunk held elsewhere.
        const uint64_t mine = r["peak_bytes"]["nvme"].get<uint64_t>();
        const uint64_t all = whole["peak_bytes"]["nvme"].get<uint64_t>();
        EXPECT_GT(mine, 0u);
        EXPECT_LE(mine, all / 3 + 3 * chunk + 3 * 64 * 4096) << "nvme of rank " << r["rank"];
      }
    }
    // Every byte is somewhere, once.
    for (const auto& [key, sum] : sums) EXPECT_EQ(sum, whole[key].get<uint64_t>()) << key;
    // `plan --world-size 3` predicts each rank's classes and device bytes.
    const CommandResult plan =
        run_dsinf("plan " + (dir / (many_name + ".json")) + " --world-size 3 --json", dir.path());
    ASSERT_EQ(plan.exit_code, 0) << plan.err;
    const json planned = json_lines(plan.out).back()["ranks"];
    ASSERT_EQ(planned.size(), 3u);
    for (size_t r = 0; r < 3; ++r) {
      for (const char* key : {"param_bytes", "grad_bytes", "optimizer_bytes"}) {
        EXPECT_EQ(planned[r][key], ranks[r][key]) << offload << " " << key << " of rank " << r;
      }
      EXPECT_EQ(planned[r]["device_bytes"], ranks[r]["peak_bytes"]["device"])
          << offload << " rank " << r;
    }
  }
}

// LoRA at stage 3 with the base on NVMe: each rank holds and swaps its
// share of the frozen base too (the holder broadcasts a base chunk when it is
// used), and trains exactly as one process.
TEST(RanksCli, EachRankHoldsItsShareOfALoraBase) {
  REQUIRE_MPI();
  TempDir dir;
  const std::string nvme = dir / "swap";
  std::filesystem::create_directories(nvme);
  json lora = llama_config(dir, "", 2);
  lora["lora"] = {{"r", 4}, {"lora_alpha", 8}, {"target_modules", "all-linear"}};
  auto at = [&](int ranks, const std::string& out) {
    json c = zero_config(lora, 3, "nvme", nvme, ranks);
    c["train"]["output_dir"] = dir / out;
    return c;
  };
  const CommandResult one = train(dir, "one", at(1, "one"), 1);
  const CommandResult two = train(dir, "two", at(2, "two"), 2);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(two.exit_code, 0) << two.err;
  ASSERT_FALSE(steps_of(one).empty());
  EXPECT_EQ(steps_of(one), steps_of(two));
  const json whole = summary(one)["ranks"][0];
  const json ranks = summary(two)["ranks"];
  ASSERT_EQ(ranks.size(), 2u);
  uint64_t params = 0;
  for (const json& r : ranks) {
    const uint64_t chunk = r["largest_chunk_bytes"].get<uint64_t>();
    const uint64_t mine = r["param_bytes"].get<uint64_t>();
    EXPECT_LE(mine, whole["param_bytes"].get<uint64_t>() / 2 + chunk) << "rank " << r["rank"];
    EXPECT_LE(r["peak_bytes"]["nvme"].get<uint64_t>(),
              whole["peak_bytes"]["nvme"].get<uint64_t>() / 2 + 2 * chunk + 64 * 4096)
        << "rank " << r["rank"];
    params += mine;
  }
  EXPECT_EQ(params, whole["param_bytes"].get<uint64_t>());
}

// Saved by 2 ranks, resumed by 3 and by 1: the uninterrupted run's steps and weights.
TEST(RanksCli, APartitionedCheckpointResumesAtAnotherWorldSize) {
  REQUIRE_MPI();
  TempDir dir;
  const std::string nvme = dir / "swap";
  std::filesystem::create_directories(nvme);
  const CommandResult whole =
      train(dir, "whole", zero_config(base_config(dir, dir / "whole", 4), 3, "nvme", nvme, 1), 1);
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  const std::string whole_model = exported(dir, "whole");
  for (int resume_ranks : {3, 1}) {
    const std::string out = dir / ("r" + std::to_string(resume_ranks));
    // Saved with the parameters partitioned, resumed with them on NVMe.
    const CommandResult first =
        train(dir, "part", zero_config(base_config(dir, out, 2), 3, "none", nvme, 2), 2);
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_TRUE(std::filesystem::exists(out + "/ckpt-00000002.part1-of-2"));
    EXPECT_EQ(json::parse(read_text(out + "/ckpt-00000002.dsinf"))["world_size"], 2);
    const std::string name = "resumed" + std::to_string(resume_ranks);
    const CommandResult second =
        train(dir, name, zero_config(base_config(dir, out, 4), 3, "nvme", nvme, resume_ranks),
              resume_ranks);
    ASSERT_EQ(second.exit_code, 0) << second.err;
    auto steps = steps_of(first);
    for (const auto& s : steps_of(second)) steps.push_back(s);
    EXPECT_EQ(steps, steps_of(whole)) << "resumed at " << resume_ranks;
    EXPECT_TRUE(exported(dir, name) == whole_model) << "resumed at " << resume_ranks;
  }
}

// Rank 1's NVMe fails: the job ends with exit 2 and rank 1's message. With
// overlap_comm a read fails in the middle of a step, its visits in flight.
TEST(RanksCli, AFailingRankStopsTheJobWithItsMessage) {
  REQUIRE_MPI();
  TempDir dir;
  const std::string nvme = dir / "swap";
  std::filesystem::create_directories(nvme);
  const std::string bin = dsinf_binary();
  for (const char* fault : {"eio@write:5", "eio@read:30"}) {
    for (bool overlap : {false, true}) {
      const std::string name = std::string("fault-") + fault + (overlap ? "-o" : "");
      json config = zero_config(base_config(dir, dir / name, 4), 3, "nvme", nvme, 2);
      if (overlap) overlapped(config, 1);
      const std::string path = dir / (name + ".json");
      write_text(path, config.dump(2));
      const CommandResult r = run_command(
          "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe "
          "--allow-run-as-root -n 1 " +
              bin + " train " + path + " : -n 1 env DSINF_NVME_FAULT=" + fault + " " + bin +
              " train " + path,
          dir.path());
      EXPECT_EQ(r.exit_code, 2) << name << r.err;
      EXPECT_NE(r.err.find("rank 1 of 2: "), std::string::npos) << name << r.err;
      EXPECT_NE(r.err.find("injected fault"), std::string::npos) << name << r.err;
    }
  }
}

// Rank 1 cannot write its part of step 4's checkpoint: the job stops, the
// manifest of step 2 stays the newest, and the run resumes from it (at
// another world size) to the uninterrupted run's weights.
TEST(RanksCli, ASaveOneRankCannotFinishLeavesThePreviousCheckpoint) {
  REQUIRE_MPI();
  TempDir dir;
  const CommandResult whole =
      train(dir, "whole", zero_config(base_config(dir, dir / "whole", 4), 2, "cpu", "", 1), 1);
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  const std::string out = dir / "out";
  // A directory where rank 1's part must go: its rename fails.
  std::filesystem::create_directories(out + "/ckpt-00000004.part1-of-2");
  const json config = zero_config(base_config(dir, out, 4), 2, "cpu", "", 2);
  const CommandResult failed = train(dir, "two", config, 2);
  EXPECT_NE(failed.exit_code, 0);
  EXPECT_NE(failed.err.find("rank 1 of 2: "), std::string::npos) << failed.err;
  EXPECT_EQ(read_text(out + "/latest"), "ckpt-00000002.dsinf\n");
  EXPECT_FALSE(std::filesystem::exists(out + "/ckpt-00000004.dsinf"));
  std::filesystem::remove(out + "/ckpt-00000004.part1-of-2");
  // A part that is a symbolic link is refused: exit 2 naming it.
  const std::string part0 = out + "/ckpt-00000002.part0-of-2";
  std::filesystem::rename(part0, dir / "moved-part");
  std::filesystem::create_symlink(dir / "moved-part", part0);
  const CommandResult linked =
      train(dir, "linked", zero_config(base_config(dir, out, 4), 2, "cpu", "", 1), 1);
  EXPECT_EQ(linked.exit_code, 2) << linked.err;
  EXPECT_NE(linked.err.find(part0 + ": not a valid checkpoint: is a symbolic link"),
            std::string::npos)
      << linked.err;
  std::filesystem::remove(part0);
  std::filesystem::rename(dir / "moved-part", part0);
  const CommandResult resumed =
      train(dir, "three", zero_config(base_config(dir, out, 4), 2, "cpu", "", 3), 3);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(steps_of(resumed).size(), 2u);
  EXPECT_TRUE(exported(dir, "three") == exported(dir, "whole"));
}

// With the optimizer state off the device each rank writes its part of a
// checkpoint while the next steps train, and the manifest follows once every
// rank's part has ended. DSINF_SAVE_PACE_MS holds each chunk of the snapshot
// 40 ms, so later optimizer runs meet chunks not yet read; step 2's parts and
// manifest must still be those of a run that stopped at step 2 (whose last
// save is written at once), byte for byte.
TEST(RanksCli, BackgroundSavesOfEachRankHoldTheirStep) {
  REQUIRE_MPI();
  TempDir dir;
  const std::string nvme = dir / "swap";
  std::filesystem::create_directories(nvme);
  for (const auto& [stage, offload] : {std::pair<int, std::string>{2, "cpu"}, {3, "nvme"}}) {
    const std::string tag = "s" + std::to_string(stage) + offload;
    SCOPED_TRACE(tag);
    const CommandResult ref =
        train(dir, tag + "-ref",
              zero_config(base_config(dir, dir / (tag + "-ref"), 2), stage, offload, nvme, 2), 2);
    ASSERT_EQ(ref.exit_code, 0) << ref.err;
    const std::string path = dir / (tag + ".json");
    write_text(path, zero_config(base_config(dir, dir / tag, 6), stage, offload, nvme, 2).dump(2));
    const CommandResult r = run_command(
        "DSINF_SAVE_PACE_MS=40 " + dsinf_binary() + " launch -n 2 " + path + " --json", dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const std::string file :
         {"ckpt-00000002.dsinf", "ckpt-00000002.part0-of-2", "ckpt-00000002.part1-of-2"}) {
      EXPECT_TRUE(read_text(dir / (tag + "/" + file)) == read_text(dir / (tag + "-ref/" + file)))
          << file << " of the background save differs from step 2's";
    }
    EXPECT_EQ(read_text(dir / (tag + "/latest")), "ckpt-00000006.dsinf\n");
    EXPECT_GT(summary(r)["checkpoint_wait_s"].get<double>(), 0.0)
        << "no update waited for the snapshot: the save did not run beside training";
  }
}

TEST(RanksCli, TheBatchMustDivideAcrossRanks) {
  REQUIRE_MPI();
  TempDir dir;
  json c = base_config(dir, dir / "out", 2);
  c.erase("gradient_accumulation_steps");
  c["train_batch_size"] = 6;
  const CommandResult r = train(dir, "bad", c, 4);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("train_batch_size: 6 is not divisible by train_micro_batch_size_per_gpu 2 "
                       "* world size 4"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));
  const CommandResult usage = run_dsinf("launch " + (dir / "bad.json"), dir.path());
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.err.find("launch needs -n N"), std::string::npos) << usage.err;
}

// A torchrun-style launch: its ranks meet at MASTER_ADDR:MASTER_PORT and talk
// through NCCL on a GPU each. Without NCCL or a GPU (CI) it is exit 2 saying
// how to launch under MPI, with a GPU the rendezvous waits for rank 0 and
// names it; a missing variable is exit 2 naming it. Nothing is written.
TEST(RanksCli, ATorchrunStyleLaunchNeedsNcclOrSaysHowToLaunch) {
  TempDir dir;
  const std::string path = dir / "c.json";
  write_text(path, base_config(dir, dir / "out", 2).dump(2));
  const std::string env =
      "env DSINF_RENDEZVOUS_TIMEOUT=2 WORLD_SIZE=2 RANK=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 ";
  const CommandResult r =
      run_command(env + "MASTER_PORT=29511 " + dsinf_binary() + " train " + path, dir.path());
  const bool refused = r.err.find("WORLD_SIZE=2 (a torchrun-style launch)") != std::string::npos;
  if (refused) {
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("dsinf launch -n N CONFIG"), std::string::npos) << r.err;
  } else {  // this dsinf has NCCL and a GPU: no rank 0 listens
    EXPECT_NE(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("127.0.0.1:29511"), std::string::npos) << r.err;
  }
  const CommandResult missing = run_command(env + dsinf_binary() + " train " + path, dir.path());
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  EXPECT_NE(missing.err.find("MASTER_PORT is not set"), std::string::npos) << missing.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));
}

}  // namespace
}  // namespace dsinf::testing
