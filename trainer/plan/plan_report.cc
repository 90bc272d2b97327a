#include "trainer/plan/plan_report.h"
#include "actors/runtime/partition.h"
#include "trainer/plan/plan_ranks.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "actors/runtime/backend_choice.h"
#include "actors/runtime/placement.h"
#include "bench/report.h"
#include "memory/chunk_layout.h"
#include "memory/util/format.h"
#include "trainer/config/runtime_spec.h"
#include "trainer/models/model.h"
#include "trainer/plan/plan_tiers.h"

namespace dsinf::trainer {
namespace {

using actors::MemoryPlan;
using actors::Placement;
using actors::Tier;

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

constexpr double kAdamBytesPerParam = 28;

// ---- NVMe swap per path ----

struct PathSwap {
  std::string path;
  uint64_t bytes = 0;
  std::optional<uint64_t> free_bytes;
};

// Chunks go round-robin over a store's paths (nvme/swap_store.h): chunk id i on
// path i % paths. The parameter store holds the working params (unless they
// share the optimizer's store); the optimizer store m (ids 0..n-1), v (n..2n-1)
// and the master weights (2n..3n-1).
std::vector<PathSwap> swap_per_path(const Placement& p,
                                    const std::vector<memory::ChunkLayout>& layouts) {
  std::vector<PathSwap> out;
  bool working = false;
  auto add = [&](const std::vector<std::string>& paths, size_t ids) {
    if (paths.empty()) return;
    for (size_t i = 0; i < ids; ++i) {
      const std::string& path = paths[i % paths.size()];
      auto it =
          std::find_if(out.begin(), out.end(), [&](const PathSwap& s) { return s.path == path; });
      if (it == out.end()) {
        out.push_back({path, 0, std::nullopt});
        it = out.end() - 1;
      }
      it->bytes += working ? p.working_bytes(layouts[i % layouts.size()])
                           : layouts[i % layouts.size()].bytes();
    }
  };
  // The working params in their own type; the optimizer's classes are fp32.
  working = true;
  if (p.params == Tier::kNvme && !p.master_is_working_copy()) add(p.param_paths, layouts.size());
  working = false;
  if (p.optimizer == Tier::kNvme) add(p.optimizer_paths, 3 * layouts.size());
  for (PathSwap& s : out) {
    struct statvfs vfs {};
    if (::statvfs(s.path.c_str(), &vfs) == 0) {
      s.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    }
  }
  return out;
}

// Paths on one file system share its free space: a warning per file system
// whose free space is below what its paths will hold.
std::vector<std::string> free_space_warnings(const std::vector<PathSwap>& swaps) {
  std::map<dev_t, std::pair<uint64_t, const PathSwap*>> per_fs;
  for (const PathSwap& s : swaps) {
    struct stat st {};
    if (::stat(s.path.c_str(), &st) != 0 || !s.free_bytes) continue;
    auto& [need, first] = per_fs[st.st_dev];
    need += s.bytes;
    if (first == nullptr) first = &s;
  }
  std::vector<std::string> warnings;
  for (const auto& [dev, entry] : per_fs) {
    const auto& [need, first] = entry;
    if (need > *first->free_bytes) {
      warnings.push_back(absl::StrCat("the file system of ", first->path, " has ",
                                      util::format_bytes_exact(*first->free_bytes),
                                      " free but the swap needs ", util::format_bytes_exact(need),
                                      ": train would stop with exit status 2"));
    }
  }
  return warnings;
}

// Whether this process may lock memory beyond RLIMIT_MEMLOCK (CAP_IPC_LOCK, bit 14).
bool can_lock_unlimited() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("CapEff:", 0) == 0) {
      const unsigned long long caps = std::strtoull(line.c_str() + 7, nullptr, 16);
      return (caps >> 14) & 1;
    }
  }
  return false;
}

}  // namespace

