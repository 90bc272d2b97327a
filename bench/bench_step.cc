#include "bench/bench_step.h"

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
#include "actors/runtime/runtime.h"
#include "bench/nvme_io.h"
#include "bench/report.h"
#include "bench/timing.h"
#include "kernels/cpu/adam.h"
#include "memory/aligned_buffer.h"
#include "memory/util/format.h"
#include "memory/util/trace.h"
#include "nlohmann/json.hpp"

namespace dsinf::bench {
namespace {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;
using actors::Runtime;

double seconds_between(std::chrono::steady_clock::time_point a,
                       std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// A step's request on tokens that need no data file: the same windows for
// every micro-batch and every run.
actors::StepRequest make_request(const actors::RuntimeSpec& spec, const actors::ModelDef& model,
                                 double lr, bool update) {
  const int B = spec.step.micro_batch, T = model.seq_len();
  const uint32_t V = static_cast<uint32_t>(model.vocab_size());
  actors::StepRequest request;
  request.lr = lr;
  request.update = update;
  for (int64_t micro = 0; micro < spec.step.gradient_accumulation; ++micro) {
    for (int i = 0; i < B * T; ++i) {
      request.inputs.push_back(static_cast<int32_t>((i * 2654435761u) % V));
      request.targets.push_back(static_cast<int32_t>((i * 40503u + 7) % V));
    }
  }
  return request;
}

absl::StatusOr<std::unique_ptr<Runtime>> initialised(const actors::RuntimeSpec& spec,
                                                     const actors::ModelDef& model, uint64_t seed) {
  absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::create(spec, model);
  if (!rt.ok()) return rt.status();
  if (absl::Status s = model.init_random(seed, **rt); !s.ok()) return s;
  return rt;
}

// Compute alone: the same passes with every chunk resident and no budget.
absl::StatusOr<std::unique_ptr<Runtime>> compute_alone_runtime(const actors::RuntimeSpec& spec,
                                                               const actors::ModelDef& model,
                                                               uint64_t seed) {
  actors::RuntimeSpec resident = spec;
  resident.placement = actors::Placement{};
  resident.budgets = actors::MemoryBudgets{};
  return initialised(resident, model, seed);
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
  return median_seconds(steps, [&] {
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
  return median_seconds(steps, [&] {
    for (size_t bytes : chunk_bytes) std::memcpy(dst->data(), src->data(), bytes);
  });
}

// NVMe alone: the step's bytes at the GB/s the config's aio settings reach on
// a file in its nvme_path (written, then read back).
absl::StatusOr<std::pair<double, double>> nvme_alone(const actors::RuntimeSpec& spec,
                                                     uint64_t read_bytes, uint64_t write_bytes,
                                                     std::string* note) {
  if (read_bytes == 0 && write_bytes == 0) return std::pair{0.0, 0.0};
  const actors::Placement& p = spec.placement;
  const std::string path =
      !p.optimizer_paths.empty() ? p.optimizer_paths.front() : p.param_paths.front();
  NvmeRun run;
  run.options = spec.aio;
  const uint64_t mib = uint64_t{1} << 20;
  run.size_bytes =
      std::max<uint64_t>(64 * mib, (std::max(read_bytes, write_bytes) + mib - 1) / mib * mib);
  absl::StatusOr<ScratchDir> dir = ScratchDir::create(path, run.size_bytes);
  if (!dir.ok()) return dir.status();
  absl::StatusOr<NvmeResult> r = measure_nvme(*dir, run, note);
  if (!r.ok()) return r.status();
  return std::pair{static_cast<double>(read_bytes) / (r->read_gbps * 1e9),
                   static_cast<double>(write_bytes) / (r->write_gbps * 1e9)};
}

// What the timed rounds and the traced step measured.
struct Measured {
  double step_s = 0, compute_s = 0;
  std::vector<trace::Span> spans;  // of the traced step
  uint64_t read_bytes = 0, write_bytes = 0;
  std::vector<size_t> copied_in, copied_out;  // chunk bytes the traced step moved
  std::map<int, double> busy;                 // per lane, in the traced step
};

struct Runtimes {
  Runtime& rt;        // the config's
  Runtime& resident;  // compute alone
  const actors::StepRequest& step;
  const actors::StepRequest& passes;
};

absl::Status timed_step(Runtime& rt, const actors::StepRequest& request, int index,
                        const char* note, std::ostream& log) {
  actors::StepRequest r = request;
  r.index = index;
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<actors::StepOutcome> done = rt.step(std::move(r));
  if (!done.ok()) return done.status();
  log << absl::StrFormat("  step %d: %.3f s%s\n", index + 1,
                         seconds_between(t0, std::chrono::steady_clock::now()), note);
  return absl::OkStatus();
}

// Two warm-up steps (the first teaches the prefetcher the order), then
// kRounds rounds of `steps` timed steps, each round followed by as many
// compute-alone passes: this VM's speed drifts over seconds, so each round
// sets a step against compute measured beside it. A round's steps include
// their last optimizer run to its end (its overlap with a next step is not
// counted), so the step time errs high. step_s and compute_s are medians
// over the rounds.
absl::Status run_rounds(Runtimes& r, int steps, int& index, Measured& m, std::ostream& log) {
  constexpr int kRounds = 3;
  for (; index < 2; ++index) {
    if (absl::Status s = timed_step(r.rt, r.step, index, " (warm-up)", log); !s.ok()) return s;
  }
  std::vector<double> round_step_s, round_compute_s;
  for (int round = 0; round < kRounds; ++round) {
    const auto round_start = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i, ++index) {
      if (absl::Status s = timed_step(r.rt, r.step, index, "", log); !s.ok()) return s;
    }
    if (absl::Status s = r.rt.settle(); !s.ok()) return s;
    round_step_s.push_back(seconds_between(round_start, std::chrono::steady_clock::now()) / steps);
    absl::Status failed;
    absl::StatusOr<double> alone =
        median_seconds(steps, [&] { failed.Update(r.resident.step(r.passes).status()); });
    if (!failed.ok()) return failed;
    if (!alone.ok()) return alone.status();
    round_compute_s.push_back(*alone);
    log << absl::StrFormat("  round %d: %.3f s a step, compute alone %.3f s\n", round + 1,
                           round_step_s.back(), round_compute_s.back());
  }
  m.step_s = median(round_step_s);
  m.compute_s = median(round_compute_s);
  return absl::OkStatus();
}

// One step more and a traced one: the trace covers one step and its own
// optimizer run to its end, the previous run over before it starts, so the
// bytes it moved (the NVMe reads ahead and writes included) are exactly one
// step's whatever the timing. Then each lane's busy time in it.
absl::Status traced_step(Runtimes& r, int& index, Measured& m, std::ostream& log) {
  if (absl::Status s = timed_step(r.rt, r.step, index++, "", log); !s.ok()) return s;
  if (absl::Status s = r.rt.settle(); !s.ok()) return s;
  trace::begin_capture();
  const nvme::EngineStats before = r.rt.nvme_stats();
  absl::Status s = timed_step(r.rt, r.step, index++, " (traced)", log);
  if (s.ok()) s = r.rt.settle();
  m.spans = trace::end_capture();
  const nvme::EngineStats after = r.rt.nvme_stats();
  if (!s.ok()) return s;
  m.read_bytes = after.bytes_read - before.bytes_read;
  m.write_bytes = after.bytes_written - before.bytes_written;
  const std::vector<memory::ChunkLayout>& layouts = r.rt.layouts();
  for (const trace::Span& span : m.spans) {
    m.busy[static_cast<int>(span.lane)] += (span.end_ns - span.begin_ns) * 1e-9;
    if (span.chunk < 0 || static_cast<size_t>(span.chunk) >= layouts.size()) continue;
    if (span.lane == trace::Lane::kCopyIn) m.copied_in.push_back(layouts[span.chunk].bytes());
    if (span.lane == trace::Lane::kCopyOut) m.copied_out.push_back(layouts[span.chunk].bytes());
  }
  return absl::OkStatus();
}

// Each resource alone, and the bound: the slowest independent one.
struct Alone {
  double adam = 0, copy_in = 0, copy_out = 0, nvme_read = 0, nvme_write = 0;
  double cpu = 0;  // compute, copies and Adam share the CPU backend's cores
  const char* bound_name = "";
  double bound_s = 0;
};

absl::StatusOr<Alone> measure_alone(const actors::RuntimeSpec& spec, Runtime& rt, const Measured& m,
                                    int steps, std::ostream& log) {
  log << "measuring each resource alone\n";
  const int passes = std::max(2, steps);
  Alone a;
  absl::StatusOr<double> adam = adam_alone(rt.layouts(), passes);
  if (!adam.ok()) return adam.status();
  absl::StatusOr<double> copy_in = copies_alone(m.copied_in, passes);
  if (!copy_in.ok()) return copy_in.status();
  absl::StatusOr<double> copy_out = copies_alone(m.copied_out, passes);
  if (!copy_out.ok()) return copy_out.status();
  std::string note;
  absl::StatusOr<std::pair<double, double>> nvme =
      nvme_alone(spec, m.read_bytes, m.write_bytes, &note);
  if (!nvme.ok()) return nvme.status();
  if (!note.empty()) log << "note: " << note << "\n";
  a = {*adam, *copy_in, *copy_out, nvme->first, nvme->second};
  a.cpu = m.compute_s + a.copy_in + a.copy_out + a.adam;
  const std::pair<const char*, double> bounds[] = {
      {"cpu (compute + copies + adam share the cores)", a.cpu},
      {"nvme read", a.nvme_read},
      {"nvme write", a.nvme_write}};
  const auto* bound =
      std::max_element(std::begin(bounds), std::end(bounds),
                       [](const auto& x, const auto& y) { return x.second < y.second; });
  a.bound_name = bound->first;
  a.bound_s = bound->second;
  return a;
}

absl::StatusOr<std::string> write_trace(const BenchStepRun& run, const BenchStepOptions& options,
                                        const std::vector<trace::Span>& spans) {
  const std::string path =
      !options.trace_path.empty()
          ? options.trace_path
          : (fs::path(run.trace_dir.empty() ? "." : run.trace_dir) / "step-trace.json").string();
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  std::ofstream out(path, std::ios::trunc);
  out << trace::chrome_trace_json(spans);
  if (!out) return absl::InvalidArgumentError(absl::StrCat("--trace ", path, ": cannot write"));
  return path;
}

size_t sum(const std::vector<size_t>& v) {
  size_t total = 0;
  for (size_t b : v) total += b;
  return total;
}

void print_table(const Measured& m, const Alone& a, std::ostream& log) {
  auto busy = [&](trace::Lane l) {
    auto it = m.busy.find(static_cast<int>(l));
    return format_fixed(it == m.busy.end() ? 0.0 : it->second, 3);
  };
  TextTable table({"resource", "alone (s)", "busy in step (s)", "moved per step"});
  table.add_row({"compute", format_fixed(m.compute_s, 3), busy(trace::Lane::kCompute), ""});
  table.add_row({"copy in", format_fixed(a.copy_in, 3), busy(trace::Lane::kCopyIn),
                 util::format_bytes(sum(m.copied_in))});
  table.add_row({"copy out", format_fixed(a.copy_out, 3), busy(trace::Lane::kCopyOut),
                 util::format_bytes(sum(m.copied_out))});
  table.add_row({"cpu adam", format_fixed(a.adam, 3), busy(trace::Lane::kAdam), ""});
  table.add_row({"nvme read", format_fixed(a.nvme_read, 3), busy(trace::Lane::kNvmeRead),
                 util::format_bytes(m.read_bytes)});
  table.add_row({"nvme write", format_fixed(a.nvme_write, 3), busy(trace::Lane::kNvmeWrite),
                 util::format_bytes(m.write_bytes)});
  log << table.render();
}

// Model FLOPs (PaLM's accounting, as MFU is usually reported) over the step
// time, and MFU against the GPU's dense bf16 peak where there is one.
struct Throughput {
  double tokens_per_s = 0, flops_per_token = 0, tflops = 0, peak_tflops = 0, mfu = 0;
  std::string peak_source;
};

Throughput throughput(const actors::RuntimeSpec& spec, const actors::ModelDef& model, Runtime& rt,
                      double step_s) {
  Throughput t;
  const double tokens_per_step = static_cast<double>(spec.step.micro_batch) *
                                 static_cast<double>(spec.step.gradient_accumulation) *
                                 model.seq_len();
  t.flops_per_token = model.flops_per_token();
  t.tokens_per_s = tokens_per_step / step_s;
  t.tflops = t.flops_per_token * t.tokens_per_s / 1e12;
  t.peak_source = "no tensor-core peak for the " + rt.backend().name() + " backend";
  if (rt.cuda_device() && rt.cuda_device()->peak_bf16_tflops > 0) {
    t.peak_tflops = rt.cuda_device()->peak_bf16_tflops;
    t.peak_source =
        absl::StrFormat("%s dense bf16 peak %.1f TFLOP/s", rt.cuda_device()->name, t.peak_tflops);
  }
  t.mfu = t.peak_tflops > 0 ? t.tflops / t.peak_tflops : 0;
  return t;
}

json result_json(const Measured& m, const Alone& a, const Throughput& t, Runtime& rt, int steps,
                 const std::string& trace_path) {
  json components = {{"compute_s", m.compute_s},   {"copy_in_s", a.copy_in},
                     {"copy_out_s", a.copy_out},   {"adam_s", a.adam},
                     {"nvme_read_s", a.nvme_read}, {"nvme_write_s", a.nvme_write}};
  json busy = json::object();
  for (int l = 0; l < trace::kNumLanes; ++l) {
    auto it = m.busy.find(l);
    busy[trace::lane_name(static_cast<trace::Lane>(l))] = it == m.busy.end() ? 0.0 : it->second;
  }
  const json peak = t.peak_tflops > 0 ? json(t.peak_tflops) : json(nullptr);
  return {{"step_s", m.step_s},
          {"bound_s", a.bound_s},
          {"ratio", m.step_s / a.bound_s},
          {"bound", a.bound_name},
          {"components", components},
          {"busy_in_step_s", busy},
          {"bytes_per_step",
           {{"copy_in", sum(m.copied_in)},
            {"copy_out", sum(m.copied_out)},
            {"nvme_read", m.read_bytes},
            {"nvme_write", m.write_bytes}}},
          {"steps", steps},
          {"device", rt.device_description()},
          {"tokens_per_s", t.tokens_per_s},
          {"flops_per_token", t.flops_per_token},
          {"tflops", t.tflops},
          {"peak_tflops", peak},
          {"mfu", t.peak_tflops > 0 ? json(t.mfu) : json(nullptr)},
          {"trace", trace_path}};
}

void report(const Measured& m, const Alone& a, const Throughput& t, const std::string& trace_path,
            int steps, std::ostream& log) {
  print_table(m, a, log);
  auto wait = m.busy.find(static_cast<int>(trace::Lane::kWait));
  log << absl::StrFormat(
      "step %.3f s (median of 3 rounds of %d) | bound %.3f s: %s | ratio %.2f | model waited "
      "%.3f s for chunks | trace %s\n",
      m.step_s, steps, a.bound_s, a.bound_name, m.step_s / a.bound_s,
      wait == m.busy.end() ? 0.0 : wait->second, trace_path);
  log << absl::StrFormat("%.0f tokens/s | %.3f TFLOP/s achieved (%.0f FLOP a token) | MFU %s\n",
                         t.tokens_per_s, t.tflops, t.flops_per_token,
                         t.peak_tflops > 0
                             ? absl::StrFormat("%.1f%% of the %s", 100 * t.mfu, t.peak_source)
                             : "n/a: " + t.peak_source);
}

}  // namespace

absl::Status run_bench_step(const actors::RuntimeSpec& spec, const actors::ModelDef& model,
                            const BenchStepRun& run, const BenchStepOptions& options) {
  std::ostream& log = options.json ? std::cerr : std::cout;
  absl::StatusOr<std::unique_ptr<Runtime>> rt = initialised(spec, model, run.seed);
  if (!rt.ok()) return rt.status();
  log << absl::StrFormat("device %s\n", (*rt)->device_description());
  log << absl::StrFormat("bench step %s: %d parameters, batch %d = %d x %d, %s\n", run.name,
                         model.num_parameters(),
                         spec.step.micro_batch * spec.step.gradient_accumulation,
                         spec.step.micro_batch, spec.step.gradient_accumulation, run.placement);
  absl::StatusOr<std::unique_ptr<Runtime>> resident = compute_alone_runtime(spec, model, run.seed);
  if (!resident.ok()) return resident.status();
  // The real step: the trainer actor runs it, as in `dsinf train`.
  const actors::StepRequest step = make_request(spec, model, run.lr, /*update=*/true);
  const actors::StepRequest passes = make_request(spec, model, run.lr, /*update=*/false);
  Runtimes runtimes{**rt, **resident, step, passes};
  Measured m;
  int index = 0;
  if (absl::Status s = run_rounds(runtimes, options.steps, index, m, log); !s.ok()) return s;
  if (absl::Status s = traced_step(runtimes, index, m, log); !s.ok()) return s;
  absl::StatusOr<Alone> alone = measure_alone(spec, **rt, m, options.steps, log);
  if (!alone.ok()) return alone.status();
  absl::StatusOr<std::string> trace_path = write_trace(run, options, m.spans);
  if (!trace_path.ok()) return trace_path.status();
  const Throughput t = throughput(spec, model, **rt, m.step_s);
  report(m, *alone, t, *trace_path, options.steps, log);
  if (options.json) {
    std::cout << result_json(m, *alone, t, **rt, options.steps, *trace_path).dump() << "\n";
  }
  return absl::OkStatus();
}

}  // namespace dsinf::bench
