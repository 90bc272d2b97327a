#include "trainer/session.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actors/trainer.h"
#include "kernels/backend.h"
#include "kernels/cpu/adam.h"
#include "memory/util/format.h"
#include "nlohmann/json.hpp"
#include "trainer/checkpoint.h"
#include "trainer/data.h"
#include "trainer/gpt2.h"
#include "trainer/monitor.h"
#include "trainer/offload.h"
#include "trainer/optimizer.h"
#include "trainer/placement.h"
#include "trainer/runtime.h"
#include "trainer/safetensors.h"
#include "trainer/scheduler.h"
#include "trainer/train_step.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::atomic<bool> g_interrupted{false};
extern "C" void on_interrupt(int) { g_interrupted.store(true); }

// Human lines go to stdout, or to stderr when stdout carries JSON.
std::ostream& human(const RunOptions& options) { return options.json ? std::cerr : std::cout; }

void emit_json(const json& object) { std::cout << object.dump() << std::endl; }

// model.init_from into the model; errors name the key.
absl::Status load_init_from(const Config& config, GPT2& model) {
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::open(config.model.init_from);
  absl::Status status = file.ok() ? model.load_hf(*file) : file.status();
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(config.source_path, ": model.init_from: ", status.message()));
}

// Loads the weights eval and export use: the newest checkpoint in output_dir,
// else model.init_from, else the seeded initialisation.
absl::Status load_inference_weights(const Config& config, Runtime& rt) {
  absl::StatusOr<std::optional<std::string>> latest =
      find_latest_checkpoint(config.train.output_dir);
  if (!latest.ok()) return latest.status();
  if (latest->has_value()) {
    absl::StatusOr<TrainState> state =
        load_checkpoint(**latest, config.model, rt.model->layouts(), rt.checkpoint_state());
    if (!state.ok()) return state.status();
    rt.weights_source = **latest;
    return absl::OkStatus();
  }
  if (!config.model.init_from.empty()) {
    rt.weights_source = config.model.init_from;
    return load_init_from(config, *rt.model);
  }
  rt.weights_source = absl::StrCat("seeded initialisation (model.seed ", config.model.seed, ")");
  return rt.model->init_random(config.model.seed);
}

struct EvalResult {
  double loss = 0;
  int64_t windows = 0;
  int64_t tokens = 0;
};

// Mean token cross-entropy over every complete window, in order.
absl::StatusOr<EvalResult> evaluate(GPT2& model, const std::vector<int32_t>& tokens,
                                    int max_batch) {
  const int T = model.config().n_positions;
  EvalResult result;
  result.windows = num_windows(tokens.size(), T);
  std::vector<int32_t> inputs(static_cast<size_t>(max_batch) * T), targets(inputs.size());
  double sum = 0;
  for (int64_t w = 0; w < result.windows; w += max_batch) {
    const int B = static_cast<int>(std::min<int64_t>(max_batch, result.windows - w));
    for (int b = 0; b < B; ++b) {
      const size_t start = static_cast<size_t>(w + b) * T;
      std::copy_n(tokens.begin() + start, T, inputs.begin() + static_cast<size_t>(b) * T);
      std::copy_n(tokens.begin() + start + 1, T, targets.begin() + static_cast<size_t>(b) * T);
    }
    absl::StatusOr<float> loss = model.forward(inputs.data(), targets.data(), B);
    if (!loss.ok()) return loss.status();
    sum += model.last_loss_sum();
  }
  result.tokens = result.windows * T;
  result.loss = result.tokens > 0 ? sum / static_cast<double>(result.tokens) : 0.0;
  return result;
}

absl::StatusOr<std::vector<int32_t>> load_data(const Config& config, const std::string& path,
                                               const std::string& key) {
  absl::StatusOr<std::vector<int32_t>> tokens = load_tokens(path, config.model.vocab_size, key);
  if (!tokens.ok()) {
    return absl::Status(tokens.status().code(),
                        absl::StrCat(config.source_path, ": ", tokens.status().message()));
  }
  if (num_windows(tokens->size(), config.model.n_positions) < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.source_path, ": ", key, ": '", path, "' holds ", tokens->size(),
                     " tokens, fewer than model.n_positions + 1 = ", config.model.n_positions + 1));
  }
  return tokens;
}

}  // namespace

