// `dsinf bench adam`: the CPU optimizer step against the host memory ceiling
// measured in the same run -- the plain fused step, the fused step of mixed
// precision (norm pass, then unscale + clip + Adam + bf16 copy in one pass), the
// same work in the separate passes DeepSpeed makes, and a naive scalar loop.
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/benchmarks.h"
#include "bench/host_bandwidth.h"
#include "bench/interrupt.h"
#include "bench/report.h"
#include "bench/timing.h"
#include "kernels/cpu/adam.h"
#include "kernels/cpu/half.h"
#include "memory/aligned_buffer.h"
#include "memory/util/args.h"
#include "memory/util/format.h"
#include "oneapi/tbb/blocked_range.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/task_arena.h"

namespace dsinf::bench {
namespace {

namespace cpu = kernels::cpu;
using cpu::DType;

constexpr const char* kName = "adam";
constexpr int64_t kDefaultParams = 100'000'000;
constexpr int64_t kQuickParams = 1'000'000;
// The figure every variant is counted in: read p, g, m, v and write p, m, v, fp32.
constexpr double kCountedBytesPerParam = 28;
// Where the verification compares the variants' results, element by element.
constexpr size_t kVerifyParams = size_t{1} << 20;
constexpr float kLossScale = 1024;  // a power of two, as dynamic loss scaling keeps it
constexpr double kClip = 1.0;

constexpr const char* kUsage = R"(usage: dsinf bench adam [options]

Measures the CPU optimizer step against host memory bandwidth, the ceiling
measured in the same run:
  ceiling    a[i] += s*b[i] over float arrays far larger than the last-level
             cache, all cores, 12 bytes per element
  plain      the fused step with fp32 gradients
  fused      mixed precision in two passes: the gradient norm and inf/NaN check
             over bf16 gradients, then one pass that unscales, clips, runs
             AdamW and writes a bf16 copy of the new weights
  multipass  the same work one pass at a time, as DeepSpeed does it: unscale
             into fp32, norm and overflow check, Adam, copy the weights to bf16
  naive      the textbook scalar loop on one thread, fp32 gradients
Every variant's GB/s counts 28 bytes per parameter (read p, g, m, v and write
p, m, v in fp32), so the figures compare; the bytes each actually moves are
shown beside. Before timing, the results of plain and naive, and of fused and
multipass, are checked to be bit-identical.

options:
  --params N    parameters (default 100000000; the run needs 20 bytes each)
  --isa NAME    scalar, avx2, avx512 or avx512bf16 (default: the best this CPU runs)
  --passes N    timed rounds after one warm-up round; each round runs the
                ceiling and every variant once; medians (default 5)
  --quick       1M parameters, small ceiling arrays, 2 passes: a smoke test,
                not a measurement
  --json        the table on stderr; the last stdout line is the JSON
)";

struct AdamPlan {
  size_t params = 0;
  cpu::Isa isa = cpu::Isa::kScalar;
  int passes = 5;
  HostOptions ceiling;
  bool json = false;
};

absl::StatusOr<AdamPlan> make_plan(const Args& o) {
  AdamPlan plan;
  plan.json = o.flag("--json");
  const bool quick = o.flag("--quick");
  absl::StatusOr<int64_t> params =
      o.integer("--params", quick ? kQuickParams : kDefaultParams, 1, int64_t{1} << 36);
  absl::StatusOr<int64_t> passes = o.integer("--passes", quick ? 2 : 5, 1, 1000);
  for (const absl::Status& s : {params.status(), passes.status()}) {
    if (!s.ok()) return s;
  }
  plan.params = static_cast<size_t>(*params);
  plan.passes = static_cast<int>(*passes);
  plan.isa = cpu::best_isa();
  if (std::optional<std::string> name = o.text("--isa")) {
    std::optional<cpu::Isa> isa = cpu::parse_isa(*name);
    if (!isa) {
      return absl::InvalidArgumentError(
          absl::StrCat("--isa ", *name, ": expected scalar, avx2, avx512 or avx512bf16"));
    }
    if (!cpu::isa_supported(*isa)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--isa ", *name,
                       ": this CPU does not run it (best: ", cpu::isa_name(cpu::best_isa()), ")"));
    }
    plan.isa = *isa;
  }
  plan.ceiling.array_bytes = quick ? size_t{16} << 20 : default_array_bytes();
  plan.ceiling.passes = plan.passes;
  return plan;
}

// The state of one optimizer over n parameters, plus what each variant reads.
struct Arrays {
  size_t n = 0;
  std::vector<memory::AlignedBuffer> buffers;
  float* params = nullptr;      // (n) fp32 master weights
  float* m = nullptr;           // (n)
  float* v = nullptr;           // (n)
  float* grads32 = nullptr;     // (n) fp32 gradients; multipass's unscaled copy
  uint16_t* grads16 = nullptr;  // (n) bf16 gradients, loss-scaled
  uint16_t* copy16 = nullptr;   // (n) bf16 copy of the new weights