StepPrediction predict_step(const StepInputs& in) {
  StepPrediction p;
  p.compute_s = in.flops_per_param_token * in.params * in.tokens_per_step / (in.cpu_gflops * 1e9);
  p.adam_s = kAdamBytesPerParam * in.trained_params / (in.host_update_gbps * 1e9);
  p.cpu_s = p.compute_s + p.adam_s;
  auto io = [](double bytes, const std::optional<double>& gbps) -> std::optional<double> {
    if (bytes == 0) return 0.0;
    if (!gbps) return std::nullopt;
    return bytes / (*gbps * 1e9);
  };
  p.nvme_read_s = io(in.nvme_read_bytes, in.nvme_read_gbps);
  p.nvme_write_s = io(in.nvme_write_bytes, in.nvme_write_gbps);
  p.step_s = p.cpu_s;
  p.bound = "cpu";
  p.serial_s = p.cpu_s;
  for (const auto& [name, value] :
       {std::pair{"nvme_read", p.nvme_read_s}, std::pair{"nvme_write", p.nvme_write_s}}) {
    if (!value) continue;
    p.serial_s += *value;
    if (*value > p.step_s) {
      p.step_s = *value;
      p.bound = name;
    }
  }
  return p;
}

namespace {

// What the plan reports, gathered from the config alone.
struct PlanFacts {
  const Config* config = nullptr;
  std::unique_ptr<Model> model;
  std::vector<memory::ChunkLayout> layouts;
  size_t params = 0, total = 0;  // parameters; bytes of one fp32 class (chunks page-aligned)
  size_t working_total = 0;      // the working params at their home
  // Over a frozen base (LoRA): the bytes of one fp32 class of the trained
  // chunks, and the parameters frozen and trained (else trained_total = total).
  size_t trained_total = 0, frozen_params = 0, trained_params = 0;
  Placement p;
  actors::DeviceRequest device;
  size_t act_with = 0, act_without = 0, activations = 0;
  // dsinf generate and chat (the llama family): the key/value cache and, with
  // it, the device bytes a generation runtime plans in place of activations.
  std::optional<size_t> kv_cache, generation_bytes;
  MemoryPlan plan;
  absl::Status budget_status;  // what train says of the budgets
  std::vector<PathSwap> swaps;
  std::vector<std::string> warnings;
  double nvme_read_bytes = 0, nvme_write_bytes = 0;  // a step's
  ojson ranks;  // with several ranks (config.world_size): what each holds
};

struct ClassRow {
  const char* name;
  const char* label;
  Tier tier;
  size_t bytes;
  // The type the class is stored in at its home, and the bytes a parameter
  // of it takes when it moves between tiers (working params: uploads, NVMe and
  // the host cache; gradients: the visits leaving the device).
  kernels::DType stored;
  kernels::DType moves;
};

std::vector<ClassRow> class_rows(const PlanFacts& f) {
  using kernels::DType;
  const Placement& p = f.p;
  const DType w = p.working_dtype;
  std::vector<ClassRow> classes = {
      {"params", "working params", p.params, f.working_total,
       p.params == Tier::kDevice ? DType::kF32 : w, w},
      {"grads", "gradients", p.grads, f.trained_total, DType::kF32, w}};
  if (!p.master_is_working_copy()) {
    classes.push_back(
        {"master", "master weights", p.optimizer, f.trained_total, DType::kF32, DType::kF32});
  }
  classes.push_back({"adam_m", "Adam m", p.optimizer, f.trained_total, DType::kF32, DType::kF32});
  classes.push_back({"adam_v", "Adam v", p.optimizer, f.trained_total, DType::kF32, DType::kF32});
  return classes;
}

// The model, its chunks and activations (with and without checkpointing).
absl::Status gather_model(const Config& config, const RunEnvironment& env, PlanFacts& f) {
  f.config = &config;
  // A bad DSINF_DEVICE is bad input, as train would refuse it.
  absl::StatusOr<actors::DeviceRequest> device = device_request(config, env);
  if (!device.ok()) return device.status();
  f.device = *device;
  absl::StatusOr<std::unique_ptr<Model>> model = make_model(config.model);
  if (!model.ok()) return model.status();
  f.model = *std::move(model);
  f.layouts = f.model->layouts();
  f.params = f.model->num_parameters();
  for (const memory::ChunkLayout& layout : f.layouts) {
    f.total += layout.bytes();
    size_t numel = 0;
    for (const memory::TensorSlot& t : layout.tensors()) numel += t.numel;
    (layout.trainable() ? f.trained_params : f.frozen_params) += numel;
    if (layout.trainable()) f.trained_total += layout.bytes();
  }
  f.p = place(config);
  for (const memory::ChunkLayout& layout : f.layouts) f.working_total += f.p.param_home_bytes(layout);
  const int micro_batch = static_cast<int>(config.train_micro_batch_size_per_gpu);
  for (bool ckpt : {true, false}) {
    ModelConfig shape = config.model;
    shape.activation_checkpointing = ckpt;
    absl::StatusOr<std::unique_ptr<Model>> m = make_model(shape);
    if (!m.ok()) return m.status();
    (ckpt ? f.act_with : f.act_without) = (*m)->activation_bytes(micro_batch);
  }
  f.activations = config.model.activation_checkpointing ? f.act_with : f.act_without;
  if (absl::StatusOr<std::unique_ptr<Decoder>> d = make_decoder(config.model); d.ok()) {
    f.kv_cache = (*d)->kv_cache_bytes();
    f.generation_bytes = (*d)->device_bytes();
  }
  return absl::OkStatus();
}

// The budgets as train checks them (plan_memory). The figures come from a
// plan without budgets when the real one is refused.
absl::Status plan_budgets(PlanFacts& f) {
  const Config& config = *f.config;
  const actors::MemoryBudgets budgets{config.memory.device_budget_bytes,
                                      config.memory.host_budget_bytes};
  absl::StatusOr<MemoryPlan> planned = plan_memory(f.p, budgets, f.layouts, f.activations);
  if (planned.ok()) {
    f.plan = *planned;
    return absl::OkStatus();
  }
  f.budget_status = absl::InvalidArgumentError(
      absl::StrCat(config.source_path, ": ", planned.status().message()));
  absl::StatusOr<MemoryPlan> loose = plan_memory(f.p, {}, f.layouts, f.activations);
  // Refused without budgets too (zero_optimization.stage3_max_live_parameters):
  // train's message, as for a budget.
  if (!loose.ok()) return f.budget_status;
  f.plan = *loose;
  return absl::OkStatus();
}

void collect_warnings(PlanFacts& f) {
  f.swaps = swap_per_path(f.p, f.layouts);
  f.warnings = free_space_warnings(f.swaps);
  if (!f.p.pin_memory || f.plan.host_bytes == 0) return;
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_MEMLOCK, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
      limit.rlim_cur < f.plan.host_bytes && !can_lock_unlimited()) {
    f.warnings.push_back(absl::StrCat(
        f.p.pin_memory_key(), " is true but RLIMIT_MEMLOCK is ",
        util::format_bytes_exact(limit.rlim_cur),
        ", below the host pool: the pool will likely stay pageable (raise `ulimit -l`)"));
  }
}