absl::Status run_eval(const LoadedConfig& loaded, const RunOptions& options) {
  const Config& config = loaded.config;
  const std::string& path =
      config.data.eval_path.empty() ? config.data.path : config.data.eval_path;
  absl::StatusOr<std::vector<int32_t>> tokens =
      load_data(config, path, config.data.eval_path.empty() ? "data.path" : "data.eval_path");
  if (!tokens.ok()) return tokens.status();
  absl::StatusOr<Runtime> rt = make_runtime(config, /*with_optimizer=*/false);
  if (!rt.ok()) return rt.status();
  if (absl::Status s = load_inference_weights(config, *rt); !s.ok()) return s;
  absl::StatusOr<EvalResult> result =
      evaluate(*rt->model, *tokens, static_cast<int>(config.train_micro_batch_size_per_gpu));
  if (!result.ok()) return result.status();
  human(options) << absl::StrFormat(
      "eval loss %.6f over %d tokens (%d windows) of %s; weights: %s\n", result->loss,
      result->tokens, result->windows, path, rt->weights_source);
  if (options.json) {
    emit_json({{"loss", result->loss},
               {"tokens", result->tokens},
               {"windows", result->windows},
               {"weights", rt->weights_source}});
  }
  return absl::OkStatus();
}

absl::Status run_export(const LoadedConfig& loaded, const std::string& out_path,
                        const RunOptions& options) {
  const Config& config = loaded.config;
  std::error_code ec;
  const fs::path parent = fs::absolute(out_path, ec).parent_path();
  if (out_path.empty() || fs::is_directory(out_path, ec) || !fs::is_directory(parent, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--out: '", out_path, "' must name a file in an existing directory"));
  }
  absl::StatusOr<Runtime> rt = make_runtime(config, /*with_optimizer=*/false);
  if (!rt.ok()) return rt.status();
  if (absl::Status s = load_inference_weights(config, *rt); !s.ok()) return s;
  absl::StatusOr<std::vector<HostTensor>> tensors = rt->model->export_hf();
  if (!tensors.ok()) return tensors.status();
  std::vector<TensorToWrite> to_write;
  size_t bytes = 0;
  for (const HostTensor& t : *tensors) {
    to_write.push_back({t.name, t.shape, t.data.data()});
    bytes += t.data.size() * sizeof(float);
  }
  const ModelConfig& m = config.model;
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"dsinf_model",
       absl::StrFormat("gpt2 n_layer=%d n_head=%d n_embd=%d n_positions=%d vocab_size=%d",
                       m.n_layer, m.n_head, m.n_embd, m.n_positions, m.vocab_size)},
      {"dsinf_weights", rt->weights_source}};
  if (absl::Status s = write_safetensors(out_path, to_write, metadata); !s.ok()) return s;
  human(options) << absl::StrFormat("exported %d tensors (%s) from %s to %s\n", to_write.size(),
                                    util::format_bytes(bytes), rt->weights_source,
                                    out_path);
  if (options.json) {
    emit_json({{"file", out_path},
               {"tensors", to_write.size()},
               {"bytes", bytes},
               {"weights", rt->weights_source}});
  }
  return absl::OkStatus();
}