  static absl::StatusOr<Arrays> allocate(size_t n) {
    Arrays a;
    a.n = n;
    for (size_t bytes : {4 * n, 4 * n, 4 * n, 4 * n, 2 * n, 2 * n}) {
      absl::StatusOr<memory::AlignedBuffer> b = memory::AlignedBuffer::allocate(bytes);
      if (!b.ok()) {
        return absl::ResourceExhaustedError(
            absl::StrCat("cannot allocate ", util::format_bytes(20 * n), " for ", n,
                         " parameters (lower --params): ", b.status().message()));
      }
      a.buffers.push_back(std::move(*b));
    }
    a.params = reinterpret_cast<float*>(a.buffers[0].data());
    a.m = reinterpret_cast<float*>(a.buffers[1].data());
    a.v = reinterpret_cast<float*>(a.buffers[2].data());
    a.grads32 = reinterpret_cast<float*>(a.buffers[3].data());
    a.grads16 = reinterpret_cast<uint16_t*>(a.buffers[4].data());
    a.copy16 = reinterpret_cast<uint16_t*>(a.buffers[5].data());
    a.fill();
    return a;
  }

  // Deterministic values of training's sizes, written in parallel.
  void fill() {
    tbb::parallel_for(tbb::blocked_range<size_t>(0, n, size_t{1} << 16),
                      [&](const tbb::blocked_range<size_t>& r) {
                        for (size_t i = r.begin(); i < r.end(); ++i) {
                          const float u = static_cast<float>((i * 2654435761u) % 2001) - 1000.0f;
                          const float g = 1e-6f * u;
                          params[i] = 2e-5f * u;
                          m[i] = 0.1f * g;
                          v[i] = 1e-3f * g * g;
                          grads32[i] = g;
                          grads16[i] = cpu::float_to_bf16(g * kLossScale);
                        }
                      });
  }
};

kernels::AdamHyper hyper_at(int64_t step, float grad_scale) {
  kernels::AdamHyper h;
  h.lr = 1e-4f;
  h.weight_decay = 0.01f;
  h.adam_w_mode = true;
  h.step = step;
  h.grad_scale = grad_scale;
  return h;
}

float clip_coefficient(double sum_squares, double unscale) {
  const double norm = std::sqrt(sum_squares) * unscale;
  const double coef = kClip / (norm + 1e-6);
  return coef < 1.0 ? static_cast<float>(coef) : 1.0f;
}

// The variants, each one optimizer step over the whole of `a`.
struct Variants {
  Arrays& a;
  cpu::Isa isa;
  int64_t step = 0;

  cpu::AdamBuffers buffers(const void* grads, DType grad_dtype, bool copy) const {
    cpu::AdamBuffers b;
    b.n = a.n;
    b.params = a.params;
    b.grads = grads;
    b.grad_dtype = grad_dtype;
    b.m = a.m;
    b.v = a.v;
    if (copy) {
      b.params_copy = a.copy16;
      b.copy_dtype = DType::kBF16;
    }
    return b;
  }

  absl::Status plain() {
    cpu::fused_adam_step(buffers(a.grads32, DType::kF32, false), hyper_at(++step, 1.0f), isa);
    return absl::OkStatus();
  }

  absl::Status fused() {
    const cpu::GradStats stats = cpu::grad_stats(a.grads16, DType::kBF16, a.n, isa);
    if (stats.nonfinite != 0) return absl::InternalError("fused: non-finite gradients");
    const float unscale = 1.0f / kLossScale;
    const float grad_scale = unscale * clip_coefficient(stats.sum_squares, unscale);
    cpu::fused_adam_step(buffers(a.grads16, DType::kBF16, true), hyper_at(++step, grad_scale), isa);
    return absl::OkStatus();
  }

  absl::Status multipass() {
    cpu::convert(a.grads16, DType::kBF16, a.grads32, DType::kF32, 1.0f / kLossScale, a.n, isa);
    const cpu::GradStats stats = cpu::grad_stats(a.grads32, DType::kF32, a.n, isa);
    if (stats.nonfinite != 0) return absl::InternalError("multipass: non-finite gradients");
    cpu::fused_adam_step(buffers(a.grads32, DType::kF32, false),
                         hyper_at(++step, clip_coefficient(stats.sum_squares, 1.0)), isa);
    cpu::convert(a.params, DType::kF32, a.copy16, DType::kBF16, 1.0f, a.n, isa);
    return absl::OkStatus();
  }