std::string budget_text(uint64_t budget) {
  return budget ? util::format_bytes_exact(budget) : std::string("none");
}

void print_classes(const PlanFacts& f, std::ostream& out) {
  const Config& config = *f.config;
  const Placement& p = f.p;
  out << "dsinf plan " << config.source_path
      << ": where each tensor class lives, from the config alone (nothing is allocated)\n";
  out << absl::StrFormat(
      "model %s: %d parameters in %d chunks, %s per class (chunks page-aligned)\n",
      f.model->describe(), f.params, f.layouts.size(), util::format_bytes_exact(f.total));
  out << absl::StrFormat(
      "placement: zero stage %d | params on %s | gradients on %s | optimizer on %s%s\n",
      config.zero.stage, tier_name(p.params), tier_name(p.grads), tier_name(p.optimizer),
      p.master_is_working_copy() ? " | the master weights are the working params (one copy)" : "");
  if (f.frozen_params > 0) {
    const LoraConfig& lora = config.model.lora;
    out << absl::StrFormat(
        "LoRA r=%d, scale %.6g on %s%s: %d base parameters frozen (working params only: read, "
        "never written, no gradient or optimizer state), %d trained\n",
        lora.r, lora.scale(), absl::StrJoin(lora.target_modules, ","),
        lora.modules_to_save.empty() ? ""
                                     : " + " + absl::StrJoin(lora.modules_to_save, ",") + " copies",
        f.frozen_params, f.trained_params);
  }
  bench::TextTable classes({"class", "tier", "bytes", "stored as", "moves as"});
  for (const ClassRow& c : class_rows(f)) {
    classes.add_row({c.label, tier_name(c.tier), util::format_bytes_exact(c.bytes),
                     kernels::dtype_name(c.stored),
                     absl::StrFormat("%s, %d B/param", kernels::dtype_name(c.moves),
                                     kernels::dtype_bytes(c.moves))});
  }
  out << "\n" << classes.render();
  if (p.reduced()) {
    out << absl::StrFormat(
        "working params are the master weights rounded to %s: %d bytes a parameter on every "
        "move (uploads, NVMe, host cache), fp32 holding %s values on the device; gradient "
        "visits leave the device as %s and add into fp32 accumulators\n",
        kernels::dtype_name(p.working_dtype), kernels::dtype_bytes(p.working_dtype),
        kernels::dtype_name(p.working_dtype), kernels::dtype_name(p.working_dtype));
  }
  bench::TextTable tiers({"tier", "bytes", "budget"});
  tiers.add_row({"device", util::format_bytes_exact(f.plan.device_bytes),
                 budget_text(config.memory.device_budget_bytes)});
  tiers.add_row({"host", util::format_bytes_exact(f.plan.host_bytes),
                 budget_text(config.memory.host_budget_bytes)});
  tiers.add_row({"nvme", util::format_bytes_exact(f.plan.nvme_bytes),
                 f.swaps.empty() ? "none" : "free space"});
  out << "\n" << tiers.render();
}

