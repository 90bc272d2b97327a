// `dsinf bench` through the built binary, with small sizes on a temp dir: the
// JSON contracts (exact keys, positive numbers), the sweep's best aio block
// accepted by the config parser and used through --config, exit codes for bad
// arguments, and the tiers JSON. Never asserts a bandwidth or a time.
#include <filesystem>
#include <string>

#include "bench/report.h"
#include "tests/test_util.h"
#include "trainer/config/config.h"

namespace dsinf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

CommandResult run_bench(const std::string& args, const TempDir& scratch) {
  return run_command(std::string(DSINF_BINARY_PATH) + " bench " + args, scratch.path());
}

// The last line of stdout, parsed.
json last_json_line(const CommandResult& r) {
  std::vector<json> lines = json_lines(r.out);
  if (lines.empty()) ADD_FAILURE() << "no JSON on stdout; stderr: " << r.err;
  return lines.empty() ? json() : lines.back();
}

bool no_direct_io(const CommandResult& r) {
  return r.err.find("does not support O_DIRECT") != std::string::npos;
}

// Nothing but the scratch files of run_command remains: the benchmark cleaned up.
void expect_no_leftovers(const TempDir& dir) {
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename().string().rfind("dsinf-bench-", 0), std::string::npos)
        << entry.path();
  }
}

// A minimal valid config with NVMe offload to `nvme_dir` and the given aio block.
std::string write_config(const TempDir& dir, const std::string& nvme_dir, const json& aio) {
  write_text(dir / "corpus.txt", "a tiny corpus for a config that is only parsed\n");
  json config = {
      {"train_micro_batch_size_per_gpu", 1},
      {"zero_optimization",
       {{"stage", 3}, {"offload_optimizer", {{"device", "nvme"}, {"nvme_path", nvme_dir}}}}},
      {"model",
       {{"n_layer", 1}, {"n_head", 1}, {"n_embd", 8}, {"n_positions", 8}, {"vocab_size", 256}}},
      {"data", {{"path", dir / "corpus.txt"}}},
      {"train", {{"steps", 1}, {"output_dir", dir / "out"}}}};
  if (!aio.is_null()) config["aio"] = aio;
  const std::string path = dir / "config.json";
  write_text(path, config.dump(2));
  return path;
}

TEST(BenchReport, RoundSignificantKeepsAPositiveValuePositive) {
  EXPECT_GT(bench::round_significant(1e-9, 4), 0.0);
}

TEST(BenchNvme, SingleConfigJsonHasExactKeys) {
  TempDir dir;
  const CommandResult r = run_bench(
      "nvme --path " + dir.path() + " --size 8M --block-size 1M --queue-depth 4 --json", dir);
  if (no_direct_io(r)) GTEST_SKIP() << "the temp dir's file system refuses O_DIRECT";
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json_lines(r.out).size(), 1u) << "stdout under --json is the result line only";
  const json result = last_json_line(r);
  for (const char* key : {"read_gbps", "write_gbps", "block_size", "queue_depth", "engine"}) {
    EXPECT_TRUE(result.contains(key)) << key << " in " << result.dump();
  }
  EXPECT_GT(result.value("read_gbps", 0.0), 0.0);
  EXPECT_GT(result.value("write_gbps", 0.0), 0.0);
  EXPECT_EQ(result.value("block_size", 0), 1048576);
  EXPECT_EQ(result.value("queue_depth", 0), 4);
  const std::string engine = result.value("engine", "");
  EXPECT_TRUE(engine == "uring" || engine == "threads") << engine;
  expect_no_leftovers(dir);
}

TEST(BenchNvme, SweepBestBlockIsAcceptedAndUsed) {
  TempDir dir;
  const CommandResult sweep = run_bench("nvme --path " + dir.path() + " --size 8M --json", dir);
  if (no_direct_io(sweep)) GTEST_SKIP() << "the temp dir's file system refuses O_DIRECT";
  ASSERT_EQ(sweep.exit_code, 0) << sweep.err;
  const json result = last_json_line(sweep);
  ASSERT_TRUE(result.contains("results") && result.contains("best")) << result.dump();
  EXPECT_EQ(result["results"].size(), 18u);
  const json aio = result["best"]["aio"];
  for (const char* key :
       {"block_size", "queue_depth", "intra_op_parallelism", "single_submit", "overlap_events"}) {
    EXPECT_TRUE(aio.contains(key)) << key;
  }

  // Pasted into a config, the block is accepted...
  const std::string config_path = write_config(dir, dir.path(), aio);
  absl::StatusOr<trainer::LoadedConfig> loaded =
      trainer::parse_config(read_text(config_path), config_path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.aio.block_size, aio["block_size"].get<int64_t>());
  EXPECT_EQ(loaded->config.aio.queue_depth, aio["queue_depth"].get<int64_t>());
  EXPECT_EQ(loaded->config.aio.intra_op_parallelism, aio["intra_op_parallelism"].get<int64_t>());

  // ...and used: --config runs that block on the config's nvme_path.
  const CommandResult used = run_bench("nvme --config " + config_path + " --size 8M --json", dir);
  ASSERT_EQ(used.exit_code, 0) << used.err;
  const json measured = last_json_line(used);
  EXPECT_EQ(measured.value("block_size", 0), aio["block_size"].get<int64_t>());
  EXPECT_EQ(measured.value("queue_depth", 0), aio["queue_depth"].get<int64_t>());
  EXPECT_EQ(measured.value("intra_op_parallelism", 0), aio["intra_op_parallelism"].get<int64_t>());
  expect_no_leftovers(dir);
}

