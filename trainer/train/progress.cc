#include "trainer/train/progress.h"

#include <filesystem>
#include <iostream>
#include <string>

#include "absl/strings/str_format.h"
#include "memory/util/format.h"

namespace dsinf::trainer {
namespace {

using json = nlohmann::json;

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Monitors named in the config, under output_path/job_name (output_path
// defaults to train.output_dir).
absl::StatusOr<std::vector<std::unique_ptr<Monitor>>> make_monitors(const Config& config) {
  namespace fs = std::filesystem;
  std::vector<std::unique_ptr<Monitor>> monitors;
  auto dir_of = [&](const MonitorConfig& m) {
    return (fs::path(m.output_path.empty() ? config.train.output_dir : m.output_path) / m.job_name)
        .string();
  };
  if (config.csv_monitor.enabled) {
    absl::StatusOr<std::unique_ptr<Monitor>> m = make_csv_monitor(dir_of(config.csv_monitor));
    if (!m.ok()) return m.status();
    monitors.push_back(*std::move(m));
  }
  if (config.tensorboard.enabled) {
    absl::StatusOr<std::unique_ptr<Monitor>> m =
        make_tensorboard_monitor(dir_of(config.tensorboard));
    if (!m.ok()) return m.status();
    monitors.push_back(*std::move(m));
  }
  return monitors;
}

}  // namespace

Progress::Progress(const Config& config, bool json, Session& session, size_t host_bytes)
    : config_(config), json_(json), session_(session), host_bytes_(host_bytes) {}

std::ostream& Progress::log() const { return human(json_); }

void Progress::opening(size_t tokens, int64_t windows) const {
  actors::Runtime& rt = *session_.runtime;
  log() << absl::StrFormat("dsinf %s | device %s | CPU Adam %s | %s: %d parameters\n",
                           DSINF_VERSION, rt.device_description(), rt.cpu_adam_isa(),
                           session_.model->describe(), session_.model->num_parameters());
  const actors::Placement& p = rt.placement();
  if (!p.all_on_device()) {
    const actors::MemoryPlan& plan = rt.plan();
    log() << absl::StrFormat(
        "zero stage %d: params on %s, gradients on %s, optimizer on %s | device: %s activations, "
        "%s resident, %d parameter slots of %s | host pool %s | nvme %s\n",
        config_.zero.stage, tier_name(p.params), tier_name(p.grads), tier_name(p.optimizer),
        util::format_bytes(plan.activation_bytes), util::format_bytes(plan.resident_bytes),
        plan.slots, util::format_bytes(plan.slot_bytes), util::format_bytes(plan.host_bytes),
        util::format_bytes(plan.nvme_bytes));
  }
  if (rt.ranks() > 1) {
    size_t owned = 0, trained = 0;
    for (int owner : rt.owners()) {
      trained += owner >= 0 ? 1 : 0;
      owned += owner == 0 ? 1 : 0;
    }
    log() << absl::StrFormat(
        "ranks %d, zero stage %d: each rank holds %s of the %d trained chunks' optimizer state "
        "(rank 0: %d)\n",
        rt.ranks(), config_.zero.stage, config_.zero.stage >= 1 ? "its own share" : "all",
        trained, config_.zero.stage >= 1 ? owned : trained);
  }
  log() << absl::StrFormat(
      "data %s: %d tokens, %d windows | batch %d = %d x %d accumulation%s | weights: %s\n",
      config_.data.path, tokens, windows, config_.train_batch_size,
      config_.train_micro_batch_size_per_gpu, config_.gradient_accumulation_steps,
      config_.world_size > 1 ? absl::StrFormat(" x %d ranks", config_.world_size) : "",
      session_.weights_source);
}

absl::Status Progress::open_monitors() {
  if (!primary_output()) return absl::OkStatus();  // rank 0 writes the monitors
  absl::StatusOr<std::vector<std::unique_ptr<Monitor>>> monitors = make_monitors(config_);
  if (!monitors.ok()) return monitors.status();
  monitors_ = *std::move(monitors);
  return absl::OkStatus();
}

void Progress::start(const TrainState& state) {
  first_step_ = state.step;
  swap_at_start_ = session_.runtime->nvme_stats();
  run_start_ = window_start_ = Clock::now();
}

absl::Status Progress::step(const TrainState& state, const actors::StepOutcome& outcome,
                            double lr) {
  const actors::LossScaler& scaler = session_.runtime->loss_scaler();
  if (outcome.skipped) {
    log() << absl::StrFormat("step %d: %s\n", state.step, outcome.overflow_message);
    if (json_) {
      emit_json({{"event", "overflow"},
                 {"step", state.step},
                 {"attempted_loss_scale", outcome.loss_scale},
                 {"loss_scale", scaler.scale()},
                 {"skipped_steps", state.skipped_steps}});
    }
  }
  time_fwd_ += outcome.forward_s;
  time_bwd_ += outcome.backward_s;
  time_step_ += outcome.update_s;
  window_tokens_ += config_.train_batch_size * config_.model.window();
  absl::Status status;
  for (auto& monitor : monitors_) {
    status.Update(monitor->write({{"Train/Samples/train_loss", state.last_loss, state.samples},
                                  {"Train/Samples/lr", lr, state.samples}}));
    if (scaler.enabled()) {
      status.Update(
          monitor->write({{"Train/Samples/loss_scale", outcome.loss_scale, state.samples}}));
    }
  }
  if (!status.ok()) return status;
  if (state.step % config_.steps_per_print == 0 || state.step == config_.train.steps) {
    print_step(state, outcome, lr);
  }
  return absl::OkStatus();
}

void Progress::print_step(const TrainState& state, const actors::StepOutcome& outcome, double lr) {
  actors::Runtime& rt = *session_.runtime;
  const actors::LossScaler& scaler = rt.loss_scaler();
  const double window_s = seconds_since(window_start_);
  const double elapsed = seconds_since(run_start_);
  const double tokens_per_s = window_s > 0 ? window_tokens_ / window_s : 0.0;
  const double eta = elapsed / static_cast<double>(state.step - first_step_) *
                     static_cast<double>(config_.train.steps - state.step);
  const memory::ArenaStats device = rt.backend().memory_stats();
  const size_t host = host_bytes_ + rt.host_in_use_bytes();
  log() << absl::StrFormat(
      "step %*d/%d | loss %.4f | lr %.3e%s | %.0f tok/s | elapsed %s | eta %s | device %s host "
      "%s nvme %s\n",
      static_cast<int>(std::to_string(config_.train.steps).size()), state.step, config_.train.steps,
      state.last_loss, lr,
      scaler.enabled()
          ? absl::StrFormat(" | loss scale %.0f (%d skipped)", scaler.scale(), state.skipped_steps)
          : std::string(),
      tokens_per_s, util::format_duration(elapsed), util::format_duration(eta),
      util::format_bytes(device.in_use_bytes), util::format_bytes(host),
      util::format_bytes(rt.nvme_bytes()));
  json line = {
      {"event", "step"},
      {"step", state.step},
      {"loss", state.last_loss},
      {"lr", lr},
      {"loss_scale", scaler.scale()},
      {"skipped_steps", state.skipped_steps},
      {"tokens_per_s", tokens_per_s},
      {"grad_norm", outcome.norm},
      {"elapsed_s", elapsed},
      {"eta_s", eta},
      {"bytes", {{"device", device.in_use_bytes}, {"host", host}, {"nvme", rt.nvme_bytes()}}}};
  if (config_.wall_clock_breakdown) {
    log() << absl::StrFormat("  time (ms) | forward %.1f | backward %.1f | step %.1f\n",
                             1e3 * time_fwd_, 1e3 * time_bwd_, 1e3 * time_step_);
    line["breakdown_ms"] = {
        {"forward", 1e3 * time_fwd_}, {"backward", 1e3 * time_bwd_}, {"step", 1e3 * time_step_}};
  }
  if (json_) emit_json(line);
  window_start_ = Clock::now();
  window_tokens_ = 0;
  time_fwd_ = time_bwd_ = time_step_ = 0;
}

absl::Status Progress::eval(const TrainState& state, const EvalResult& eval) {
  log() << absl::StrFormat("step %d | eval loss %.4f over %d tokens\n", state.step, eval.loss,
                           eval.tokens);
  if (json_) emit_json({{"event", "eval"}, {"step", state.step}, {"eval_loss", eval.loss}});
  absl::Status status;
  for (auto& monitor : monitors_) {
    status.Update(monitor->write({{"Train/Samples/eval_loss", eval.loss, state.samples}}));
  }
  return status;
}

json Progress::peak_bytes() const {
  actors::Runtime& rt = *session_.runtime;
  // activations: the device bytes the layer program holds besides the chunks
  // (activations, their gradients and the gradient visit), fixed at start-up.
  return {{"device", rt.backend().memory_stats().peak_bytes},
          {"host", host_bytes_ + rt.host_peak_bytes()},
          {"nvme", rt.nvme_bytes()},
          {"activations", rt.plan().activation_bytes}};
}

void Progress::nothing_to_train(const TrainState& state) const {
  log() << absl::StrFormat("%s is already at step %d of %d; nothing to train\n",
                           config_.train.output_dir, state.step, config_.train.steps);
  if (json_) {
    emit_json({{"event", "summary"},
               {"steps", state.step},
               {"steps_run", 0},
               {"final_loss", state.last_loss},
               {"peak_bytes", peak_bytes()}});
  }
}

// The actors' cost: a fetch of a chunk already on the device is one round
// trip of messages and nothing else; every fetch not taken from the ready
// board pays about that much.
json Progress::streaming(double elapsed) const {
  if (session_.runtime->placement().params == actors::Tier::kDevice) return nullptr;
  const actors::StreamerStats st = session_.runtime->streamer_stats();
  const uint64_t round_trips = st.hits - st.taken;
  const double round_trip_s =
      round_trips > 0 ? st.hit_ns * 1e-9 / static_cast<double>(round_trips) : 0;
  const double messaging_s = round_trip_s * static_cast<double>(st.fetches - st.taken);
  log() << absl::StrFormat(
      "parameter streaming: %d fetches, %d waited for a load, %d prefetched, %d taken on the "
      "device without a round trip; messaging %.1f us a round trip, %.3f%% of the run\n",
      st.fetches, st.waits, st.prefetches, st.taken, round_trip_s * 1e6,
      elapsed > 0 ? 100 * messaging_s / elapsed : 0.0);
  return {{"fetches", st.fetches},
          {"waited", st.waits},
          {"loads", st.loads},
          {"prefetches", st.prefetches},
          {"taken", st.taken},
          {"order_length", st.order_length},
          {"relearned", st.relearned},
          {"acquire_s", st.acquire_ns * 1e-9},
          {"round_trip_us", round_trip_s * 1e6},
          {"messaging_share", elapsed > 0 ? messaging_s / elapsed : 0.0}};
}

// Every rank's state bytes and peaks (a collective: every rank calls it).
absl::StatusOr<json> Progress::per_rank() const {
  actors::Runtime& rt = *session_.runtime;
  const actors::Runtime::StateBytes b = rt.state_bytes();
  const json peaks = peak_bytes();
  const std::vector<double> mine = {
      static_cast<double>(b.params), static_cast<double>(b.grads),
      static_cast<double>(b.optimizer), static_cast<double>(b.largest_chunk),
      peaks["device"].get<double>(), peaks["host"].get<double>(), peaks["nvme"].get<double>(),
      rt.exchange_s()};
  absl::StatusOr<std::vector<double>> all = rt.gather_values(mine);
  if (!all.ok()) return all.status();
  json ranks = json::array();
  for (int r = 0; r < rt.ranks(); ++r) {
    const double* v = all->data() + static_cast<size_t>(r) * mine.size();
    auto bytes = [&](int i) { return static_cast<uint64_t>(v[i]); };
    ranks.push_back({{"rank", r},
                     {"param_bytes", bytes(0)},
                     {"grad_bytes", bytes(1)},
                     {"optimizer_bytes", bytes(2)},
                     {"largest_chunk_bytes", bytes(3)},
                     {"peak_bytes", {{"device", bytes(4)}, {"host", bytes(5)}, {"nvme", bytes(6)}}},
                     {"exchange_s", v[7]}});
    if (rt.ranks() == 1) continue;
    log() << absl::StrFormat(
        "rank %d: parameters %s, gradients %s, optimizer state %s | peak device %s, host %s | "
        "gradient exchange %.2fs\n",
        r, util::format_bytes(bytes(0)), util::format_bytes(bytes(1)),
        util::format_bytes(bytes(2)), util::format_bytes(bytes(4)), util::format_bytes(bytes(5)),
        v[7]);
  }
  return ranks;
}

absl::Status Progress::finish(const TrainState& state, bool interrupted) {
  absl::Status status;
  for (auto& monitor : monitors_) status.Update(monitor->flush());
  if (!status.ok()) return status;
  actors::Runtime& rt = *session_.runtime;
  absl::StatusOr<json> ranks = per_rank();
  if (!ranks.ok()) return ranks.status();
  const double elapsed = seconds_since(run_start_);
  const int64_t steps_run = state.step - first_step_;
  log() << absl::StrFormat("%s at step %d: loss %.4f, %d steps in %s, peak device %s\n",
                           interrupted ? "interrupted" : "done", state.step, state.last_loss,
                           steps_run, util::format_duration(elapsed),
                           util::format_bytes(rt.backend().memory_stats().peak_bytes));
  const json streamed = streaming(elapsed);
  if (json_) {
    const double tokens =
        static_cast<double>(steps_run * config_.train_batch_size) * config_.model.window();
    // The swap's traffic since the weights were loaded (a frozen base is read, never written).
    const nvme::EngineStats swap = rt.nvme_stats();
    emit_json({{"event", "summary"},
               {"steps", state.step},
               {"steps_run", steps_run},
               {"final_loss", state.last_loss},
               {"skipped_steps", state.skipped_steps},
               {"elapsed_s", elapsed},
               {"tokens_per_s", elapsed > 0 ? tokens / elapsed : 0.0},
               {"interrupted", interrupted},
               {"peak_bytes", peak_bytes()},
               {"streaming", streamed},
               {"swap_io",
                {{"read_bytes", swap.bytes_read - swap_at_start_.bytes_read},
                 {"written_bytes", swap.bytes_written - swap_at_start_.bytes_written}}},
               // Background saves: how long the optimizer waited for one to read a chunk.
               {"checkpoint_wait_s", rt.snapshot_wait_s()},
               {"ranks", *ranks}});
  }
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