namespace {

// Monitors named in the config, under output_path/job_name (output_path defaults to
// train.output_dir).
absl::StatusOr<std::vector<std::unique_ptr<Monitor>>> make_monitors(const Config& config) {
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

json peak_bytes_json(const Runtime& rt, size_t host_peak) {
  return {{"device", rt.backend->memory_stats().peak_bytes},
          {"host", host_peak + rt.host_pool_peak_bytes()},
          {"nvme", rt.nvme_bytes()}};
}

}  // namespace

namespace {
absl::Status train_loop(const LoadedConfig& loaded, const RunOptions& options);
}  // namespace

absl::Status run_train(const LoadedConfig& loaded, const RunOptions& options) {
  absl::Status status = train_loop(loaded, options);
  // A disk that fails mid-run (NVMe swap, checkpoint writes) stops training;
  // what was saved stays valid, and the user should know it.
  switch (status.code()) {
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
      return absl::Status(status.code(),
                          absl::StrCat(status.message(),
                                       "; training stopped, and the newest "
                                       "checkpoint in ",
                                       loaded.config.train.output_dir,
                                       " (if any) is intact: fix the disk and run the same "
                                       "command to resume"));
    default:
      return status;
  }
}

namespace {

absl::Status train_loop(const LoadedConfig& loaded, const RunOptions& options) {
  const Config& config = loaded.config;
  const int B = static_cast<int>(config.train_micro_batch_size_per_gpu);
  const int T = config.model.n_positions;
  const int64_t gas = config.gradient_accumulation_steps;
  std::ostream& log = human(options);

  // Everything is read and checked before the first byte is written.
  absl::StatusOr<std::vector<int32_t>> tokens = load_data(config, config.data.path, "data.path");
  if (!tokens.ok()) return tokens.status();
  std::vector<int32_t> eval_tokens;
  if (config.train.eval_interval > 0) {
    const bool own = !config.data.eval_path.empty();
    absl::StatusOr<std::vector<int32_t>> e =
        own ? load_data(config, config.data.eval_path, "data.eval_path") : tokens;
    if (!e.ok()) return e.status();
    eval_tokens = *std::move(e);
  }
  absl::StatusOr<Runtime> rt = make_runtime(config, /*with_optimizer=*/true);
  if (!rt.ok()) return rt.status();
  GPT2& model = *rt->model;

  TrainState state;
  absl::StatusOr<std::optional<std::string>> latest =
      find_latest_checkpoint(config.train.output_dir);
  if (!latest.ok()) return latest.status();
  if (latest->has_value()) {
    absl::StatusOr<TrainState> restored =
        load_checkpoint(**latest, config.model, model.layouts(), rt->checkpoint_state());
    if (!restored.ok()) return restored.status();
    state = *restored;
    // The scale continues where the saved run left it (a run saved without
    // fp16, or before dsinf kept it, starts the configured scale afresh).
    if (rt->loss_scaler.enabled() && state.loss_scaler.has_value()) {
      rt->loss_scaler.restore(*state.loss_scaler);
    }
    rt->weights_source = **latest;
    // A save interrupted by a crash left its temporary; it can never complete.
    for (const std::string& name : remove_stale_temporaries(config.train.output_dir)) {
      log << "removed " << name << ", the unfinished save of a process that is gone\n";
    }
    if (state.data_tokens != tokens->size()) {
      log << "warning: data.path now holds " << tokens->size() << " tokens, the checkpoint was "
          << "trained on " << state.data_tokens << "; the data order after resume differs\n";
    }
  } else if (!config.model.init_from.empty()) {
    if (absl::Status s = load_init_from(config, model); !s.ok()) return s;
    rt->weights_source = config.model.init_from;
  } else {
    if (absl::Status s = model.init_random(config.model.seed); !s.ok()) return s;
    rt->weights_source = absl::StrCat("seeded initialisation (model.seed ", config.model.seed, ")");
  }
  WindowSampler sampler(&*tokens, T, config.train.seed);
  if (absl::Status s = sampler.restore(state.sampler); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(**latest, ": ", s.message()));
  }
  const size_t host_bytes =
      (tokens->size() + eval_tokens.size() + 2 * static_cast<size_t>(B) * T) * sizeof(int32_t);