TEST(BenchNvme, TextSweepEndsWithThePastableBlock) {
  TempDir dir;
  const CommandResult r =
      run_bench("nvme --path " + dir.path() + " --size 4M --intra-op-parallelism 1", dir);
  if (no_direct_io(r)) GTEST_SKIP() << "the temp dir's file system refuses O_DIRECT";
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("best aio block"), std::string::npos) << r.out;
  std::string last_line = r.out.substr(0, r.out.find_last_not_of('\n') + 1);
  last_line = last_line.substr(last_line.find_last_of('\n') + 1);
  const json block = json::parse(last_line, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(block.contains("aio")) << r.out;
  EXPECT_EQ(block["aio"]["intra_op_parallelism"], 1);
}

TEST(BenchNvme, BadArgumentsExitTwo) {
  TempDir dir;
  const std::string path = " --path " + dir.path();
  const std::vector<std::string> bad = {
      "nvme",
      "nvme" + path + " --block-size 1000",
      "nvme" + path + " --block-size 1X",
      "nvme" + path + " --queue-depth 0",
      "nvme" + path + " --size 0",
      "nvme" + path + " --engine fast",
      "nvme" + path + " --bogus",
      "nvme" + path + " --repeat",
      "nvme" + path + " stray",
      "nvme --path /nonexistent/dsinf-bench-dir --size 8M",
      "nvme --path " + dir.path() + "/nothing --size 8M",
      "nvme" + path + " --size 1024T --block-size 1M",  // more than the disk holds
      "nvme --config " + dir.path() + "/missing.json",
      "tiers --array-bytes 12",
      "tiers --bogus",
      "adam --params 0",
      "adam --params lots",
      "adam --isa sse9",
      "adam --passes 0",
      "frobnicate",
      "",
  };
  for (const std::string& args : bad) {
    const CommandResult r = run_bench(args, dir);
    EXPECT_EQ(r.exit_code, 2) << "dsinf bench " << args << "\n" << r.err;
    EXPECT_FALSE(r.err.empty()) << args;
  }
  EXPECT_EQ(run_bench("--help", dir).exit_code, 0);
  EXPECT_EQ(run_bench("nvme --help", dir).exit_code, 0);
  EXPECT_EQ(run_bench("tiers --help", dir).exit_code, 0);
  EXPECT_EQ(run_bench("adam --help", dir).exit_code, 0);
  expect_no_leftovers(dir);
}

