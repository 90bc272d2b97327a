// End-to-end tests through the dsinf binary: exit codes, nothing written on
// bad input, resume bit-identity, export / init_from round trip, eval against
// PyTorch, monitors, and a short run whose loss falls.
#include <cmath>
#include <filesystem>

#include "memory/util/crc32c.h"
#include "tests/cli/train_util.h"
#include "tests/test_util.h"

namespace dsinf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// base_config with two layers and a 3-step warm-up.
json tiny_config(const TempDir& dir, const std::string& output_dir, int steps) {
  json config = base_config(dir, output_dir, steps);
  config["scheduler"]["params"]["warmup_num_steps"] = 3;
  config["model"]["n_layer"] = 2;
  return config;
}

std::string write_config(const TempDir& dir, const std::string& name, const json& config) {
  const std::string path = dir / name;
  write_text(path, config.dump(2));
  return path;
}

std::vector<json> events(const CommandResult& r, const std::string& kind) {
  std::vector<json> out;
  for (const json& line : json_lines(r.out)) {
    if (line.value("event", "") == kind) out.push_back(line);
  }
  return out;
}

TEST(Cli, HelpAndVersionExitZero) {
  TempDir dir;
  EXPECT_EQ(run_dsinf("--help", dir.path()).exit_code, 0);
  const CommandResult version = run_dsinf("--version", dir.path());
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.out.find("dsinf "), std::string::npos);
  EXPECT_EQ(run_dsinf("frobnicate", dir.path()).exit_code, 2);
  EXPECT_EQ(run_dsinf("train", dir.path()).exit_code, 2);
  EXPECT_EQ(
      run_dsinf("export " + write_config(dir, "c.json", tiny_config(dir, dir / "o", 1)), dir.path())
          .exit_code,
      2);  // export without --out
}

// One exit-code map: the same bad input read by any command -- a config that
// is missing, malformed or names a bad device override, a bad test hook --
// exits 2 from every one of them, and says why on stderr.
TEST(Cli, TheSameBadInputExitsTheSameFromEveryCommand) {
  TempDir dir;
  write_text(dir / "malformed.json", "{\"train_micro_batch_size_per_gpu\": ");
  const std::string good = write_config(dir, "good.json", tiny_config(dir, dir / "o", 1));
  const std::vector<std::string> commands = {"train ", "eval ", "plan ", "bench step ",
                                             "bench nvme --config ", "bench tiers --config "};
  for (const std::string& config : {dir / "missing.json", dir / "malformed.json"}) {
    for (const std::string& command : commands) {
      const CommandResult r = run_dsinf(command + config, dir.path());
      EXPECT_EQ(r.exit_code, 2) << command << config << "\n" << r.err;
      EXPECT_NE(r.err.find(config), std::string::npos) << command << config << "\n" << r.err;
    }
  }
  for (const std::string env : {"DSINF_DEVICE=tpu", "DSINF_NVME_FAULT=melt@3"}) {
    for (const std::string command : {"train ", "plan ", "bench step "}) {
      const CommandResult r = run_command(env + " " + dsinf_binary() + " " + command + good, dir.path());
      EXPECT_EQ(r.exit_code, 2) << env << " " << command << "\n" << r.err;
      EXPECT_NE(r.err.find(env.substr(0, env.find('='))), std::string::npos) << r.err;
    }
  }
  EXPECT_FALSE(fs::exists(dir / "o"));
}

struct BadInputCase {
  std::string name;
  std::function<void(json&)> edit;
  std::string raw;           // used instead of the edited JSON when not empty
  std::string must_mention;  // the key or file the message names
};