  log << absl::StrFormat(
      "dsinf %s | device %s | CPU Adam %s | gpt2 %d layers, %d heads, %d channels, %d positions, "
      "vocab %d: %d parameters\n",
      DSINF_VERSION, rt->device_description, kernels::cpu::isa_name(kernels::cpu::best_isa()),
      config.model.n_layer, config.model.n_head, config.model.n_embd, T, config.model.vocab_size,
      model.num_parameters());
  if (rt->offload) {
    const MemoryPlan& plan = rt->plan;
    log << absl::StrFormat(
        "zero stage %d: params on %s, gradients on %s, optimizer on %s | device: %s activations, "
        "%s resident, %d parameter slots of %s | host pool %s | nvme %s\n",
        config.zero.stage, tier_name(rt->placement.params), tier_name(rt->placement.grads),
        tier_name(rt->placement.optimizer), util::format_bytes(plan.activation_bytes),
        util::format_bytes(plan.resident_bytes), plan.slots, util::format_bytes(plan.slot_bytes),
        util::format_bytes(plan.host_bytes), util::format_bytes(plan.nvme_bytes));
  }
  log << absl::StrFormat(
      "data %s: %d tokens, %d windows | batch %d = %d x %d accumulation | weights: %s\n",
      config.data.path, tokens->size(), sampler.windows(), config.train_batch_size, B, gas,
      rt->weights_source);
  if (state.step >= config.train.steps) {
    log << absl::StrFormat("%s is already at step %d of %d; nothing to train\n",
                           config.train.output_dir, state.step, config.train.steps);
    if (options.json) {
      emit_json({{"event", "summary"},
                 {"steps", state.step},
                 {"steps_run", 0},
                 {"final_loss", state.last_loss},
                 {"peak_bytes", peak_bytes_json(*rt, host_bytes)}});
    }
    return absl::OkStatus();
  }