void print_device(const PlanFacts& f, std::ostream& out) {
  const ModelConfig& m = f.config->model;
  const MemoryPlan& plan = f.plan;
  const Placement& p = f.p;
  out << "\ndevice:\n"
      << "  activations      " << util::format_bytes_exact(f.activations)
      << (m.activation_checkpointing ? " with activation_checkpointing ("
                                     : " without activation_checkpointing (")
      << util::format_bytes_exact(m.activation_checkpointing ? f.act_without : f.act_with)
      << (m.activation_checkpointing ? " without)" : " with it)")
      << ", incl. one gradient visit buffer\n"
      << "  resident chunks  " << util::format_bytes_exact(plan.resident_bytes) << "\n";
  if (plan.convert_bytes > 0) {
    out << "  conversion areas " << util::format_bytes_exact(plan.convert_bytes) << " (rounding to "
        << kernels::dtype_name(p.working_dtype) << ": gradient visits, new working weights)\n";
  }
  if (plan.slot_bytes > 0) {
    out << absl::StrFormat(
        "  parameter slots  %d x %s = %s (offload_param.buffer_count %d; "
        "stage3_max_live_parameters %d allows %d of %d elements)\n",
        plan.slots, util::format_bytes_exact(plan.slot_bytes),
        util::format_bytes_exact(plan.slots * plan.slot_bytes), p.param_buffer_count,
        p.param_max_live, static_cast<size_t>(p.param_max_live) / plan.slot_elements,
        plan.slot_elements);
  } else if (plan.persistent_chunks > 0) {
    out << "  parameter slots  none (every parameter chunk has a slot of its own)\n";
  } else {
    out << "  parameter slots  none (the working params stay on the device)\n";
  }
  if (plan.persistent_chunks > 0) {
    out << absl::StrFormat(
        "  persistent       %d chunks below stage3_param_persistence_threshold %d elements%s, "
        "a slot each: %s\n",
        plan.persistent_chunks, p.param_persistence_threshold,
        f.frozen_params > 0 ? " or LoRA's adapters" : "",
        util::format_bytes_exact(plan.persistent_bytes));
  }
  out << "  total            " << util::format_bytes_exact(plan.device_bytes) << "\n"
      << "  budget           " << budget_text(f.config->memory.device_budget_bytes)
      << " (memory.device_budget_bytes)\n"
      << "  least budget     " << util::format_bytes_exact(plan.device_min_bytes)
      << (plan.slot_bytes > 0 ? " (one parameter slot)\n" : "\n");
  if (f.kv_cache) {
    const ModelConfig& m = f.config->model;
    out << absl::StrFormat(
        "  generation       key/value cache %s (2 x %d layers x %d positions x %d kv heads x %d "
        "x 4 bytes), %s with a pass's buffers, in place of activations (dsinf generate, chat)\n",
        util::format_bytes_exact(*f.kv_cache), m.n_layer, m.n_positions, m.n_kv_head, m.head_dim,
        util::format_bytes_exact(*f.generation_bytes));
  }
}