TEST(Cli, BadInputExitsTwoNamesTheKeyAndWritesNothing) {
  const std::vector<BadInputCase> cases = {
      {"unknown key", [](json& c) { c["model"]["n_layers"] = 2; }, "", "model.n_layers"},
      {"malformed", nullptr, "{\n  \"model\": {\n    \"n_layer\": 2,,\n  }\n}\n", "line 3"},
      {"wrong type", [](json& c) { c["model"]["n_head"] = "two"; }, "", "model.n_head"},
      {"thread_count",
       [](json& c) {
         c["aio"] = {{"thread_count", 2}};
       },
       "", "intra_op_parallelism"},
      {"batch triple", [](json& c) { c["train_batch_size"] = 5; }, "", "train_batch_size"},
      {"missing data", [](json& c) { c["data"]["path"] = "/nonexistent/corpus.txt"; }, "",
       "data.path"},
      {"budget too small",
       [](json& c) {
         c["memory"] = {{"device_budget_bytes", 4096}};
       },
       "", "memory.device_budget_bytes"},
      {"init_from garbage", nullptr, "", "init_from"},
  };
  for (const BadInputCase& tc : cases) {
    TempDir dir;
    const std::string out_dir = dir / "out";
    json config = tiny_config(dir, out_dir, 2);
    if (tc.name == "init_from garbage") {
      write_text(dir / "garbage.safetensors", "this is not a safetensors file");
      config["model"]["init_from"] = dir / "garbage.safetensors";
    } else if (tc.edit) {
      tc.edit(config);
    }
    const std::string path = dir / "config.json";
    write_text(path, tc.raw.empty() ? config.dump(2) : tc.raw);
    const CommandResult r = run_dsinf("train " + path + " --json", dir.path());
    EXPECT_EQ(r.exit_code, 2) << tc.name << ": " << r.err;
    EXPECT_NE(r.err.find(tc.must_mention), std::string::npos) << tc.name << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << tc.name << ": " << r.out;
    EXPECT_FALSE(fs::exists(out_dir)) << tc.name << ": wrote " << out_dir;
  }
}

TEST(Cli, ShortRunLossFalls) {
  TempDir dir;
  const std::string config = write_config(dir, "c.json", tiny_config(dir, dir / "out", 30));
  const CommandResult r = run_dsinf("train " + config + " --json", dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<json> steps = events(r, "step");
  ASSERT_EQ(steps.size(), 30u);
  const double first = steps.front()["loss"], last = steps.back()["loss"];
  EXPECT_GT(first, 5.0);  // about ln(256) at initialisation
  EXPECT_LT(last, first - 1.0);
  const std::vector<json> summary = events(r, "summary");
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0]["steps"], 30);
  EXPECT_EQ(summary[0]["final_loss"], steps.back()["loss"]);
  EXPECT_GT(summary[0]["peak_bytes"]["device"].get<int64_t>(), 0);
  EXPECT_EQ(summary[0]["peak_bytes"]["nvme"], 0);
  EXPECT_TRUE(fs::exists(dir / "out/ckpt-00000030.dsinf"));
  EXPECT_EQ(read_text(dir / "out/latest"), "ckpt-00000030.dsinf\n");
}

TEST(Cli, ResumeIsBitIdentical) {
  TempDir dir;
  // Six steps straight.
  const std::string straight = write_config(dir, "straight.json", tiny_config(dir, dir / "a", 6));
  const CommandResult a = run_dsinf("train " + straight + " --json", dir.path());
  ASSERT_EQ(a.exit_code, 0) << a.err;
  // Three steps, then the same output_dir asked for six.
  const std::string first = write_config(dir, "first.json", tiny_config(dir, dir / "b", 3));
  ASSERT_EQ(run_dsinf("train " + first + " --json", dir.path()).exit_code, 0);
  const std::string second = write_config(dir, "second.json", tiny_config(dir, dir / "b", 6));
  const CommandResult b = run_dsinf("train " + second + " --json", dir.path());
  ASSERT_EQ(b.exit_code, 0) << b.err;

  const std::vector<json> steps_a = events(a, "step"), steps_b = events(b, "step");
  ASSERT_EQ(steps_a.size(), 6u);
  ASSERT_EQ(steps_b.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(steps_b[i]["step"], steps_a[3 + i]["step"]);
    EXPECT_EQ(steps_b[i]["loss"].get<double>(), steps_a[3 + i]["loss"].get<double>());
    EXPECT_EQ(steps_b[i]["lr"].get<double>(), steps_a[3 + i]["lr"].get<double>());
  }
  // The final checkpoints -- parameters, m, v and state -- are the same bytes.
  const std::string ckpt_a = read_text(dir / "a/ckpt-00000006.dsinf");
  const std::string ckpt_b = read_text(dir / "b/ckpt-00000006.dsinf");
  ASSERT_GT(ckpt_a.size(), 4096u);
  EXPECT_TRUE(ckpt_a == ckpt_b) << "resumed checkpoint differs from the uninterrupted one";

  // Asking again for six steps trains nothing and reports the checkpoint's loss.
  const CommandResult again = run_dsinf("train " + second + " --json", dir.path());
  ASSERT_EQ(again.exit_code, 0) << again.err;
  ASSERT_EQ(events(again, "summary").size(), 1u);
  EXPECT_EQ(events(again, "summary")[0]["final_loss"].get<double>(),
            steps_a.back()["loss"].get<double>());
}

