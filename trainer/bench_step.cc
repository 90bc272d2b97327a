#include "trainer/bench_step.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actors/trainer.h"
#include "bench/nvme_io.h"
#include "bench/report.h"
#include "bench/timing.h"
#include "kernels/cpu/adam.h"
#include "memory/aligned_buffer.h"
#include "memory/util/trace.h"
#include "memory/util/format.h"
#include "nlohmann/json.hpp"
#include "trainer/optimizer.h"
#include "trainer/runtime.h"
#include "trainer/train_step.h"

namespace dsinf::trainer {
namespace {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

double seconds_between(std::chrono::steady_clock::time_point a,
                       std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Tokens that need no data file: the same windows every run.
struct Tokens {
  std::vector<int32_t> inputs, targets;
  Tokens(int B, int T, int V) {
    for (int i = 0; i < B * T; ++i) {
      inputs.push_back(static_cast<int32_t>((i * 2654435761u) % static_cast<uint32_t>(V)));
      targets.push_back(static_cast<int32_t>((i * 40503u + 7) % static_cast<uint32_t>(V)));
    }
  }
  // Every micro-batch gets the same windows.
  NextBatch next_batch() const {
    return [this](int32_t* in, int32_t* out) {
      std::copy(inputs.begin(), inputs.end(), in);
      std::copy(targets.begin(), targets.end(), out);
    };
  }
};

// Compute alone: the same passes with every chunk resident and no budget.
absl::StatusOr<Runtime> compute_alone_runtime(const Config& config) {
  Config resident = config;
  resident.zero = ZeroConfig{};
  resident.memory = MemoryConfig{};
  absl::StatusOr<Runtime> rt = make_runtime(resident, /*with_optimizer=*/false);
  if (!rt.ok()) return rt.status();
  if (absl::Status s = rt->model->init_random(config.model.seed); !s.ok()) return s;
  return rt;
}

absl::StatusOr<double> compute_alone(Runtime& rt, const Config& config, const Tokens& tokens,
                                     int passes_wanted) {
  absl::Status failed;
  absl::StatusOr<double> seconds = bench::median_seconds(passes_wanted, [&] {
    failed.Update(forward_backward(rt, config, tokens.next_batch()).status());
  });
  if (!failed.ok()) return failed;
  return seconds;
}

// CPU Adam alone: the fused step over every parameter chunk's elements.
absl::StatusOr<double> adam_alone(const std::vector<memory::ChunkLayout>& layouts, int steps) {
  size_t n = 0;
  for (const memory::ChunkLayout& l : layouts) n += l.numel_padded();
  std::vector<absl::StatusOr<memory::AlignedBuffer>> arrays;
  for (int i = 0; i < 4; ++i) arrays.push_back(memory::AlignedBuffer::allocate(n * sizeof(float)));
  for (const auto& a : arrays) {
    if (!a.ok()) return a.status();
  }
  kernels::cpu::AdamBuffers b;
  b.n = n;
  b.params = reinterpret_cast<float*>(arrays[0]->data());
  b.grads = arrays[1]->data();
  b.m = arrays[2]->data();
  b.v = arrays[3]->data();
  int64_t step = 0;
  return bench::median_seconds(steps, [&] {
    kernels::AdamHyper h;
    h.step = ++step;
    kernels::cpu::fused_adam_step(b, h);
  });
}

// A memcpy of each chunk the step moved, between two host buffers.
absl::StatusOr<double> copies_alone(const std::vector<size_t>& chunk_bytes, int steps) {
  if (chunk_bytes.empty()) return 0.0;
  const size_t largest = *std::max_element(chunk_bytes.begin(), chunk_bytes.end());
  absl::StatusOr<memory::AlignedBuffer> src = memory::AlignedBuffer::allocate(largest);
  absl::StatusOr<memory::AlignedBuffer> dst = memory::AlignedBuffer::allocate(largest);
  if (!src.ok()) return src.status();
  if (!dst.ok()) return dst.status();
  return bench::median_seconds(steps, [&] {
    for (size_t bytes : chunk_bytes) std::memcpy(dst->data(), src->data(), bytes);
  });
}

// NVMe alone: the step's bytes at the GB/s the config's aio block reaches on a
// file in its nvme_path (written, then read back).
absl::StatusOr<std::pair<double, double>> nvme_alone(const Config& config, uint64_t read_bytes,
                                                     uint64_t write_bytes, std::string* note) {
  if (read_bytes == 0 && write_bytes == 0) return std::pair{0.0, 0.0};
  const auto& optimizer_paths = config.zero.offload_optimizer.nvme_path;
  const std::string path = !optimizer_paths.empty() ? optimizer_paths.front()
                                                    : config.zero.offload_param.nvme_path.front();
  bench::NvmeRun run;
  run.options.block_size = static_cast<size_t>(config.aio.block_size);
  run.options.queue_depth = static_cast<int>(config.aio.queue_depth);
  run.options.intra_op_parallelism = static_cast<int>(config.aio.intra_op_parallelism);
  run.options.single_submit = config.aio.single_submit;
  run.options.overlap_events = config.aio.overlap_events;
  const uint64_t mib = uint64_t{1} << 20;
  run.size_bytes =
      std::max<uint64_t>(64 * mib, (std::max(read_bytes, write_bytes) + mib - 1) / mib * mib);
  absl::StatusOr<bench::ScratchDir> dir = bench::ScratchDir::create(path, run.size_bytes);
  if (!dir.ok()) return dir.status();
  absl::StatusOr<bench::NvmeResult> r = bench::measure_nvme(*dir, run, note);
  if (!r.ok()) return r.status();
  return std::pair{static_cast<double>(read_bytes) / (r->read_gbps * 1e9),
                   static_cast<double>(write_bytes) / (r->write_gbps * 1e9)};
}

}  // namespace

absl::Status run_bench_step(const LoadedConfig& loaded, const BenchStepOptions& options) {
  const Config& config = loaded.config;
  std::ostream& log = options.json ? std::cerr : std::cout;
  const int B = static_cast<int>(config.train_micro_batch_size_per_gpu);
  const Tokens tokens(B, config.model.n_positions, config.model.vocab_size);

  absl::StatusOr<Runtime> rt = make_runtime(config, /*with_optimizer=*/true);
  if (!rt.ok()) return rt.status();
  if (absl::Status s = rt->model->init_random(config.model.seed); !s.ok()) return s;
  log << absl::StrFormat("device %s\n", rt->device_description);
  log << absl::StrFormat(
      "bench step %s: %d parameters, batch %d = %d x %d, %s\n", config.source_path,
      rt->model->num_parameters(), config.train_batch_size, B, config.gradient_accumulation_steps,
      rt->offload
          ? absl::StrFormat("zero stage %d: params on %s, optimizer on %s", config.zero.stage,
                            tier_name(rt->placement.params), tier_name(rt->placement.optimizer))
          : std::string("every tensor on the device"));

  // The real step: the trainer actor runs train_step, as `dsinf train` does.
  std::unique_ptr<actors::TrainerActor> trainer =
      actors::TrainerActor::create(*rt->actors, [&](int64_t index) -> absl::Status {
        return train_step(*rt, config, index, config.optimizer.lr, tokens.next_batch()).status();
      });
  absl::StatusOr<Runtime> resident = compute_alone_runtime(config);
  if (!resident.ok()) return resident.status();

  // Two warm-up steps (the first teaches the prefetcher the order), then
  // kRounds rounds of `steps` timed steps, each round followed by as many
  // compute-alone passes: this VM's speed drifts over seconds, so each round
  // sets a step against compute measured beside it. A round's steps include
  // their last optimizer run to its end (its overlap with a next step is not
  // counted), so the step time errs high. step_s and compute_s are medians
  // over the rounds. Then one step more and a traced one: the trace covers a
  // step with the previous step's optimizer run beside it, as in training.
  constexpr int kRounds = 3;
  std::vector<double> round_step_s, round_compute_s;
  std::vector<trace::Span> spans;
  nvme::EngineStats before, after;
  int index = 0;
  for (; index < 2; ++index) {
    const auto t0 = std::chrono::steady_clock::now();
    if (absl::Status s = trainer->step(index); !s.ok()) return s;
    log << absl::StrFormat("  step %d: %.3f s (warm-up)\n", index + 1,
                           seconds_between(t0, std::chrono::steady_clock::now()));
  }
  for (int round = 0; round < kRounds; ++round) {
    const auto round_start = std::chrono::steady_clock::now();
    for (int i = 0; i < options.steps; ++i, ++index) {
      const auto t0 = std::chrono::steady_clock::now();
      if (absl::Status s = trainer->step(index); !s.ok()) return s;
      log << absl::StrFormat("  step %d: %.3f s\n", index + 1,
                             seconds_between(t0, std::chrono::steady_clock::now()));
    }
    if (absl::Status s = rt->settle(); !s.ok()) return s;
    round_step_s.push_back(seconds_between(round_start, std::chrono::steady_clock::now()) /
                           options.steps);
    absl::StatusOr<double> alone = compute_alone(*resident, config, tokens, options.steps);
    if (!alone.ok()) return alone.status();
    round_compute_s.push_back(*alone);
    log << absl::StrFormat("  round %d: %.3f s a step, compute alone %.3f s\n", round + 1,
                           round_step_s.back(), round_compute_s.back());
  }
  const double step_s = bench::median(round_step_s);
  const double compute_s = bench::median(round_compute_s);
  for (int i = 0; i < 2; ++i, ++index) {
    const bool traced = i == 1;
    if (traced) {
      if (rt->offload) before = rt->offload->nvme_stats();
      trace::begin_capture();
    }
    const auto t0 = std::chrono::steady_clock::now();
    absl::Status s = trainer->step(index);
    const double seconds = seconds_between(t0, std::chrono::steady_clock::now());
    if (traced) {
      spans = trace::end_capture();
      if (rt->offload) after = rt->offload->nvme_stats();
    }
    if (!s.ok()) return s;
    log << absl::StrFormat("  step %d: %.3f s%s\n", index + 1, seconds, traced ? " (traced)" : "");
  }

  // What the traced step moved, and each lane's busy time in it.
  const std::vector<memory::ChunkLayout>& layouts = rt->model->layouts();
  std::vector<size_t> copied_in, copied_out;
  std::map<int, double> busy;
  for (const trace::Span& s : spans) {
    busy[static_cast<int>(s.lane)] += (s.end_ns - s.begin_ns) * 1e-9;
    if (s.chunk >= 0 && static_cast<size_t>(s.chunk) < layouts.size()) {
      if (s.lane == trace::Lane::kCopyIn) copied_in.push_back(layouts[s.chunk].bytes());
      if (s.lane == trace::Lane::kCopyOut) copied_out.push_back(layouts[s.chunk].bytes());
    }
  }
  const uint64_t read_bytes = after.bytes_read - before.bytes_read;
  const uint64_t write_bytes = after.bytes_written - before.bytes_written;

  log << "measuring each resource alone\n";
  const int alone_passes = std::max(2, options.steps);
  absl::StatusOr<double> adam = adam_alone(layouts, alone_passes);
  if (!adam.ok()) return adam.status();
  absl::StatusOr<double> copy_in = copies_alone(copied_in, alone_passes);
  if (!copy_in.ok()) return copy_in.status();
  absl::StatusOr<double> copy_out = copies_alone(copied_out, alone_passes);
  if (!copy_out.ok()) return copy_out.status();
  std::string note;
  absl::StatusOr<std::pair<double, double>> nvme =
      nvme_alone(config, read_bytes, write_bytes, &note);
  if (!nvme.ok()) return nvme.status();
  if (!note.empty()) log << "note: " << note << "\n";

  const double cpu_s = compute_s + *copy_in + *copy_out + *adam;
  struct Bound {
    const char* name;
    double seconds;
  };
  const Bound bounds[] = {{"cpu (compute + copies + adam share the cores)", cpu_s},
                          {"nvme read", nvme->first},
                          {"nvme write", nvme->second}};
  const Bound bound =
      *std::max_element(std::begin(bounds), std::end(bounds),
                        [](const Bound& a, const Bound& b) { return a.seconds < b.seconds; });
  const std::string trace_path =
      !options.trace_path.empty()
          ? options.trace_path
          : (fs::path(config.train.output_dir.empty() ? "." : config.train.output_dir) /
             "step-trace.json")
                .string();
  std::error_code ec;
  fs::create_directories(fs::path(trace_path).parent_path(), ec);
  {
    std::ofstream out(trace_path, std::ios::trunc);
    out << trace::chrome_trace_json(spans);
    if (!out)
      return absl::InvalidArgumentError(absl::StrCat("--trace ", trace_path, ": cannot write"));
  }

  bench::TextTable table({"resource", "alone (s)", "busy in step (s)", "moved per step"});
  auto lane_busy = [&](trace::Lane l) { return busy[static_cast<int>(l)]; };
  table.add_row({"compute", bench::format_fixed(compute_s, 3),
                 bench::format_fixed(lane_busy(trace::Lane::kCompute), 3), ""});
  size_t in_bytes = 0, out_bytes = 0;
  for (size_t b : copied_in) in_bytes += b;
  for (size_t b : copied_out) out_bytes += b;
  table.add_row({"copy in", bench::format_fixed(*copy_in, 3),
                 bench::format_fixed(lane_busy(trace::Lane::kCopyIn), 3),
                 util::format_bytes(in_bytes)});
  table.add_row({"copy out", bench::format_fixed(*copy_out, 3),
                 bench::format_fixed(lane_busy(trace::Lane::kCopyOut), 3),
                 util::format_bytes(out_bytes)});
  table.add_row({"cpu adam", bench::format_fixed(*adam, 3),
                 bench::format_fixed(lane_busy(trace::Lane::kAdam), 3), ""});
  table.add_row({"nvme read", bench::format_fixed(nvme->first, 3),
                 bench::format_fixed(lane_busy(trace::Lane::kNvmeRead), 3),
                 util::format_bytes(read_bytes)});
  table.add_row({"nvme write", bench::format_fixed(nvme->second, 3),
                 bench::format_fixed(lane_busy(trace::Lane::kNvmeWrite), 3),
                 util::format_bytes(write_bytes)});
  log << table.render();
  log << absl::StrFormat(
      "step %.3f s (median of %d rounds of %d) | bound %.3f s: %s | ratio %.2f | model waited "
      "%.3f s for chunks | trace %s\n",
      step_s, kRounds, options.steps, bound.seconds, bound.name, step_s / bound.seconds,
      lane_busy(trace::Lane::kWait), trace_path);

  // Model FLOPs (PaLM's accounting, as MFU is usually reported): per token
  // 6 x parameters for the matrix products forward and backward, plus
  // 12 x layers x channels x positions for attention's two products; the
  // recomputation of activation checkpointing is not counted.
  const double T = static_cast<double>(config.model.n_positions);
  const double flops_per_token =
      6.0 * static_cast<double>(rt->model->num_parameters()) +
      12.0 * config.model.n_layer * static_cast<double>(config.model.n_embd) * T;
  const double tokens_per_s = static_cast<double>(config.train_batch_size) * T / step_s;
  const double tflops = flops_per_token * tokens_per_s / 1e12;
  double peak_tflops = 0;
  std::string peak_source = "no tensor-core peak for the " + rt->backend->name() + " backend";
  if (rt->cuda_device && rt->cuda_device->peak_bf16_tflops > 0) {
    peak_tflops = rt->cuda_device->peak_bf16_tflops;
    peak_source =
        absl::StrFormat("%s dense bf16 peak %.1f TFLOP/s", rt->cuda_device->name, peak_tflops);
  }
  const double mfu = peak_tflops > 0 ? tflops / peak_tflops : 0;
  log << absl::StrFormat("%.0f tokens/s | %.3f TFLOP/s achieved (%.0f FLOP a token) | MFU %s\n",
                         tokens_per_s, tflops, flops_per_token,
                         peak_tflops > 0
                             ? absl::StrFormat("%.1f%% of the %s", 100 * mfu, peak_source)
                             : "n/a: " + peak_source);

  json components = {{"compute_s", compute_s},     {"copy_in_s", *copy_in},
                     {"copy_out_s", *copy_out},    {"adam_s", *adam},
                     {"nvme_read_s", nvme->first}, {"nvme_write_s", nvme->second}};
  json busy_json = json::object();
  for (int l = 0; l < trace::kNumLanes; ++l) {
    busy_json[trace::lane_name(static_cast<trace::Lane>(l))] = busy[l];
  }
  if (options.json) {
    std::cout << json{{"step_s", step_s},
                      {"bound_s", bound.seconds},
                      {"ratio", step_s / bound.seconds},
                      {"bound", bound.name},
                      {"components", components},
                      {"busy_in_step_s", busy_json},
                      {"bytes_per_step",
                       {{"copy_in", in_bytes},
                        {"copy_out", out_bytes},
                        {"nvme_read", read_bytes},
                        {"nvme_write", write_bytes}}},
                      {"steps", options.steps},
                      {"device", rt->device_description},
                      {"tokens_per_s", tokens_per_s},
                      {"flops_per_token", flops_per_token},
                      {"tflops", tflops},
                      {"peak_tflops", peak_tflops > 0 ? json(peak_tflops) : json(nullptr)},
                      {"mfu", peak_tflops > 0 ? json(mfu) : json(nullptr)},
                      {"trace", trace_path}}
                     .dump()
              << "\n";
  }
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