void print_host_and_swap(const PlanFacts& f, std::ostream& out) {
  const MemoryPlan& plan = f.plan;
  const Placement& p = f.p;
  out << "host pool: " << util::format_bytes_exact(plan.host_class_bytes) << " of classes + "
      << util::format_bytes_exact(plan.host_staging_bytes) << " of staging"
      << (plan.optimizer_sets > 0
              ? absl::StrFormat(" (optimizer state of %d chunks read ahead, %d buffers each; "
                                "offload_optimizer.buffer_count %d)",
                                plan.optimizer_sets, plan.optimizer_set_buffers,
                                p.optimizer_buffer_count)
              : std::string())
      << " + " << util::format_bytes_exact(plan.host_cache_bytes) << " of NVMe parameters cached ("
      << plan.cached_chunks
      << " chunks, offload_param.max_in_cpu) = " << util::format_bytes_exact(plan.host_bytes);
  if (plan.host_bytes > 0) {
    out << ", " << (p.pin_memory ? "pinned" : "pageable") << " (" << p.pin_memory_key() << " "
        << (p.pin_memory ? "true" : "false") << ")";
  }
  out << "; budget " << budget_text(f.config->memory.host_budget_bytes)
      << " (memory.host_budget_bytes)\n";
  if (f.swaps.empty()) out << "nvme swap: none\n";
  for (const PathSwap& s : f.swaps) {
    out << "nvme swap: " << util::format_bytes_exact(s.bytes) << " in " << s.path
        << (s.free_bytes ? absl::StrCat(" (", util::format_bytes_exact(*s.free_bytes), " free)")
                         : std::string(" (free space unknown)"))
        << "\n";
  }
  for (const std::string& w : f.warnings) out << "warning: " << w << "\n";
}