// One binary, the same numbers on any x86-64: training with the optimizer's
// scalar path (what a CPU without AVX runs) writes the checkpoint the best path
// this machine has writes, byte for byte.
TEST(Cli, TrainingIsBitIdenticalOnEveryCpuAdamPath) {
  TempDir dir;
  const std::string best = write_config(dir, "best.json", tiny_config(dir, dir / "best", 4));
  const CommandResult a = run_dsinf("train " + best + " --json", dir.path());
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const std::string scalar = write_config(dir, "scalar.json", tiny_config(dir, dir / "scalar", 4));
  const CommandResult b = run_command(
      "DSINF_CPU_ISA=scalar " + dsinf_binary() + " train " + scalar + " --json", dir.path());
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.err.find("CPU Adam scalar"), std::string::npos) << b.err;
  const std::string ckpt_a = read_text(dir / "best/ckpt-00000004.dsinf");
  ASSERT_GT(ckpt_a.size(), 4096u);
  EXPECT_TRUE(ckpt_a == read_text(dir / "scalar/ckpt-00000004.dsinf"));
}

TEST(Cli, InterruptSavesACheckpointAndTheSameCommandResumes) {
  TempDir dir;
  json config = tiny_config(dir, dir / "out", 1000000);  // far more than a second's work
  config["steps_per_print"] = 1000;
  const std::string path = write_config(dir, "c.json", config);
  // SIGINT after a second: the step in flight finishes and is saved.
  const CommandResult r = run_command(
      "timeout --preserve-status -s INT 1 " + dsinf_binary() + " train " + path + " --json",
      dir.path());
  ASSERT_EQ(r.exit_code, 130) << r.err;
  const std::vector<json> summary = events(r, "summary");
  ASSERT_EQ(summary.size(), 1u) << r.out;
  EXPECT_TRUE(summary[0]["interrupted"].get<bool>());
  const int64_t saved = summary[0]["steps"];
  ASSERT_GT(saved, 0);
  char name[64];
  std::snprintf(name, sizeof(name), "ckpt-%08lld.dsinf", static_cast<long long>(saved));
  EXPECT_EQ(read_text(dir / "out/latest"), std::string(name) + "\n");
  // Resuming with a step budget just past the saved step trains exactly the rest.
  config["train"]["steps"] = saved + 2;
  const CommandResult resumed =
      run_dsinf("train " + write_config(dir, "c2.json", config) + " --json", dir.path());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(events(resumed, "summary")[0]["steps_run"], 2);
}

