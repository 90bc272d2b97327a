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
#include "actors/uploader.h"
#include "bench/nvme_io.h"
#include "bench/report.h"
#include "bench/timing.h"
#include "kernels/cpu/adam.h"
#include "memory/aligned_buffer.h"
#include "memory/util/format.h"
#include "memory/util/crc32c.h"
#include "memory/util/trace.h"
#include "nvme/swap_store.h"
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

// CPU Adam alone: the fused step over the elements of every chunk it updates
// (a frozen chunk has no optimizer state).
absl::StatusOr<double> adam_alone(const std::vector<memory::ChunkLayout>& layouts, int steps) {
  size_t n = 0;
  for (const memory::ChunkLayout& l : layouts) {
    if (l.trainable()) n += l.numel_padded();
  }
  if (n == 0) return 0.0;
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

// One chunk a step moved between host and device: its bytes in the working
// dtype and its elements.
struct Move {
  size_t bytes = 0, elements = 0;
};

// Host memory the moves alone read from or write to: a ring larger than the
// caches (up to 256 MiB, or the step's bytes), so that no measurement runs
// from a cache the step's own transfers never enjoy. Pinned where the
// backend pins (a GPU's), plain memory where device memory is host memory.
class HostRing {
 public:
  // For pieces of at most `largest` bytes, `total` bytes a pass.
  static absl::StatusOr<HostRing> create(kernels::Backend& backend, size_t largest, size_t total) {
    const size_t bytes = std::max(largest, std::min(total, size_t{256} << 20));
    HostRing ring(bytes);
    if (backend.device_memory_is_host()) {
      absl::StatusOr<memory::AlignedBuffer> plain = memory::AlignedBuffer::allocate(bytes);
      if (!plain.ok()) return plain.status();
      ring.plain_ = std::move(*plain);
      ring.base_ = ring.plain_.data();
      return ring;
    }
    absl::StatusOr<void*> pinned = backend.allocate_pinned_host(bytes);
    if (!pinned.ok()) return pinned.status();
    ring.pinned_by_ = &backend;
    ring.base_ = static_cast<std::byte*>(*pinned);
    return ring;
  }
  HostRing(HostRing&& o) noexcept
      : pinned_by_(o.pinned_by_), plain_(std::move(o.plain_)), base_(o.base_), bytes_(o.bytes_) {
    o.pinned_by_ = nullptr;
  }
  HostRing(const HostRing&) = delete;
  HostRing& operator=(const HostRing&) = delete;
  HostRing& operator=(HostRing&&) = delete;
  ~HostRing() {
    if (pinned_by_ != nullptr) pinned_by_->release_pinned_host(base_);
  }
  // The next `bytes` of the ring (page-aligned; from the start when they would pass its end).
  std::byte* next(size_t bytes) {
    if (at_ + bytes > bytes_) at_ = 0;
    std::byte* p = base_ + at_;
    at_ = (at_ + bytes + 4095) / 4096 * 4096;
    return p;
  }

 private:
  explicit HostRing(size_t bytes) : bytes_(bytes) {}
  kernels::Backend* pinned_by_ = nullptr;
  memory::AlignedBuffer plain_;
  std::byte* base_ = nullptr;
  size_t bytes_;
  size_t at_ = 0;
};

// A device buffer of the backend's for the moves alone (the compute-alone
// runtime's backend, which has no budget).
struct DeviceScratch {
  kernels::Backend* backend;
  void* data = nullptr;
  ~DeviceScratch() {
    if (data != nullptr) backend->release(data);
  }
};

size_t largest_bytes(const std::vector<Move>& moves, size_t elem_bytes) {
  size_t n = 0;
  for (const Move& m : moves) n = std::max({n, m.bytes, m.elements * elem_bytes});
  return n;
}

absl::StatusOr<HostRing> ring_for(kernels::Backend& backend, const std::vector<Move>& moves) {
  size_t total = 0;
  for (const Move& m : moves) total += m.bytes;
  return HostRing::create(backend, largest_bytes(moves, 1), total);
}

// Copy in alone: each upload the step made, by the uploader's own function,
// from a host ring beyond the caches.
absl::StatusOr<double> uploads_alone(kernels::Backend& backend, kernels::DType working,
                                     const std::vector<Move>& moves, int steps) {
  if (moves.empty()) return 0.0;
  absl::StatusOr<HostRing> ring = ring_for(backend, moves);
  if (!ring.ok()) return ring.status();
  const size_t largest = largest_bytes(moves, sizeof(float));
  DeviceScratch slot{&backend}, area{&backend};
  absl::StatusOr<void*> s = backend.allocate(largest), a = backend.allocate(largest);
  if (!s.ok()) return s.status();
  if (!a.ok()) return a.status();
  slot.data = *s;
  area.data = *a;
  actors::UploadJob job;
  job.slot = actors::DeviceBuffer{static_cast<float*>(slot.data)};
  job.area = area.data;
  absl::Status failed;
  absl::StatusOr<double> t = median_seconds(steps, [&] {
    for (const Move& m : moves) {
      job.src = actors::HostBuffer{ring->next(m.bytes)};
      job.bytes = m.bytes;
      job.elements = m.elements;
      failed.Update(actors::upload_chunk(&backend, working, job));
    }
  });
  if (!failed.ok()) return failed;
  return t;
}

// Copy out alone: each download the step made (the working bytes, device to
// pinned host memory), into a host ring beyond the caches.
absl::StatusOr<double> downloads_alone(kernels::Backend& backend, const std::vector<Move>& moves,
                                       int steps) {
  if (moves.empty()) return 0.0;
  absl::StatusOr<HostRing> ring = ring_for(backend, moves);
  if (!ring.ok()) return ring.status();
  DeviceScratch src{&backend};
  absl::StatusOr<void*> s = backend.allocate(largest_bytes(moves, 1));
  if (!s.ok()) return s.status();
  src.data = *s;
  absl::Status failed;
  absl::StatusOr<double> t = median_seconds(steps, [&] {
    for (const Move& m : moves) {
      failed.Update(backend.copy_to_host(ring->next(m.bytes), src.data, m.bytes,
                                         kernels::Stream::kDownload));
    }
    failed.Update(backend.synchronize(kernels::Stream::kDownload));
  });
  if (!failed.ok()) return failed;
  return t;
}

// Checksums alone: a CRC32C of every block the step's NVMe traffic wrote or
// read back (the swap store checks each block it reads), over host memory
// beyond the caches.
absl::StatusOr<double> checksums_alone(kernels::Backend& backend, uint64_t bytes,
                                       size_t block_bytes, int steps) {
  if (bytes == 0) return 0.0;
  absl::StatusOr<HostRing> ring = HostRing::create(backend, block_bytes, bytes);
  if (!ring.ok()) return ring.status();
  uint32_t sink = 0;
  absl::StatusOr<double> t = median_seconds(steps, [&] {
    for (uint64_t done = 0; done < bytes; done += block_bytes) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(block_bytes, bytes - done));
      sink ^= util::crc32c(ring->next(n), n);
    }
  });
  volatile uint32_t keep = sink;  // the checksums are used
  (void)keep;
  return t;
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
  std::vector<Move> copied_in, copied_out;  // the chunks the traced step moved
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
// counted), so the step time errs high. step_s and compute_s are the round's
// whose ratio of the two is the median.
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
  // The round whose step stands at the median against its own compute: a
  // round's two figures drift together, two rounds' figures need not.
  std::vector<int> order(kRounds);
  for (int i = 0; i < kRounds; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int x, int y) {
    return round_step_s[x] / round_compute_s[x] < round_step_s[y] / round_compute_s[y];
  });
  const int middle = order[kRounds / 2];
  m.step_s = round_step_s[middle];
  m.compute_s = round_compute_s[middle];
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
    // Chunks cross between host and device in the working dtype.
    const memory::ChunkLayout& l = layouts[span.chunk];
    const Move move{r.rt.placement().working_bytes(l), l.numel_padded()};
    if (span.lane == trace::Lane::kCopyIn) m.copied_in.push_back(move);
    if (span.lane == trace::Lane::kCopyOut) m.copied_out.push_back(move);
  }
  return absl::OkStatus();
}

