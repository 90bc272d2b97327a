// `dsinf plan` through the binary: the bytes of every tensor class and tier
// for three placements, computed here independently from the chunk layout rule;
// a device budget below the least one is refused with train's own message, and
// that least budget trains; the predicted step names the resource that bounds
// it; bad --tiers files and unknown flags exit 2. Every run passes --tiers (or
// a prepared cache) so nothing is measured, except the one measuring test.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "actors/runtime/placement.h"
#include "tests/test_util.h"
#include "trainer/config/runtime_spec.h"
#include "trainer/models/gpt2/gpt2.h"

namespace dsinf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The model of every test: 2 layers, 2 heads, 24 channels (LayerNorm vectors of
// 96 bytes, so tensors need alignment padding), 16 positions, vocab 256.
constexpr size_t L = 2, NH = 2, C = 24, T = 16, V = 256;

size_t align(size_t n, size_t a) { return (n + a - 1) / a * a; }

// The layout rule: each tensor starts at a multiple of 64 bytes, and each chunk
// is a whole number of 4 KiB pages. A chunk's elements run to its last tensor's end.
size_t chunk_elements(const std::vector<size_t>& numels) {
  size_t floats = 0;
  for (size_t n : numels) floats = align(floats, 64 / sizeof(float)) + n;
  return floats;
}
size_t chunk_bytes(const std::vector<size_t>& numels) {
  return align(chunk_elements(numels) * sizeof(float), 4096);
}

struct Model {
  std::vector<size_t> chunks;    // bytes per chunk: embed, h.0 .. h.L-1, ln_f
  std::vector<size_t> elements;  // elements per chunk
  size_t params = 0;
  size_t total() const {
    size_t t = 0;
    for (size_t c : chunks) t += c;
    return t;
  }
  size_t largest() const {
    size_t l = 0;
    for (size_t c : chunks) l = std::max(l, c);
    return l;
  }
};

Model model() {
  const std::vector<size_t> embed = {V * C, T * C};
  const std::vector<size_t> block = {C, C, 3 * C * C, 3 * C, C * C,     C,
                                     C, C, 4 * C * C, 4 * C, 4 * C * C, C};
  const std::vector<size_t> final_ln = {C, C};
  Model m;
  auto add = [&](const std::vector<size_t>& numels) {
    m.chunks.push_back(chunk_bytes(numels));
    m.elements.push_back(chunk_elements(numels));
    for (size_t n : numels) m.params += n;
  };
  add(embed);
  for (size_t l = 0; l < L; ++l) add(block);
  add(final_ln);
  return m;
}

std::string corpus(const TempDir& dir) {
  std::string text;
  for (int i = 0; text.size() < 20000; ++i) text += "plan the step " + std::to_string(i) + ". ";
  write_text(dir / "corpus.txt", text);
  return dir / "corpus.txt";
}

json base_config(const TempDir& dir) {
  return {{"train_micro_batch_size_per_gpu", 2},
          {"gradient_accumulation_steps", 2},
          {"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 1e-3}}}}},
          {"steps_per_print", 1},
          {"model",
           {{"n_layer", L}, {"n_head", NH}, {"n_embd", C}, {"n_positions", T}, {"vocab_size", V}}},
          {"data", {{"path", corpus(dir)}}},
          {"train", {{"steps", 1}, {"output_dir", dir / "out"}, {"seed", 3}}}};
}

json stage2_cpu(const TempDir& dir) {
  json c = base_config(dir);
  c["zero_optimization"] = {{"stage", 2}, {"offload_optimizer", {{"device", "cpu"}}}};
  return c;
}

// max_in_cpu 0: no parameter chunk cached on the host, so every visit reads NVMe.
json stage3_nvme(const TempDir& dir) {
  fs::create_directories(dir / "swap");
  json c = base_config(dir);
  c["zero_optimization"] = {
      {"stage", 3},
      {"offload_param", {{"device", "nvme"}, {"nvme_path", dir / "swap"}, {"max_in_cpu", 0}}},
      {"offload_optimizer", {{"device", "nvme"}, {"nvme_path", dir / "swap"}}}};
  return c;
}

std::string write_json(const TempDir& dir, const std::string& name, const json& j) {
  const std::string path = dir / name;
  write_text(path, j.dump(2));
  return path;
}

// A `dsinf bench tiers --out` result, with dsinf plan's cpu_gflops so nothing is timed.
json tiers(double host_gbps, double cpu_gflops, double read_gbps, double write_gbps) {
  return {{"host_update_gbps", host_gbps},
          {"host_copy", {{"pageable_to_aligned_gbps", 5.0}, {"aligned_to_pageable_gbps", 5.0}}},
          {"nvme", {{"read_gbps", read_gbps}, {"write_gbps", write_gbps}, {"engine", "uring"}}},
          {"device", nullptr},
          {"cpu_gflops", cpu_gflops}};
}

struct Plan {
  CommandResult run;
  json result;
};

Plan plan(const TempDir& dir, const std::string& name, const json& config,
          const json& tiers_json = tiers(10, 100, 2, 1)) {
  const std::string config_path = write_json(dir, name + ".json", config);
  const std::string tiers_path = write_json(dir, name + ".tiers.json", tiers_json);
  Plan p;
  p.run = run_dsinf("plan " + config_path + " --tiers " + tiers_path + " --json", dir.path());
  const std::vector<json> lines = json_lines(p.run.out);
  EXPECT_EQ(lines.size(), 1u) << p.run.out;
  if (!lines.empty()) p.result = lines.back();
  return p;
}

json class_entry(const json& result, const std::string& name) {
  for (const json& c : result["classes"]) {
    if (c["class"] == name) return c;
  }
  return nullptr;
}

void expect_class(const json& result, const std::string& name, const std::string& tier,
                  size_t bytes) {
  SCOPED_TRACE(name);
  const json c = class_entry(result, name);
  ASSERT_FALSE(c.is_null()) << result["classes"].dump();
  EXPECT_EQ(c["tier"], tier);
  EXPECT_EQ(c["bytes"].get<size_t>(), bytes);
}

TEST(Plan, LayoutRuleOfTheTestModel) {
  // The rule above by hand: embed (256*24 + 16*24) floats = 26112 B -> 7 pages;
  // a block 7272 floats with padding = 29088 B -> 8 pages; ln_f 224 B -> 1 page.
  const Model m = model();
  EXPECT_EQ(m.chunks, (std::vector<size_t>{28672, 32768, 32768, 4096}));
  EXPECT_EQ(m.elements, (std::vector<size_t>{6528, 7272, 7272, 56}));
  EXPECT_EQ(m.params, 256u * 24 + 16 * 24 + 2 * (12 * 24 * 24 + 13 * 24) + 2 * 24);
}

TEST(Plan, Stage0KeepsEveryClassOnTheDevice) {
  TempDir dir;
  const Model m = model();
  const Plan p = plan(dir, "s0", base_config(dir));
  ASSERT_EQ(p.run.exit_code, 0) << p.run.err;
  const json& r = p.result;
  EXPECT_EQ(r["params"].get<size_t>(), m.params);
  EXPECT_EQ(
      r["placement"],
      json({{"params", "device"},
                  {"grads", "device"},
                  {"optimizer", "device"},
                  {"stage", 0},
                  {"working_dtype", "fp32"}}));
  expect_class(r, "params", "device", m.total());
  expect_class(r, "grads", "device", m.total());
  expect_class(r, "adam_m", "device", m.total());
  expect_class(r, "adam_v", "device", m.total());
  EXPECT_TRUE(class_entry(r, "master").is_null()) << "fp32 params are the master copy";
  const json& dev = r["bytes"]["device"];
  EXPECT_EQ(dev["resident"].get<size_t>(), 4 * m.total());
  EXPECT_EQ(dev["slots"].get<size_t>(), 0u);
  EXPECT_EQ(dev["total"].get<size_t>(), dev["activations"].get<size_t>() + 4 * m.total());
  EXPECT_EQ(dev["min_budget"], dev["total"]);
  EXPECT_LT(dev["activations_with_checkpointing"].get<size_t>(),
            dev["activations_without_checkpointing"].get<size_t>());
  EXPECT_EQ(dev["activations"], dev["activations_without_checkpointing"]);
  EXPECT_EQ(r["bytes"]["host"]["total"].get<size_t>(), 0u);
  EXPECT_EQ(r["bytes"]["nvme"]["total"].get<size_t>(), 0u);
  EXPECT_EQ(r["predicted"]["components"]["nvme_read_s"].get<double>(), 0.0);
  EXPECT_EQ(r["predicted"]["bound"], "cpu");
  EXPECT_EQ(r["predicted"]["tiers_source"], "file");
  // Human text went to stderr.
  EXPECT_NE(p.run.err.find("predicted step time"), std::string::npos) << p.run.err;
}

TEST(Plan, Stage2OffloadsGradientsAndOptimizerToTheHost) {
  TempDir dir;
  const Model m = model();
  json config = stage2_cpu(dir);
  config["zero_optimization"]["offload_optimizer"]["pin_memory"] = false;
  const Plan p = plan(dir, "s2", config);
  ASSERT_EQ(p.run.exit_code, 0) << p.run.err;
  const json& r = p.result;
  EXPECT_EQ(r["placement"]["stage"], 2);
  expect_class(r, "params", "device", m.total());
  expect_class(r, "grads", "host", m.total());
  expect_class(r, "master", "host", m.total());
  expect_class(r, "adam_m", "host", m.total());
  expect_class(r, "adam_v", "host", m.total());
  const json& host = r["bytes"]["host"];
  EXPECT_EQ(host["classes"].get<size_t>(), 4 * m.total());
  EXPECT_EQ(host["staging"].get<size_t>(), m.largest());  // one gradient visit
  EXPECT_EQ(host["total"].get<size_t>(), 4 * m.total() + m.largest());
  EXPECT_EQ(host["pinned"], false);
  const json& dev = r["bytes"]["device"];
  EXPECT_EQ(dev["resident"].get<size_t>(), m.total());
  EXPECT_EQ(dev["total"].get<size_t>(), dev["activations"].get<size_t>() + m.total());
  EXPECT_EQ(r["bytes"]["nvme"]["total"].get<size_t>(), 0u);
}

TEST(Plan, Stage3NvmeStreamsParamsAndSwapsTheOptimizer) {
  TempDir dir;
  const Model m = model();
  json config = stage3_nvme(dir);
  config["model"]["activation_checkpointing"] = true;
  const Plan p = plan(dir, "s3", config);
  ASSERT_EQ(p.run.exit_code, 0) << p.run.err;
  const json& r = p.result;
  EXPECT_EQ(r["placement"],
            json({{"params", "nvme"},
                  {"grads", "host"},
                  {"optimizer", "nvme"},
                  {"stage", 3},
                  {"working_dtype", "fp32"}}));
  expect_class(r, "params", "nvme", m.total());
  expect_class(r, "grads", "host", m.total());
  expect_class(r, "adam_m", "nvme", m.total());
  expect_class(r, "adam_v", "nvme", m.total());
  EXPECT_TRUE(class_entry(r, "master").is_null()) << "params and master share NVMe";
  const json& nvme = r["bytes"]["nvme"];
  EXPECT_EQ(nvme["total"].get<size_t>(), 3 * m.total());
  ASSERT_EQ(nvme["paths"].size(), 1u);
  EXPECT_EQ(nvme["paths"][0]["bytes"].get<size_t>(), 3 * m.total());
  EXPECT_EQ(nvme["paths"][0]["path"], dir / "swap");
  const json& host = r["bytes"]["host"];
  EXPECT_EQ(host["classes"].get<size_t>(), m.total());
  // Staging (placement.cc's rule): master, m and v of two chunks (one computing,
  // one in flight); one gradient visit; one parameter chunk per device slot plus
  // one for writing new weights back.
  EXPECT_EQ(host["staging"].get<size_t>(), (6 + 1 + 4 + 1) * m.largest());
  const json& dev = r["bytes"]["device"];
  EXPECT_EQ(dev["activations"], dev["activations_with_checkpointing"]);
  EXPECT_EQ(dev["resident"].get<size_t>(), 0u);
  EXPECT_EQ(dev["slot_bytes"].get<size_t>(), m.largest());
  EXPECT_EQ(dev["slots"].get<size_t>(), 4u);  // buffer_count 5, but only 4 chunks
  EXPECT_EQ(dev["total"].get<size_t>(), dev["activations"].get<size_t>() + 4 * m.largest());
  EXPECT_EQ(dev["min_budget"].get<size_t>(), dev["activations"].get<size_t>() + m.largest());
  // Bytes over NVMe per step: 2 micro-batches each read every chunk twice and
  // the embedding once more; the optimizer reads and writes master, m and v.
  const double gas = 2;
  EXPECT_EQ(r["predicted"]["nvme_read_bytes"].get<double>(),
            gas * (2.0 * m.total() + m.chunks[0]) + 3.0 * m.total());
  EXPECT_EQ(r["predicted"]["nvme_write_bytes"].get<double>(), 3.0 * m.total());
  EXPECT_EQ(host["cache"].get<size_t>(), 0u);

  // DeepSpeed's default max_in_cpu (1e9 elements) keeps every parameter chunk on
  // the host too: the visits read no NVMe, and the optimizer updates the
  // weights in that cache, so only m and v go over NVMe.
  json cached = stage3_nvme(dir);
  cached["zero_optimization"]["offload_param"].erase("max_in_cpu");
  const Plan pc = plan(dir, "cached", cached);
  ASSERT_EQ(pc.run.exit_code, 0) << pc.run.err;
  const json& c = pc.result;
  EXPECT_EQ(c["bytes"]["host"]["cache"].get<size_t>(), m.total());
  EXPECT_EQ(c["bytes"]["host"]["cached_chunks"].get<size_t>(), m.chunks.size());
  EXPECT_EQ(c["predicted"]["nvme_read_bytes"].get<double>(), 2.0 * m.total());
  EXPECT_EQ(c["predicted"]["nvme_write_bytes"].get<double>(), 2.0 * m.total());
}

TEST(Plan, PredictedStepNamesTheBoundingResource) {
  TempDir dir;
  const Model m = model();
  const json config = stage3_nvme(dir);
  const double tokens = 2 * 2 * T;  // train_batch_size x n_positions
  const double compute_s = 6.0 * m.params * tokens / 100e9;
  const double adam_s = 28.0 * m.params / 10e9;
  const double read_bytes = 2 * (2.0 * m.total() + m.chunks[0]) + 3.0 * m.total();
  const double write_bytes = 3.0 * m.total();
  struct Case {
    const char* name;
    double read_gbps, write_gbps;
    const char* bound;
  };
  for (const Case& c : {Case{"slow", 1e-6, 1e-6, "nvme_read"}, Case{"fast", 1e3, 1e3, "cpu"},
                        Case{"slow_write", 1e3, 1e-7, "nvme_write"}}) {
    SCOPED_TRACE(c.name);
    const Plan p = plan(dir, c.name, config, tiers(10, 100, c.read_gbps, c.write_gbps));
    ASSERT_EQ(p.run.exit_code, 0) << p.run.err;
    const json& pred = p.result["predicted"];
    EXPECT_EQ(pred["bound"], c.bound);
    const json& comp = pred["components"];
    EXPECT_NEAR(comp["compute_s"].get<double>(), compute_s, 1e-9 * compute_s);
    EXPECT_NEAR(comp["adam_s"].get<double>(), adam_s, 1e-9 * adam_s);
    const double read_s = read_bytes / (c.read_gbps * 1e9);
    const double write_s = write_bytes / (c.write_gbps * 1e9);
    EXPECT_NEAR(comp["nvme_read_s"].get<double>(), read_s, 1e-9 * read_s);
    EXPECT_NEAR(comp["nvme_write_s"].get<double>(), write_s, 1e-9 * write_s);
    const double cpu_s = compute_s + adam_s;
    const double step = std::max({cpu_s, read_s, write_s});
    EXPECT_NEAR(pred["step_s"].get<double>(), step, 1e-9 * step);
    const double serial = cpu_s + read_s + write_s;
    EXPECT_NEAR(pred["serial_s"].get<double>(), serial, 1e-9 * serial);
    EXPECT_EQ(pred["tiers_source"], "file");
    EXPECT_EQ(pred["cpu_gflops_source"], "file");
  }
  // Without NVMe figures the NVMe terms are unknown, not zero.
  json no_nvme = tiers(10, 100, 1, 1);
  no_nvme["nvme"] = nullptr;
  const Plan p = plan(dir, "no_nvme", config, no_nvme);
  ASSERT_EQ(p.run.exit_code, 0) << p.run.err;
  EXPECT_TRUE(p.result["predicted"]["components"]["nvme_read_s"].is_null());
  EXPECT_EQ(p.result["predicted"]["bound"], "cpu");
  EXPECT_NE(p.run.err.find("not measured"), std::string::npos) << p.run.err;
}

// The message plan gives for a budget too small is the one train gives, and
// the least budget it names trains.
TEST(Plan, TooSmallDeviceBudgetExitsTwoWithTrainsMessageAndTheLeastBudgetTrains) {
  TempDir dir;
  for (const json& base : {base_config(dir), stage3_nvme(dir)}) {
    const bool streamed = base.contains("zero_optimization");
    SCOPED_TRACE(streamed ? "stage 3 nvme" : "stage 0");
    const Plan free_plan = plan(dir, "free", base);
    ASSERT_EQ(free_plan.run.exit_code, 0) << free_plan.run.err;
    const size_t least = free_plan.result["bytes"]["device"]["min_budget"].get<size_t>();

    json small = base;
    small["memory"] = {{"device_budget_bytes", least - 4096}};
    const std::string small_path = write_json(dir, "small.json", small);
    const std::string tiers_path = write_json(dir, "t.json", tiers(10, 100, 1, 1));
    const CommandResult refused =
        run_dsinf("plan " + small_path + " --tiers " + tiers_path + " --json", dir.path());
    EXPECT_EQ(refused.exit_code, 2);
    EXPECT_TRUE(refused.out.empty()) << refused.out;
    EXPECT_NE(refused.err.find("memory.device_budget_bytes"), std::string::npos) << refused.err;
    EXPECT_NE(refused.err.find(std::to_string(least)), std::string::npos) << refused.err;
    const CommandResult train_refused = run_dsinf("train " + small_path, dir.path());
    EXPECT_EQ(train_refused.exit_code, 2);
    const std::string message = train_refused.err.substr(train_refused.err.find("dsinf: "));
    EXPECT_NE(refused.err.find(message), std::string::npos) << "plan:\n"
                                                            << refused.err << "train:\n"
                                                            << train_refused.err;
    EXPECT_FALSE(fs::exists(dir / "out"));

    json exact = base;
    exact["memory"] = {{"device_budget_bytes", least}};
    const Plan fits = plan(dir, "exact", exact);
    ASSERT_EQ(fits.run.exit_code, 0) << fits.run.err;
    EXPECT_EQ(fits.result["bytes"]["device"]["total"].get<size_t>(), least);
    if (streamed) {
      EXPECT_EQ(fits.result["bytes"]["device"]["slots"].get<size_t>(), 1u);
    }
    const CommandResult trained =
        run_dsinf("train " + write_json(dir, "exact.json", exact), dir.path());
    EXPECT_EQ(trained.exit_code, 0) << trained.err;
    fs::remove_all(dir / "out");
  }
}

// stage3_max_live_parameters: the shared slots hold at most that many elements
// (slots x the largest streamed chunk); below one chunk the plan is refused
// naming the key and the least value, by plan and train alike.
TEST(Plan, MaxLiveParametersBoundsTheSlotsAndBelowOneChunkIsRefused) {
  TempDir dir;
  const Model m = model();
  const size_t largest = 7272;  // a block's elements
  struct Case {
    size_t max_live, slots;
  };
  for (const Case& c : {Case{1000000000, 4}, Case{4 * largest, 4}, Case{3 * largest + 1, 3},
                        Case{2 * largest, 2}, Case{2 * largest - 1, 1}, Case{largest, 1}}) {
    SCOPED_TRACE(c.max_live);
    json config = stage3_nvme(dir);
    config["zero_optimization"]["stage3_max_live_parameters"] = c.max_live;
    const Plan p = plan(dir, "live", config);
    ASSERT_EQ(p.run.exit_code, 0) << p.run.err;
    const json& dev = p.result["bytes"]["device"];
    EXPECT_EQ(dev["slots"].get<size_t>(), c.slots);
    EXPECT_EQ(dev["slot_elements"].get<size_t>(), largest);
    EXPECT_EQ(dev["total"].get<size_t>(), dev["activations"].get<size_t>() + c.slots * m.largest());
    EXPECT_NE(p.run.err.find("stage3_max_live_parameters"), std::string::npos) << p.run.err;
  }

  // The plan itself: kInvalidArgument, the key first, the least value last.
  trainer::Config config;
  config.model.n_layer = L;
  config.model.n_head = NH;
  config.model.n_embd = C;
  config.model.n_positions = T;
  config.model.vocab_size = V;
  config.zero.stage = 3;
  config.zero.offload_param.device = trainer::OffloadDevice::kCpu;
  config.zero.stage3_max_live_parameters = largest - 1;
  const absl::StatusOr<actors::MemoryPlan> refused = actors::plan_memory(
      trainer::place(config), {}, trainer::Gpt2Model::make_layouts(config.model), 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(refused.status().message(),
                               "zero_optimization.stage3_max_live_parameters: 7271 elements"))
      << refused.status();
  EXPECT_TRUE(
      absl::EndsWith(refused.status().message(), "the least value that trains this config is 7272"))
      << refused.status();

  // Through the binary: exit 2, plan's message is train's, nothing trained.
  json small = stage3_nvme(dir);
  small["zero_optimization"]["stage3_max_live_parameters"] = largest - 1;
  const std::string small_path = write_json(dir, "small_live.json", small);
  const CommandResult plan_refused =
      run_dsinf("plan " + small_path + " --tiers " +
                    write_json(dir, "t.json", tiers(10, 100, 1, 1)) + " --json",
                dir.path());
  EXPECT_EQ(plan_refused.exit_code, 2);
  EXPECT_TRUE(plan_refused.out.empty()) << plan_refused.out;
  const CommandResult train_refused = run_dsinf("train " + small_path, dir.path());
  EXPECT_EQ(train_refused.exit_code, 2);
  for (const CommandResult* r : {&plan_refused, &train_refused}) {
    EXPECT_NE(r->err.find("zero_optimization.stage3_max_live_parameters: 7271"), std::string::npos)
        << r->err;
    EXPECT_NE(r->err.find("the least value that trains this config is 7272"), std::string::npos)
        << r->err;
  }
  const std::string message = train_refused.err.substr(train_refused.err.find("dsinf: "));
  EXPECT_NE(plan_refused.err.find(message), std::string::npos) << "plan:\n"
                                                               << plan_refused.err << "train:\n"
                                                               << train_refused.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// stage3_param_persistence_threshold: smaller chunks get a device slot of their
// own (counted in the device plan and the least budget) and are read once a step
// instead of at every visit; the others share the slots.
TEST(Plan, ChunksBelowThePersistenceThresholdGetSlotsOfTheirOwn) {
  TempDir dir;
  const Model m = model();
  const Plan streamed = plan(dir, "streamed", stage3_nvme(dir));
  ASSERT_EQ(streamed.run.exit_code, 0) << streamed.run.err;
  const json& sdev = streamed.result["bytes"]["device"];
  EXPECT_EQ(sdev["persistent_chunks"].get<size_t>(), 0u);
  EXPECT_EQ(sdev["persistent"].get<size_t>(), 0u);
  const size_t act = sdev["activations"].get<size_t>();

  // ln_f (56 elements) stays; embed and the blocks share 3 slots.
  json config = stage3_nvme(dir);
  config["zero_optimization"]["stage3_param_persistence_threshold"] = 100;
  const Plan p = plan(dir, "persist", config);
  ASSERT_EQ(p.run.exit_code, 0) << p.run.err;
  const json& dev = p.result["bytes"]["device"];
  EXPECT_EQ(dev["persistent_chunks"].get<size_t>(), 1u);
  EXPECT_EQ(dev["persistent"].get<size_t>(), m.chunks[3]);
  EXPECT_EQ(dev["slots"].get<size_t>(), 3u);
  EXPECT_EQ(dev["slot_bytes"].get<size_t>(), m.largest());
  EXPECT_EQ(dev["total"].get<size_t>(), act + 3 * m.largest() + m.chunks[3]);
  EXPECT_EQ(dev["min_budget"].get<size_t>(), act + m.largest() + m.chunks[3]);
  // Its NVMe read buffer is staged on the host.
  EXPECT_EQ(p.result["bytes"]["host"]["staging"].get<size_t>(),
            streamed.result["bytes"]["host"]["staging"].get<size_t>() - m.largest() + m.chunks[3]);
  // Read once a step (after its update), not twice per micro-batch (2 of them).
  EXPECT_EQ(streamed.result["predicted"]["nvme_read_bytes"].get<double>() -
                p.result["predicted"]["nvme_read_bytes"].get<double>(),
            2.0 * 2 * m.chunks[3] - m.chunks[3]);
  EXPECT_NE(p.run.err.find("stage3_param_persistence_threshold"), std::string::npos) << p.run.err;

  // Below the least budget: refused naming what it holds; at it, it trains.
  json small = config;
  small["memory"] = {{"device_budget_bytes", act + m.largest() + m.chunks[3] - 4096}};
  const CommandResult refused =
      run_dsinf("train " + write_json(dir, "small.json", small), dir.path());
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("memory.device_budget_bytes"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("stage3_param_persistence_threshold"), std::string::npos)
      << refused.err;
  json exact = config;
  exact["memory"] = {{"device_budget_bytes", act + m.largest() + m.chunks[3]}};
  const CommandResult trained =
      run_dsinf("train " + write_json(dir, "exact.json", exact), dir.path());
  EXPECT_EQ(trained.exit_code, 0) << trained.err;
  fs::remove_all(dir / "out");

  // Every chunk below it: no shared slot at all.
  json all = stage3_nvme(dir);
  all["zero_optimization"]["stage3_param_persistence_threshold"] = 1000000;
  const Plan pa = plan(dir, "all", all);
  ASSERT_EQ(pa.run.exit_code, 0) << pa.run.err;
  const json& adev = pa.result["bytes"]["device"];
  EXPECT_EQ(adev["persistent_chunks"].get<size_t>(), m.chunks.size());
  EXPECT_EQ(adev["persistent"].get<size_t>(), m.total());
  EXPECT_EQ(adev["slots"].get<size_t>(), 0u);
  EXPECT_EQ(adev["total"].get<size_t>(), act + m.total());
  EXPECT_EQ(adev["min_budget"].get<size_t>(), act + m.total());
}

TEST(Plan, TooSmallHostBudgetExitsTwoNamingIt) {
  TempDir dir;
  const Model m = model();
  json config = stage2_cpu(dir);
  config["memory"] = {{"host_budget_bytes", 4096}};
  const CommandResult r = run_dsinf("plan " + write_json(dir, "host.json", config) + " --tiers " +
                                        write_json(dir, "t.json", tiers(10, 100, 1, 1)) + " --json",
                                    dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("memory.host_budget_bytes"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(4 * m.total() + m.largest())), std::string::npos) << r.err;
}

TEST(Plan, BadTiersFileExitsTwoNamingIt) {
  TempDir dir;
  const std::string config = write_json(dir, "c.json", base_config(dir));
  json no_host = tiers(10, 100, 1, 1);
  no_host.erase("host_update_gbps");
  json bad_nvme = tiers(10, 100, 1, 1);
  bad_nvme["nvme"]["read_gbps"] = -1;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"garbage.json", "{not json"},
      {"array.json", "[1, 2]"},
      {"no_host.json", no_host.dump()},
      {"bad_nvme.json", bad_nvme.dump()}};
  for (const auto& [name, text] : cases) {
    SCOPED_TRACE(name);
    write_text(dir / name, text);
    const CommandResult r = run_dsinf("plan " + config + " --tiers " + (dir / name), dir.path());
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.err.find(dir / name), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  const CommandResult missing =
      run_dsinf("plan " + config + " --tiers " + (dir / "absent.json"), dir.path());
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find(dir / "absent.json"), std::string::npos) << missing.err;
}

TEST(Plan, BadArgumentsAndBadConfigExitTwo) {
  TempDir dir;
  const std::string config = write_json(dir, "c.json", base_config(dir));
  EXPECT_EQ(run_dsinf("plan " + config + " --frobnicate", dir.path()).exit_code, 2);
  EXPECT_EQ(run_dsinf("plan", dir.path()).exit_code, 2);
  EXPECT_EQ(run_dsinf("plan " + config + " --tiers", dir.path()).exit_code, 2);
  EXPECT_EQ(run_dsinf("train " + config + " --tiers x.json", dir.path()).exit_code, 2);
  json bad = base_config(dir);
  bad["zero_optimization"] = {{"stage", 1}, {"offload_param", {{"device", "cpu"}}}};
  const CommandResult r = run_dsinf("plan " + write_json(dir, "bad.json", bad) + " --tiers " +
                                        write_json(dir, "t.json", tiers(1, 1, 1, 1)),
                                    dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("zero_optimization.offload_param.device"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(Plan, ReadsTheCacheWhenNoTiersFileIsGiven) {
  TempDir dir;
  fs::create_directories(dir / "cache/dsinf");
  write_text(dir / "cache/dsinf/tiers.json", tiers(20, 50, 1, 1).dump());
  const std::string config = write_json(dir, "c.json", base_config(dir));
  const CommandResult r = run_command(
      "XDG_CACHE_HOME=" + (dir / "cache") + " " + dsinf_binary() + " plan " + config + " --json",
      dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json result = json_lines(r.out).back();
  EXPECT_EQ(result["predicted"]["tiers_source"], "cache");
  EXPECT_EQ(result["predicted"]["host_update_gbps"].get<double>(), 20.0);
  EXPECT_EQ(result["predicted"]["cpu_gflops"].get<double>(), 50.0);
}

// The one test that measures: no tiers file, no cache. A quick host
// measurement and a timed matmul, written to the cache for the next run.
TEST(Plan, MeasuresAndWritesTheCacheWhenThereIsNone) {
  TempDir dir;
  const std::string config = write_json(dir, "c.json", base_config(dir));
  const std::string env = "XDG_CACHE_HOME=" + (dir / "cache") + " ";
  const CommandResult r =
      run_command(env + dsinf_binary() + " plan " + config + " --json", dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json result = json_lines(r.out).back();
  EXPECT_EQ(result["predicted"]["tiers_source"], "measured");
  EXPECT_GT(result["predicted"]["host_update_gbps"].get<double>(), 0);
  EXPECT_GT(result["predicted"]["cpu_gflops"].get<double>(), 0);
  ASSERT_TRUE(fs::exists(dir / "cache/dsinf/tiers.json"));
  const json cached = json::parse(read_text(dir / "cache/dsinf/tiers.json"));
  EXPECT_GT(cached["host_update_gbps"].get<double>(), 0);
  const CommandResult again =
      run_command(env + dsinf_binary() + " plan " + config + " --json", dir.path());
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(json_lines(again.out).back()["predicted"]["tiers_source"], "cache");
}

}  // namespace
}  // namespace dsinf::testing