  // One thread, one element at a time, the bias corrections recomputed as a
  // textbook loop would; the same operations as the fused step, so the same bits.
  __attribute__((optimize("no-tree-vectorize"))) absl::Status naive() {
    const kernels::AdamHyper h = hyper_at(++step, 1.0f);
    const double bc1 = 1.0 - std::pow(double(h.beta1), double(h.step));
    const double bc2 = 1.0 - std::pow(double(h.beta2), double(h.step));
    const float step_size = static_cast<float>(double(h.lr) / bc1);
    const float sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
    const float decay = static_cast<float>(1.0 - double(h.lr) * double(h.weight_decay));
    const float b1 = h.beta1, b2 = h.beta2;
    const float one_minus_b1 = static_cast<float>(1.0 - double(b1));
    const float one_minus_b2 = static_cast<float>(1.0 - double(b2));
    for (size_t i = 0; i < a.n; ++i) {
      const float g = a.grads32[i] * h.grad_scale;
      const float m = b1 * a.m[i] + one_minus_b1 * g;
      const float v = b2 * a.v[i] + one_minus_b2 * (g * g);
      a.m[i] = m;
      a.v[i] = v;
      a.params[i] = a.params[i] * decay - (step_size * m) / (std::sqrt(v) / sqrt_bc2 + h.eps);
    }
    return absl::OkStatus();
  }
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::max(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                  1e-9);
}

bool same_bytes(const void* a, const void* b, size_t bytes) {
  return std::memcmp(a, b, bytes) == 0;
}

// Runs two variants from the same state on `n` parameters and compares every
// array they write. kInternal when they differ: a figure for a wrong result is
// no figure.
absl::Status verify(cpu::Isa isa, size_t n) {
  absl::StatusOr<Arrays> x = Arrays::allocate(n);
  if (!x.ok()) return x.status();
  absl::StatusOr<Arrays> y = Arrays::allocate(n);
  if (!y.ok()) return y.status();
  Variants vx{*x, isa}, vy{*y, isa};
  struct Pair {
    const char* names;
    absl::Status (Variants::*first)();
    absl::Status (Variants::*second)();
    bool copy;
  };
  for (const Pair& pair :
       {Pair{"plain and naive", &Variants::plain, &Variants::naive, false},
        Pair{"fused and multipass", &Variants::fused, &Variants::multipass, true}}) {
    x->fill();
    y->fill();
    for (int step = 0; step < 2; ++step) {
      if (absl::Status s = (vx.*pair.first)(); !s.ok()) return s;
      if (absl::Status s = (vy.*pair.second)(); !s.ok()) return s;
    }
    const bool same = same_bytes(x->params, y->params, 4 * n) && same_bytes(x->m, y->m, 4 * n) &&
                      same_bytes(x->v, y->v, 4 * n) &&
                      (!pair.copy || same_bytes(x->copy16, y->copy16, 2 * n));
    if (!same) {
      return absl::InternalError(
          absl::StrCat("the ", pair.names, " steps give different results on path ",
                       cpu::isa_name(isa), ": the kernels are wrong, no figures reported"));
    }
  }
  return absl::OkStatus();
}

struct Figure {
  double seconds = 0;
  double bytes_moved_per_param = 0;
};

nlohmann::ordered_json figure_json(const Figure& f, size_t n, double ceiling_gbps) {
  const double params_per_s = static_cast<double>(n) / f.seconds;
  const double gbps = params_per_s * kCountedBytesPerParam / 1e9;
  return {{"params_per_s", round_significant(params_per_s, 4)},
          {"gbps", round_significant(gbps, 4)},
          {"ratio", round_significant(gbps / ceiling_gbps, 3)},
          {"seconds", round_significant(f.seconds, 4)},
          {"bytes_moved_per_param", f.bytes_moved_per_param}};
}

struct Run {
  const char* name;
  absl::Status (Variants::*pass)();
  double bytes_moved_per_param;
  const char* how;
};
const Run kRunList[] = {
    {"plain", &Variants::plain, 28, "fp32 grads, one pass"},
    {"fused", &Variants::fused, 2 + 28, "bf16 grads: norm pass, then unscale+clip+AdamW+bf16 copy"},
    {"multipass", &Variants::multipass, 6 + 4 + 28 + 6,
     "unscale to fp32, norm, Adam, copy to bf16: four passes"},
    {"naive", &Variants::naive, 28, "scalar loop, one thread, fp32 grads"},
};
constexpr size_t kRuns = std::size(kRunList);