TEST(Cli, CorruptCheckpointIsBadInput) {
  TempDir dir;
  const std::string config = write_config(dir, "c.json", tiny_config(dir, dir / "out", 2));
  ASSERT_EQ(run_dsinf("train " + config, dir.path()).exit_code, 0);
  const std::string ckpt = dir / "out/ckpt-00000002.dsinf";
  std::string bytes = read_text(ckpt);
  bytes[4096 + 100] ^= 0x01;  // one bit inside the first section
  write_text(ckpt, bytes);
  const CommandResult r = run_dsinf("eval " + config, dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("checksum mismatch"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(ckpt), std::string::npos) << r.err;
  write_text(ckpt, bytes.substr(0, bytes.size() / 2));  // truncated
  const CommandResult t = run_dsinf("train " + config, dir.path());
  EXPECT_EQ(t.exit_code, 2);
  EXPECT_NE(t.err.find(ckpt), std::string::npos) << t.err;
}

TEST(Cli, ExportThenInitFromRoundTrip) {
  TempDir dir;
  const std::string config = write_config(dir, "c.json", tiny_config(dir, dir / "out", 4));
  ASSERT_EQ(run_dsinf("train " + config, dir.path()).exit_code, 0);
  const CommandResult exp =
      run_dsinf("export " + config + " --out " + (dir / "w.safetensors") + " --json", dir.path());
  ASSERT_EQ(exp.exit_code, 0) << exp.err;
  EXPECT_EQ(json_lines(exp.out).back()["file"], dir / "w.safetensors");
  const CommandResult eval_ckpt = run_dsinf("eval " + config + " --json", dir.path());
  ASSERT_EQ(eval_ckpt.exit_code, 0) << eval_ckpt.err;

  json fresh = tiny_config(dir, dir / "fresh", 4);
  fresh["model"]["init_from"] = dir / "w.safetensors";
  const std::string fresh_config = write_config(dir, "fresh.json", fresh);
  const CommandResult eval_init = run_dsinf("eval " + fresh_config + " --json", dir.path());
  ASSERT_EQ(eval_init.exit_code, 0) << eval_init.err;
  EXPECT_EQ(json_lines(eval_init.out).back()["loss"].get<double>(),
            json_lines(eval_ckpt.out).back()["loss"].get<double>());
  // Exporting again from init_from gives the same bytes (apart from the metadata naming the
  // source).
  const CommandResult exp2 =
      run_dsinf("export " + fresh_config + " --out " + (dir / "w2.safetensors"), dir.path());
  ASSERT_EQ(exp2.exit_code, 0) << exp2.err;
  const std::string w1 = read_text(dir / "w.safetensors"), w2 = read_text(dir / "w2.safetensors");
  const size_t tensor_bytes = 4 * (256 * 32 + 32 * 32 + 2 * 32 + 2 * (12 * 32 * 32 + 13 * 32));
  ASSERT_GT(w1.size(), tensor_bytes);
  EXPECT_EQ(w1.substr(w1.size() - tensor_bytes), w2.substr(w2.size() - tensor_bytes));
}

TEST(Cli, EvalAgreesWithPyTorchOnExportedWeights) {
  if (!have_torch()) GTEST_SKIP() << "python3-torch is not installed";
  TempDir dir;
  json config = tiny_config(dir, dir / "out", 5);
  const std::string config_path = write_config(dir, "c.json", config);
  ASSERT_EQ(run_dsinf("train " + config_path, dir.path()).exit_code, 0);
  ASSERT_EQ(run_dsinf("export " + config_path + " --out " + (dir / "w.safetensors"), dir.path())
                .exit_code,
            0);
  const CommandResult ours = run_dsinf("eval " + config_path + " --json", dir.path());
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  const CommandResult torch =
      run_command(torch_script() + " eval --weights " + (dir / "w.safetensors") +
                      " --n_head 2 --data " + config["data"]["path"].get<std::string>(),
                  dir.path());
  ASSERT_EQ(torch.exit_code, 0) << torch.err;
  const json ours_json = json_lines(ours.out).back(), torch_json = json_lines(torch.out).back();
  EXPECT_EQ(ours_json["tokens"], torch_json["tokens"]);
  const double a = ours_json["loss"], b = torch_json["loss"];
  EXPECT_LT(std::abs(a - b) / std::abs(b), 1e-4) << "dsinf " << a << " vs PyTorch " << b;
}

TEST(Cli, MonitorsWriteDeepSpeedLayouts) {
  TempDir dir;
  json config = tiny_config(dir, dir / "out", 3);
  config["csv_monitor"] = {{"enabled", true}, {"output_path", dir / "mon"}, {"job_name", "job"}};
  config["tensorboard"] = {{"enabled", true}, {"output_path", dir / "mon"}, {"job_name", "tb"}};
  const std::string path = write_config(dir, "c.json", config);
  const CommandResult r = run_dsinf("train " + path + " --json", dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string csv = read_text(dir / "mon/job/Train_Samples_train_loss.csv");
  const std::vector<json> steps = events(r, "step");
  ASSERT_EQ(steps.size(), 3u);
  // Header, then "samples seen,value" rows: samples = step * train_batch_size (4), values
  // that read back to exactly the logged losses.
  std::istringstream lines(csv);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, "step,train_loss");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(std::getline(lines, line)) << csv;
    const size_t comma = line.find(',');
    ASSERT_NE(comma, std::string::npos) << line;
    EXPECT_EQ(line.substr(0, comma), std::to_string(4 * (i + 1)));
    EXPECT_EQ(std::stod(line.substr(comma + 1)), steps[i]["loss"].get<double>()) << line;
  }
  EXPECT_FALSE(std::getline(lines, line)) << csv;
  EXPECT_TRUE(fs::exists(dir / "mon/job/Train_Samples_lr.csv"));
  bool found_events = false;
  for (const auto& e : fs::directory_iterator(dir / "mon/tb")) {
    found_events |= e.path().filename().string().starts_with("events.out.tfevents.");
  }
  EXPECT_TRUE(found_events);
}

}  // namespace
}  // namespace dsinf::testing