TEST(BenchTiers, JsonHasTheKeys) {
  TempDir dir;
  const CommandResult r = run_bench("tiers --quick --json", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json result = last_json_line(r);
  EXPECT_GT(result.value("host_update_gbps", 0.0), 0.0);
  ASSERT_TRUE(result.contains("host_copy")) << result.dump();
  EXPECT_GT(result["host_copy"].value("pageable_to_aligned_gbps", 0.0), 0.0);
  EXPECT_GT(result["host_copy"].value("aligned_to_pageable_gbps", 0.0), 0.0);
  ASSERT_TRUE(result.contains("nvme"));
  EXPECT_TRUE(result["nvme"].is_null());
  ASSERT_TRUE(result.contains("device"));
  if (result["device"].is_null()) {
    // No CUDA device (or no CUDA backend): the rows and the JSON say why.
    ASSERT_TRUE(result["device_reason"].is_string()) << result.dump();
    const std::string reason = result["device_reason"];
    EXPECT_TRUE(reason.find("CUDA") != std::string::npos ||
                reason.find("cuda") != std::string::npos)
        << reason;
    EXPECT_NE(r.err.find(reason), std::string::npos) << r.err;
  } else {
    const json& d = result["device"];
    for (const char* key : {"h2d_pinned_gbps", "d2h_pinned_gbps", "h2d_pageable_gbps",
                            "d2h_pageable_gbps", "ceiling_h2d_gbps", "ceiling_d2h_gbps"}) {
      EXPECT_GT(d.value(key, 0.0), 0.0) << key;
    }
    EXPECT_EQ(d["bytes"], 16 << 20);
  }
}

TEST(BenchTiers, NvmeRowsAndOutFile) {
  TempDir dir;
  const std::string out = dir / "tiers.json";
  const CommandResult r =
      run_bench("tiers --quick --path " + dir.path() + " --size 8M --json --out " + out, dir);
  if (no_direct_io(r)) GTEST_SKIP() << "the temp dir's file system refuses O_DIRECT";
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json result = last_json_line(r);
  ASSERT_TRUE(result["nvme"].is_object()) << result.dump();
  for (const char* key : {"read_gbps", "write_gbps", "block_size", "queue_depth", "engine"}) {
    EXPECT_TRUE(result["nvme"].contains(key)) << key;
  }
  EXPECT_GT(result["nvme"].value("read_gbps", 0.0), 0.0);
  EXPECT_EQ(json::parse(read_text(out)), result);
  expect_no_leftovers(dir);
}

// The JSON contract: ceiling_gbps, then plain, fused, multipass and naive
// each with params_per_s and gbps; the variants were checked bit for bit.
void expect_adam_json(const json& result, int64_t params) {
  EXPECT_GT(result.value("ceiling_gbps", 0.0), 0.0) << result.dump();
  for (const char* variant : {"plain", "fused", "multipass", "naive"}) {
    ASSERT_TRUE(result.contains(variant)) << variant << " in " << result.dump();
    const json& v = result[variant];
    EXPECT_GT(v.value("params_per_s", 0.0), 0.0) << variant;
    // gbps counts 28 bytes per parameter, whatever the variant moves.
    EXPECT_NEAR(v.value("gbps", 0.0), v.value("params_per_s", 0.0) * 28 / 1e9,
                2e-3 * v.value("gbps", 0.0))
        << variant;
    EXPECT_GT(v.value("bytes_moved_per_param", 0.0), 0.0) << variant;
  }
  EXPECT_EQ(result["fused"]["bytes_moved_per_param"], 30);
  EXPECT_EQ(result["multipass"]["bytes_moved_per_param"], 44);
  EXPECT_EQ(result.value("params", int64_t{0}), params);
  EXPECT_EQ(result.value("verified", false), true);
}

TEST(BenchAdam, JsonHasTheKeysOnTheBestPath) {
  TempDir dir;
  const CommandResult r = run_bench("adam --params 100003 --passes 1 --json", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_adam_json(last_json_line(r), 100003);
  EXPECT_NE(r.err.find("fused vs multipass"), std::string::npos) << r.err;
}

TEST(BenchAdam, ScalarPathRunsAndIsNamed) {
  TempDir dir;
  const CommandResult r = run_bench("adam --params 5000 --passes 1 --isa scalar --json", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json result = last_json_line(r);
  expect_adam_json(result, 5000);
  EXPECT_EQ(result.value("isa", ""), "scalar");
}

// bench comm's JSON: every op at every size, busbw = algbw x the link factor
// of the op (nccl-tests' definitions), results verified.
void expect_comm_report(const json& report, int ranks) {
  EXPECT_EQ(report["ranks"], ranks);
  EXPECT_EQ(report["verified"], true);
  EXPECT_EQ(report["device"], "cpu");
  EXPECT_EQ(report["check"], "bit for bit");
  ASSERT_EQ(report["results"].size(), 3u * 5u);  // 4 KiB .. 64 KiB, doubling
  for (const json& r : report["results"]) {
    const std::string op = r["op"];
    const double factor = ranks == 1 ? 0.0 : (op == "all_reduce" ? 2.0 : 1.0) * (ranks - 1) / ranks;
    EXPECT_GT(r["algbw_gbps"].get<double>(), 0.0) << op;
    EXPECT_DOUBLE_EQ(r["busbw_gbps"].get<double>(), r["algbw_gbps"].get<double>() * factor) << op;
  }
}

TEST(BenchComm, OneProcessAndTwoMpiRanks) {
  TempDir dir;
  const std::string args = " bench comm --min-bytes 4K --max-bytes 64K --iters 3 --json";
  const CommandResult alone = run_dsinf(args, dir.path());
  ASSERT_EQ(alone.exit_code, 0) << alone.err;
  expect_comm_report(json_lines(alone.out).back(), 1);
  if (run_command("command -v mpiexec", dir.path()).exit_code != 0) {
    GTEST_SKIP() << "no mpiexec (install openmpi-bin)";
  }
  // Open MPI refuses root without both the flag and the two variables.
  const CommandResult two = run_command(
      "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpiexec -n 2 "
      "--oversubscribe --allow-run-as-root " +
          dsinf_binary() + args,
      dir.path());
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const std::vector<json> lines = json_lines(two.out);
  ASSERT_EQ(lines.size(), 1u) << two.out;  // rank 0 alone reports
  expect_comm_report(lines.back(), 2);
  // eval is one process: under the launcher it is refused, not run twice.
  const CommandResult eval = run_command(
      "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpiexec -n 2 "
      "--oversubscribe --allow-run-as-root " +
          dsinf_binary() + " eval no-such.json",
      dir.path());
  EXPECT_NE(eval.exit_code, 0);
  EXPECT_NE(eval.err.find("eval runs as one process"), std::string::npos) << eval.err;
}

TEST(BenchComm, BadArgumentsExitTwo) {
  TempDir dir;
  for (const char* bad : {"--max-bytes 2", "--min-bytes 1M --max-bytes 4K", "--iters 0",
                          "--max-bytes lots", "--frobnicate", "--device tpu"}) {
    const CommandResult r = run_dsinf(std::string(" bench comm ") + bad, dir.path());
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("bench comm"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace dsinf::testing