// Rounds of one pass each -- the ceiling, then every variant -- so that drift in
// the machine's memory bandwidth (other tenants, frequency) moves all alike.
// Round 0 warms up and is not counted; each figure is the median over rounds.
// Returns the ceiling's GB/s and fills `figures`.
absl::StatusOr<double> measure_rounds(const AdamPlan& plan, UpdateCeiling& ceiling_kernel,
                                      Variants& variants, const Reporter& out,
                                      std::vector<Figure>& figures) {
  std::vector<double> ceiling_seconds;
  std::vector<std::vector<double>> run_seconds(kRuns);
  for (int round = 0; round <= plan.passes; ++round) {
    if (interrupted()) return absl::CancelledError("interrupted");
    out.progress(round == 0 ? std::string("warm-up round")
                            : absl::StrCat("round ", round, " of ", plan.passes));
    auto start = std::chrono::steady_clock::now();
    ceiling_kernel.pass();
    if (round > 0) ceiling_seconds.push_back(seconds_since(start));
    for (size_t r = 0; r < kRuns; ++r) {
      start = std::chrono::steady_clock::now();
      if (absl::Status s = (variants.*kRunList[r].pass)(); !s.ok()) return s;
      if (round > 0) run_seconds[r].push_back(seconds_since(start));
    }
  }
  for (size_t r = 0; r < kRuns; ++r) {
    figures.push_back({median(run_seconds[r]), kRunList[r].bytes_moved_per_param});
  }
  return ceiling_kernel.bytes_per_pass() / median(ceiling_seconds) / 1e9;
}

void report_adam(const AdamPlan& plan, double ceiling, const std::vector<Figure>& figures,
                 const Reporter& out) {
  const int threads = tbb::this_task_arena::max_concurrency();
  TextTable table(
      {"step", "Mparams/s", "GB/s (28 B/param)", "vs ceiling", "bytes moved/param", "how"});
  table.add_row({"ceiling", "", format_fixed(ceiling, 2), "1.00", "",
                 absl::StrCat("a += s*b, 2 x ", util::format_bytes(plan.ceiling.array_bytes), ", ",
                              threads, " threads, 12 B/element")});
  nlohmann::ordered_json result = {{"ceiling_gbps", round_significant(ceiling, 4)}};
  for (size_t i = 0; i < figures.size(); ++i) {
    const nlohmann::ordered_json f = figure_json(figures[i], plan.params, ceiling);
    result[kRunList[i].name] = f;
    table.add_row({kRunList[i].name, format_fixed(f["params_per_s"].get<double>() / 1e6, 1),
                   format_fixed(f["gbps"].get<double>(), 2),
                   format_fixed(f["ratio"].get<double>(), 2),
                   format_fixed(figures[i].bytes_moved_per_param, 0), kRunList[i].how});
  }
  const double fused_vs_multipass = figures[2].seconds / figures[1].seconds;
  out.text() << table.render();
  out.text() << "fused vs multipass: " << format_fixed(fused_vs_multipass, 2) << "x; "
             << plan.params << " parameters, path " << cpu::isa_name(plan.isa) << ", " << threads
             << " threads, medians of " << plan.passes << " rounds\n";
  if (figures[0].seconds > 0 &&
      kCountedBytesPerParam * plan.params / figures[0].seconds / 1e9 > ceiling) {
    out.text() << "note: the plain step beats the ceiling: streaming four arrays at once "
                  "keeps more memory requests in flight per core than the two-array update "
                  "kernel does on this machine\n";
  }
  result["fused_vs_multipass"] = round_significant(fused_vs_multipass, 3);
  result["params"] = plan.params;
  result["isa"] = cpu::isa_name(plan.isa);
  result["threads"] = threads;
  result["passes"] = plan.passes;
  result["bytes_per_param"] = kCountedBytesPerParam;
  result["verified"] = true;
  out.result(result);
}

}  // namespace

int adam_main(const std::vector<std::string>& args) {
  int exit_code = kExitOk;
  const std::optional<AdamPlan> plan =
      plan_from_args(kName, kUsage, args, {"--params", "--isa", "--passes"},
                     {"--quick", "--json", "--help"}, make_plan, &exit_code);
  if (!plan) return exit_code;
  const Reporter out(plan->json);
  InterruptGuard interrupt_guard;
  out.progress(
      absl::StrCat("verifying the variants agree bit for bit on path ", cpu::isa_name(plan->isa)));
  if (absl::Status s = verify(plan->isa, std::min(plan->params, kVerifyParams)); !s.ok()) {
    return report_failure(kName, s);
  }
  absl::StatusOr<UpdateCeiling> ceiling_kernel = UpdateCeiling::create(plan->ceiling.array_bytes);
  if (!ceiling_kernel.ok()) return report_failure(kName, ceiling_kernel.status());
  absl::StatusOr<Arrays> arrays = Arrays::allocate(plan->params);
  if (!arrays.ok()) return report_failure(kName, arrays.status());
  Variants variants{*arrays, plan->isa};
  std::vector<Figure> figures;
  absl::StatusOr<double> ceiling = measure_rounds(*plan, *ceiling_kernel, variants, out, figures);
  if (!ceiling.ok()) return report_failure(kName, ceiling.status());
  report_adam(*plan, *ceiling, figures, out);
  return kExitOk;
}

}  // namespace dsinf::bench