// A step's NVMe bytes. Working params on NVMe: chunks cached on the host
// (offload_param.max_in_cpu) are refreshed by the optimizer and read from
// there; the others are read at every visit (every chunk twice per
// micro-batch, the embedding once more), except persistent ones
// (stage3_param_persistence_threshold): once a step, after their update. The
// updated weights of a cached chunk stay in its cache (the optimizer reads and
// updates them there); the others are read by the optimizer when they are its
// master copy, and written back. Optimizer state on NVMe: m, v (and the master
// when separate) read and written once.
void nvme_step_bytes(PlanFacts& f) {
  const MemoryPlan& plan = f.plan;
  const bool shared = f.p.master_is_working_copy();
  const double gas = static_cast<double>(f.config->gradient_accumulation_steps);
  if (f.p.params == Tier::kNvme) {
    double uncached = 0;
    for (size_t c = plan.cached_chunks; c < f.layouts.size(); ++c) {
      const double bytes = static_cast<double>(f.p.working_bytes(f.layouts[c]));
      const bool persistent = c < plan.persistent.size() && plan.persistent[c];
      f.nvme_read_bytes += persistent ? bytes : gas * (c == 0 ? 3.0 : 2.0) * bytes;
      // A frozen chunk is never updated: nothing to write back.
      if (f.layouts[c].trainable()) uncached += bytes;
    }
    if (shared) f.nvme_read_bytes += uncached;
    f.nvme_write_bytes += uncached;
  }
  if (f.p.optimizer == Tier::kNvme) {
    const double copies = shared ? 2 : 3;
    f.nvme_read_bytes += copies * static_cast<double>(f.trained_total);
    f.nvme_write_bytes += copies * static_cast<double>(f.trained_total);
  }
}

StepInputs step_inputs(const PlanFacts& f, const Bandwidths& bw) {
  const ModelConfig& m = f.config->model;
  StepInputs in;
  in.params = static_cast<double>(f.trained_params) + 2.0 / 3.0 * static_cast<double>(f.frozen_params);
  in.trained_params = static_cast<double>(f.trained_params);
  in.tokens_per_step = static_cast<double>(f.config->train_batch_size) * m.window();
  in.flops_per_param_token = m.activation_checkpointing ? 8 : 6;
  in.cpu_gflops = *bw.tiers.cpu_gflops;
  in.host_update_gbps = bw.tiers.host_update_gbps;
  in.nvme_read_bytes = f.nvme_read_bytes;
  in.nvme_write_bytes = f.nvme_write_bytes;
  in.nvme_read_gbps = bw.tiers.nvme_read_gbps;
  in.nvme_write_gbps = bw.tiers.nvme_write_gbps;
  return in;
}

std::string io_line(const char* what, double bytes, const std::optional<double>& gbps,
                    const std::optional<double>& seconds, const std::string& unknown) {
  const std::string moved = util::format_bytes_exact(static_cast<uint64_t>(bytes));
  if (bytes == 0) return absl::StrFormat("  %-11s nothing on NVMe\n", what);
  if (!seconds) return absl::StrFormat("  %-11s %s per step, %s\n", what, moved, unknown);
  return absl::StrFormat("  %-11s %s per step / %.3g GB/s = %s\n", what, moved, *gbps,
                         util::format_seconds(*seconds));
}

void print_prediction(const PlanFacts& f, const Bandwidths& bw, const StepInputs& in,
                      const StepPrediction& pred, std::ostream& out) {
  const std::string source_text = bw.source == "file" ? absl::StrCat("from --tiers ", bw.where)
                                  : bw.source == "cache"
                                      ? absl::StrCat("from the cache ", bw.where)
                                      : std::string("measured now, quickly (not a benchmark)");
  out << "\npredicted step time (a prediction from measured bandwidths, not a measurement):\n"
      << absl::StrFormat("  compute     %g x %.0f params x %.0f tokens / %.3g GFLOP/s = %s%s\n",
                         in.flops_per_param_token, in.params, in.tokens_per_step, in.cpu_gflops,
                         util::format_seconds(pred.compute_s),
                         bw.cpu_source == "measured"
                             ? " (512^3 matmul timed now; peak rate, so a lower bound)"
                             : " (peak matmul rate, so a lower bound)")
      << absl::StrFormat(
             "  cpu adam    28 B x %.0f params / %.3g GB/s host memory = %s (memory-bound: dsinf "
             "bench adam)\n",
             in.trained_params, in.host_update_gbps, util::format_seconds(pred.adam_s))
      << io_line("nvme read", f.nvme_read_bytes, in.nvme_read_gbps, pred.nvme_read_s,
                 bw.nvme_reason)
      << io_line("nvme write", f.nvme_write_bytes, in.nvme_write_gbps, pred.nvme_write_s,
                 bw.nvme_reason)
      << absl::StrFormat(
             "  step        %s overlapped (max of cpu %s = compute + adam, nvme read, nvme "
             "write): bound by %s; %s serial (sum)\n",
             util::format_seconds(pred.step_s), util::format_seconds(pred.cpu_s), pred.bound,
             util::format_seconds(pred.serial_s))
      << "  bandwidths  " << source_text << "\n";
  // The model above is the CPU backend's (compute and Adam share the cores).
  if (actors::runs_on_cuda(f.device)) {
    out << "  note        this prediction models the CPU backend; for a run on a CUDA device "
           "(device \""
        << f.device.name << "\") measure the step with dsinf bench step instead\n";
  }
}