// Each resource alone, and the bound: the slowest independent one. On the
// CPU backend compute, copies, Adam and checksums share the cores; on a GPU
// the device computes, the copies have a link each way, and the host's cores
// run Adam and the checksums.
struct Alone {
  double adam = 0, copy_in = 0, copy_out = 0, checksums = 0, nvme_read = 0, nvme_write = 0;
  const char* bound_name = "";
  double bound_s = 0;
};

void choose_bound(const Measured& m, bool cpu_backend, Alone& a) {
  std::vector<std::pair<const char*, double>> bounds = {{"nvme read", a.nvme_read},
                                                        {"nvme write", a.nvme_write}};
  if (cpu_backend) {
    bounds.emplace_back("cpu (compute, copies, adam and checksums share the cores)",
                        m.compute_s + a.copy_in + a.copy_out + a.adam + a.checksums);
  } else {
    bounds.emplace_back("compute", m.compute_s);
    bounds.emplace_back("copy in", a.copy_in);
    bounds.emplace_back("copy out", a.copy_out);
    bounds.emplace_back("host cpu (adam and checksums)", a.adam + a.checksums);
  }
  const auto bound = std::max_element(bounds.begin(), bounds.end(), [](const auto& x, const auto& y) {
    return x.second < y.second;
  });
  a.bound_name = bound->first;
  a.bound_s = bound->second;
}