  // From here on the run writes: the output directory, monitors, checkpoints.
  std::error_code ec;
  fs::create_directories(config.train.output_dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(config.source_path,
                                                   ": train.output_dir: cannot create '",
                                                   config.train.output_dir, "': ", ec.message()));
  }
  absl::StatusOr<std::vector<std::unique_ptr<Monitor>>> monitors = make_monitors(config);
  if (!monitors.ok()) return monitors.status();
  g_interrupted.store(false);
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);

  const int64_t first_step = state.step;
  const auto run_start = Clock::now();
  auto window_start = run_start;
  int64_t window_tokens = 0;
  double time_fwd = 0, time_bwd = 0, time_step = 0;
  auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  absl::Status status;
  bool interrupted = false;
  // Saves of offloaded state run beside the next steps (destroyed before rt).
  BackgroundSave background;
  auto finish_background_save = [&]() -> absl::Status {
    if (!background.busy()) return absl::OkStatus();
    absl::StatusOr<std::string> saved = background.finish();
    if (!saved.ok()) return saved.status();
    log << "saved checkpoint " << *saved << "\n";
    return absl::OkStatus();
  };
  // The trainer actor runs each step; the session logs, evaluates and saves in between.
  StepOutcome outcome;
  double lr = 0;
  auto step_fn = [&](int64_t index) -> absl::Status {
    absl::StatusOr<StepOutcome> done = train_step(
        *rt, config, index, lr, [&](int32_t* in, int32_t* out) { sampler.next_batch(B, in, out); });
    if (!done.ok()) return done.status();
    outcome = *done;
    return absl::OkStatus();
  };
  std::unique_ptr<actors::TrainerActor> trainer =
      actors::TrainerActor::create(*rt->actors, step_fn);
  while (state.step < config.train.steps) {
    const int64_t it = state.step;
    // As DeepSpeed: a skipped (fp16 overflow) step does not advance the schedule.
    lr = learning_rate(config.scheduler, config.optimizer, it - state.skipped_steps);
    if (absl::Status s = trainer->step(it); !s.ok()) return s;
    if (outcome.skipped) {
      ++state.skipped_steps;
      log << absl::StrFormat("step %d: %s\n", it + 1, outcome.overflow_message);
      if (options.json) {
        emit_json({{"event", "overflow"},
                   {"step", it + 1},
                   {"attempted_loss_scale", outcome.loss_scale},
                   {"loss_scale", rt->loss_scaler.scale()},
                   {"skipped_steps", state.skipped_steps}});
      }
    }
    if (rt->loss_scaler.enabled()) state.loss_scaler = rt->loss_scaler.state();
    const double norm = outcome.norm;
    time_fwd += outcome.forward_s;
    time_bwd += outcome.backward_s;
    time_step += outcome.update_s;
    state.step = it + 1;
    state.samples += config.train_batch_size;
    state.sampler = sampler.state();
    state.last_loss = outcome.loss;
    state.data_tokens = tokens->size();
    window_tokens += config.train_batch_size * T;
    for (auto& monitor : *monitors) {
      status.Update(monitor->write({{"Train/Samples/train_loss", state.last_loss, state.samples},
                                    {"Train/Samples/lr", lr, state.samples}}));
      if (rt->loss_scaler.enabled()) {
        status.Update(
            monitor->write({{"Train/Samples/loss_scale", outcome.loss_scale, state.samples}}));
      }
    }
    if (!status.ok()) return status;

    const bool last = state.step == config.train.steps;
    if (state.step % config.steps_per_print == 0 || last) {
      const double window_s = seconds_since(window_start);
      const double elapsed = seconds_since(run_start);
      const double tokens_per_s = window_s > 0 ? window_tokens / window_s : 0.0;
      const double eta = elapsed / static_cast<double>(state.step - first_step) *
                         static_cast<double>(config.train.steps - state.step);
      const memory::ArenaStats device = rt->backend->memory_stats();
      log << absl::StrFormat(
          "step %*d/%d | loss %.4f | lr %.3e%s | %.0f tok/s | elapsed %s | eta %s | device %s host "
          "%s nvme %s\n",
          static_cast<int>(std::to_string(config.train.steps).size()), state.step,
          config.train.steps, state.last_loss, lr,
          rt->loss_scaler.enabled() ? absl::StrFormat(" | loss scale %.0f (%d skipped)",
                                                      rt->loss_scaler.scale(), state.skipped_steps)
                                    : std::string(),
          tokens_per_s, util::format_duration(elapsed), util::format_duration(eta),
          util::format_bytes(device.in_use_bytes),
          util::format_bytes(host_bytes + rt->host_pool_bytes()),
          util::format_bytes(rt->nvme_bytes()));
      json line = {{"event", "step"},
                   {"step", state.step},
                   {"loss", state.last_loss},
                   {"lr", lr},
                   {"loss_scale", rt->loss_scaler.scale()},
                   {"skipped_steps", state.skipped_steps},
                   {"tokens_per_s", tokens_per_s},
                   {"grad_norm", norm},
                   {"elapsed_s", elapsed},
                   {"eta_s", eta},
                   {"bytes",
                    {{"device", device.in_use_bytes},
                     {"host", host_bytes + rt->host_pool_bytes()},
                     {"nvme", rt->nvme_bytes()}}}};
      if (config.wall_clock_breakdown) {
        log << absl::StrFormat("  time (ms) | forward %.1f | backward %.1f | step %.1f\n",
                               1e3 * time_fwd, 1e3 * time_bwd, 1e3 * time_step);
        line["breakdown_ms"] = {
            {"forward", 1e3 * time_fwd}, {"backward", 1e3 * time_bwd}, {"step", 1e3 * time_step}};
      }
      if (options.json) emit_json(line);
      window_start = Clock::now();
      window_tokens = 0;
      time_fwd = time_bwd = time_step = 0;
    }
    if (config.train.eval_interval > 0 && (state.step % config.train.eval_interval == 0 || last)) {
      absl::StatusOr<EvalResult> eval = evaluate(model, eval_tokens, B);
      if (!eval.ok()) return eval.status();
      log << absl::StrFormat("step %d | eval loss %.4f over %d tokens\n", state.step, eval->loss,
                             eval->tokens);
      if (options.json)
        emit_json({{"event", "eval"}, {"step", state.step}, {"eval_loss", eval->loss}});
      for (auto& monitor : *monitors) {
        status.Update(monitor->write({{"Train/Samples/eval_loss", eval->loss, state.samples}}));
      }
      if (!status.ok()) return status;
    }
    interrupted = g_interrupted.load();
    const bool save_now =
        config.train.save_interval > 0 && state.step % config.train.save_interval == 0;
    if (background.ended()) {
      if (absl::Status s = finish_background_save(); !s.ok()) return s;
    }
    if (save_now || last || interrupted) {
      // One save at a time: the previous one ends before the next snapshot.
      if (absl::Status s = finish_background_save(); !s.ok()) return s;
      CheckpointState& chunks = rt->checkpoint_state();
      if (chunks.saves_in_background() && !last && !interrupted) {
        background.start(config.train.output_dir, config.model, model.layouts(), chunks, state);
      } else {
        absl::StatusOr<std::string> saved =
            save_checkpoint(config.train.output_dir, config.model, model.layouts(), chunks, state);
        if (!saved.ok()) return saved.status();
        log << "saved checkpoint " << *saved << "\n";
      }
    }
    if (interrupted) break;
  }
  if (absl::Status s = finish_background_save(); !s.ok()) return s;
  for (auto& monitor : *monitors) status.Update(monitor->flush());
  if (!status.ok()) return status;
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  const double elapsed = seconds_since(run_start);
  const int64_t steps_run = state.step - first_step;
  log << absl::StrFormat("%s at step %d: loss %.4f, %d steps in %s, peak device %s\n",
                         interrupted ? "interrupted" : "done", state.step, state.last_loss,
                         steps_run, util::format_duration(elapsed),
                         util::format_bytes(rt->backend->memory_stats().peak_bytes));
  json streaming = nullptr;
  if (rt->offload && rt->placement.params != Tier::kDevice) {
    // The actors' cost: a fetch of a chunk already on the device is one round
    // trip of messages and nothing else; every fetch pays about that much.
    const actors::StreamerStats st = rt->offload->streamer_stats();
    const double round_trip_s = st.hits > 0 ? st.hit_ns * 1e-9 / static_cast<double>(st.hits) : 0;
    const double messaging_s = round_trip_s * static_cast<double>(st.fetches);
    streaming = {{"fetches", st.fetches},
                 {"waited", st.waits},
                 {"loads", st.loads},
                 {"prefetches", st.prefetches},
                 {"order_length", st.order_length},
                 {"relearned", st.relearned},
                 {"acquire_s", st.acquire_ns * 1e-9},
                 {"round_trip_us", round_trip_s * 1e6},
                 {"messaging_share", elapsed > 0 ? messaging_s / elapsed : 0.0}};
    log << absl::StrFormat(
        "parameter streaming: %d fetches, %d waited for a load, %d prefetched; messaging %.1f us "
        "a round trip, %.3f%% of the run\n",
        st.fetches, st.waits, st.prefetches, round_trip_s * 1e6,
        elapsed > 0 ? 100 * messaging_s / elapsed : 0.0);
  }
  if (options.json) {
    emit_json(
        {{"event", "summary"},
         {"steps", state.step},
         {"steps_run", steps_run},
         {"final_loss", state.last_loss},
         {"skipped_steps", state.skipped_steps},
         {"elapsed_s", elapsed},
         {"tokens_per_s", elapsed > 0 ? steps_run * config.train_batch_size * T / elapsed : 0.0},
         {"interrupted", interrupted},
         {"peak_bytes", peak_bytes_json(*rt, host_bytes)},
         {"streaming", streaming},
         // Background saves: how long the optimizer waited for one to read a chunk.
         {"checkpoint_wait_s", rt->offload ? rt->offload->snapshot_wait_s() : 0.0}});
  }
  if (interrupted) {
    return absl::CancelledError(
        absl::StrCat("interrupted at step ", state.step, "; run the same command again to resume"));
  }
  return absl::OkStatus();
}

}  // namespace

}  // namespace dsinf::trainer