ojson bytes_json(const PlanFacts& f) {
  const MemoryPlan& plan = f.plan;
  const Config& config = *f.config;
  ojson paths = ojson::array();
  for (const PathSwap& s : f.swaps) {
    paths.push_back({{"path", s.path},
                     {"bytes", s.bytes},
                     {"free", s.free_bytes ? ojson(*s.free_bytes) : ojson(nullptr)}});
  }
  return {{"device",
           {{"activations", f.activations},
            {"activation_checkpointing", config.model.activation_checkpointing},
            {"activations_with_checkpointing", f.act_with},
            {"activations_without_checkpointing", f.act_without},
            {"resident", plan.resident_bytes},
            {"conversion_areas", plan.convert_bytes},
            {"slots", plan.slots},
            {"slot_bytes", plan.slot_bytes},
            {"slot_elements", plan.slot_elements},
            {"persistent_chunks", plan.persistent_chunks},
            {"persistent", plan.persistent_bytes},
            {"total", plan.device_bytes},
            {"budget", config.memory.device_budget_bytes},
            {"min_budget", plan.device_min_bytes},
            {"generation_kv_cache", f.kv_cache ? ojson(*f.kv_cache) : ojson(nullptr)},
            {"generation_bytes",
             f.generation_bytes ? ojson(*f.generation_bytes) : ojson(nullptr)}}},
          {"host",
           {{"classes", plan.host_class_bytes},
            {"staging", plan.host_staging_bytes},
            {"cache", plan.host_cache_bytes},
            {"cached_chunks", plan.cached_chunks},
            {"total", plan.host_bytes},
            {"pinned", plan.host_bytes > 0 && f.p.pin_memory},
            {"budget", config.memory.host_budget_bytes},
            {"min_budget", plan.host_bytes - plan.host_cache_bytes}}},
          {"nvme", {{"total", plan.nvme_bytes}, {"paths", paths}}}};
}