// `resident` is the compute-alone runtime: its backend has no budget, so the
// copies alone have device memory of their own.
absl::StatusOr<Alone> measure_alone(const actors::RuntimeSpec& spec, Runtime& rt,
                                    Runtime& resident, const Measured& m, int steps,
                                    std::ostream& log) {
  log << "measuring each resource alone\n";
  const int passes = std::max(2, steps);
  kernels::Backend& backend = resident.backend();
  absl::StatusOr<double> adam = adam_alone(rt.layouts(), passes);
  if (!adam.ok()) return adam.status();
  absl::StatusOr<double> copy_in =
      uploads_alone(backend, rt.placement().working_dtype, m.copied_in, passes);
  if (!copy_in.ok()) return copy_in.status();
  absl::StatusOr<double> copy_out = downloads_alone(backend, m.copied_out, passes);
  if (!copy_out.ok()) return copy_out.status();
  absl::StatusOr<double> checksums = checksums_alone(
      backend, m.read_bytes + m.write_bytes, nvme::SwapStoreOptions{}.checksum_block_bytes, passes);
  if (!checksums.ok()) return checksums.status();
  std::string note;
  absl::StatusOr<std::pair<double, double>> nvme =
      nvme_alone(spec, m.read_bytes, m.write_bytes, &note);
  if (!nvme.ok()) return nvme.status();
  if (!note.empty()) log << "note: " << note << "\n";
  Alone a{*adam, *copy_in, *copy_out, *checksums, nvme->first, nvme->second};
  choose_bound(m, rt.backend().device_memory_is_host(), a);
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

size_t sum(const std::vector<Move>& v) {
  size_t total = 0;
  for (const Move& m : v) total += m.bytes;
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
  table.add_row({"checksums", format_fixed(a.checksums, 3), "",
                 util::format_bytes(m.read_bytes + m.write_bytes)});
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
                     {"checksums_s", a.checksums},
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
      "step %.3f s (the median round of 3 of %d) | bound %.3f s: %s | ratio %.2f | model waited "
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
  absl::StatusOr<Alone> alone = measure_alone(spec, **rt, **resident, m, options.steps, log);
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