ojson plan_json(const PlanFacts& f, const Bandwidths& bw, const StepInputs& in,
                const StepPrediction& pred) {
  ojson class_list = ojson::array();
  for (const ClassRow& c : class_rows(f)) {
    class_list.push_back({{"class", c.name},
                          {"tier", tier_name(c.tier)},
                          {"bytes", c.bytes},
                          {"stored_dtype", kernels::dtype_name(c.stored)},
                          {"moves_dtype", kernels::dtype_name(c.moves)},
                          {"moved_bytes_per_param", kernels::dtype_bytes(c.moves)}});
  }
  auto opt = [](const std::optional<double>& v) { return v ? ojson(*v) : ojson(nullptr); };
  return {{"params", f.params},
          {"frozen_params", f.frozen_params},
          {"trained_params", f.trained_params},
          {"placement",
           {{"params", tier_name(f.p.params)},
            {"grads", tier_name(f.p.grads)},
            {"optimizer", tier_name(f.p.optimizer)},
            {"stage", f.config->zero.stage},
            {"working_dtype", kernels::dtype_name(f.p.working_dtype)}}},
          {"bytes", bytes_json(f)},
          {"classes", class_list},
          {"warnings", f.warnings},
          {"predicted",
           {{"step_s", pred.step_s},
            {"serial_s", pred.serial_s},
            {"bound", pred.bound},
            {"components",
             {{"compute_s", pred.compute_s},
              {"adam_s", pred.adam_s},
              {"nvme_read_s", opt(pred.nvme_read_s)},
              {"nvme_write_s", opt(pred.nvme_write_s)}}},
            {"cpu_s", pred.cpu_s},
            {"tokens_per_step", in.tokens_per_step},
            {"nvme_read_bytes", f.nvme_read_bytes},
            {"nvme_write_bytes", f.nvme_write_bytes},
            {"cpu_gflops", in.cpu_gflops},
            {"cpu_gflops_source", bw.cpu_source},
            {"host_update_gbps", in.host_update_gbps},
            {"nvme_read_gbps", opt(in.nvme_read_gbps)},
            {"nvme_write_gbps", opt(in.nvme_write_gbps)},
            {"tiers_source", bw.source},
            {"tiers_file", bw.where.empty() ? ojson(nullptr) : ojson(bw.where)}}}};
}

}  // namespace

absl::Status run_plan(const LoadedConfig& loaded, const PlanOptions& options) {
  const Config& config = loaded.config;
  std::ostream& out = options.json ? std::cerr : std::cout;
  // A bad --tiers file is bad input: refused before anything is printed.
  std::optional<TierBandwidths> file_tiers;
  if (!options.tiers_path.empty()) {
    absl::StatusOr<TierBandwidths> parsed = read_tiers_file(options.tiers_path);
    if (!parsed.ok()) return parsed.status();
    file_tiers = *parsed;
  }
  PlanFacts f;
  if (absl::Status s = gather_model(config, options.env, f); !s.ok()) return s;
  if (absl::Status s = plan_budgets(f); !s.ok()) return s;
  collect_warnings(f);
  print_classes(f, out);
  print_device(f, out);
  print_host_and_swap(f, out);
  if (config.world_size > 1 && f.budget_status.ok()) {
    const actors::MemoryBudgets budgets{config.memory.device_budget_bytes,
                                        config.memory.host_budget_bytes};
    std::vector<int> visits(f.layouts.size());
    for (size_t c = 0; c < visits.size(); ++c) visits[c] = f.model->grad_visits(c);
    const actors::ExchangeStaging exchange = actors::exchange_staging(
        f.layouts, visits, config.world_size, /*training=*/true,
        f.p.grads == actors::Tier::kDevice,
        {config.zero.overlap_comm, config.zero.reduce_bucket_size});
    absl::StatusOr<ojson> ranks =
        plan_ranks(f.p, budgets, f.layouts, f.activations, exchange, config.world_size,
                   static_cast<int>(config.zero.stage), out);
    if (!ranks.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config.source_path, ": ", ranks.status().message()));
    }
    f.ranks = *std::move(ranks);
  }
  if (!f.budget_status.ok()) {
    out << "warning: the budget is too small; `dsinf train` refuses this config (message below)\n";
    out.flush();
    return f.budget_status;
  }
  nvme_step_bytes(f);
  const bool uses_nvme = f.nvme_read_bytes > 0 || f.nvme_write_bytes > 0;
  absl::StatusOr<Bandwidths> bw = resolve_bandwidths(config, options, file_tiers, uses_nvme, out);
  if (!bw.ok()) return bw.status();
  const StepInputs in = step_inputs(f, *bw);
  const StepPrediction pred = predict_step(in);
  print_prediction(f, *bw, in, pred, out);
  if (options.json) {
    ojson j = plan_json(f, *bw, in, pred);
    if (!f.ranks.is_null()) j["ranks"] = f.ranks;
    std::cout << j.dump() << std::endl;
  }
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
