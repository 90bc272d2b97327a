// `dsinf train`: resume, then step, log, evaluate and save until
// train.steps, or until interrupted (the current step finishes and is saved).
#include <atomic>
#include <csignal>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "trainer/data/text_data.h"
#include <iostream>
#include "trainer/train/eval.h"
#include "trainer/train/jobs.h"
#include "trainer/train/progress.h"
#include "trainer/train/resume.h"
#include "trainer/train/save.h"
#include "trainer/train/scheduler.h"
#include "trainer/train/session.h"

namespace dsinf::trainer {
namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_interrupt(int) { g_interrupted.store(true); }

struct TrainData {
  Windows windows;
  Windows eval_windows;  // empty without train.eval_interval
};

absl::StatusOr<TrainData> load_train_data(const Config& config) {
  absl::StatusOr<DataLoader> loader = DataLoader::open(config);
  if (!loader.ok()) return loader.status();
  TrainData data;
  absl::StatusOr<Windows> windows = loader->load(config.data.path, "data.path", std::cerr);
  if (!windows.ok()) return windows.status();
  data.windows = *std::move(windows);
  if (config.train.eval_interval > 0) {
    const bool own = !config.data.eval_path.empty();
    absl::StatusOr<Windows> e =
        own ? loader->load(config.data.eval_path, "data.eval_path", std::cerr) : data.windows;
    if (!e.ok()) return e.status();
    data.eval_windows = *std::move(e);
  }
  return data;
}

// The next step's request: its learning rate (a skipped fp16 step does not
// advance the schedule, as in DeepSpeed) and this rank's micro-batches. The
// sampler draws every rank's micro-batches of the global batch in the same
// order on every rank; rank r keeps micro-batches r, N + r, 2N + r, ...
actors::StepRequest next_request(const Config& config, const TrainState& state,
                                 WindowSampler& sampler, int rank) {
  const int B = static_cast<int>(config.train_micro_batch_size_per_gpu);
  const size_t window = static_cast<size_t>(B) * config.model.window();
  const int N = config.world_size;
  actors::StepRequest request;
  request.index = state.step;
  request.lr = learning_rate(config.scheduler, config.optimizer, state.step - state.skipped_steps);
  const size_t total = window * static_cast<size_t>(config.gradient_accumulation_steps);
  request.inputs.resize(total);
  request.targets.resize(total);
  std::vector<int32_t> other_inputs(N > 1 ? window : 0), other_targets(N > 1 ? window : 0);
  size_t at = 0;
  for (int64_t m = 0; m < config.gradient_accumulation_steps * N; ++m) {
    if (m % N == rank) {
      sampler.next_batch(B, request.inputs.data() + at, request.targets.data() + at);
      at += window;
    } else {
      sampler.next_batch(B, other_inputs.data(), other_targets.data());
    }
  }
  return request;
}

void record_step(const Config& config, const actors::StepOutcome& outcome, Session& session,
                 const WindowSampler& sampler, size_t data_tokens, TrainState& state) {
  if (outcome.skipped) ++state.skipped_steps;
  if (session.runtime->loss_scaler().enabled()) {
    state.loss_scaler = session.runtime->loss_scaler().state();
  }
  state.step += 1;
  state.samples += config.train_batch_size;
  state.sampler = sampler.state();
  state.last_loss = outcome.loss;
  state.data_tokens = data_tokens;
}

// From here on the run writes: the output directory, monitors, checkpoints.
absl::Status prepare_output(const Config& config, Progress& progress) {
  std::error_code ec;
  std::filesystem::create_directories(config.train.output_dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(config.source_path,
                                                   ": train.output_dir: cannot create '",
                                                   config.train.output_dir, "': ", ec.message()));
  }
  return progress.open_monitors();
}

// An interrupt stops every rank after the same step: the ranks agree on it.
absl::StatusOr<bool> interrupted_anywhere(Session& session) {
  const double mine = g_interrupted.load() ? 1.0 : 0.0;
  absl::StatusOr<std::vector<double>> all = session.runtime->gather_values({mine});
  if (!all.ok()) return all.status();
  for (double v : *all) {
    if (v != 0) return true;
  }
  return false;
}

// Steps until train.steps or an interrupt; returns whether interrupted.
absl::StatusOr<bool> run_steps(const Config& config, Session& session, const TrainData& data,
                               WindowSampler& sampler, Progress& progress, Saver& saver,
                               TrainState& state) {
  while (state.step < config.train.steps) {
    actors::StepRequest request = next_request(config, state, sampler, session.runtime->rank());
    const double lr = request.lr;
    absl::StatusOr<actors::StepOutcome> outcome = session.runtime->step(std::move(request));
    if (!outcome.ok()) return outcome.status();
    record_step(config, *outcome, session, sampler, data.windows.tokens(), state);
    if (absl::Status s = progress.step(state, *outcome, lr); !s.ok()) return s;
    const bool last = state.step == config.train.steps;
    const int64_t every = config.train.eval_interval;
    if (every > 0 && (state.step % every == 0 || last)) {
      absl::StatusOr<EvalResult> eval =
          evaluate(session.runtime->model(), data.eval_windows,
                   static_cast<int>(config.train_micro_batch_size_per_gpu));
      if (!eval.ok()) return eval.status();
      if (absl::Status s = progress.eval(state, *eval); !s.ok()) return s;
    }
    absl::StatusOr<bool> interrupted = interrupted_anywhere(session);
    if (!interrupted.ok()) return interrupted.status();
    if (absl::Status s = saver.after_step(state, last, *interrupted); !s.ok()) return s;
    if (*interrupted) return true;
  }
  return false;
}

absl::Status train_loop(const Config& config, const RunOptions& options) {
  // Everything is read and checked before the first byte is written.
  absl::StatusOr<TrainData> data = load_train_data(config);
  if (!data.ok()) return data.status();
  absl::StatusOr<Session> session = open_session(config, options.env, /*training=*/true);
  if (!session.ok()) return session.status();
  const int B = static_cast<int>(config.train_micro_batch_size_per_gpu);
  const int T = config.model.window();
  const size_t host_bytes = data->windows.bytes() + data->eval_windows.bytes() +
                            2 * static_cast<size_t>(B) * T * sizeof(int32_t);
  Progress progress(config, options.json, *session, host_bytes);
  WindowSampler sampler(&data->windows, config.train.seed);
  absl::StatusOr<TrainState> state =
      resume_or_start(config, *session, sampler, data->windows.tokens(), progress.log());
  if (!state.ok()) return state.status();
  progress.opening(data->windows.tokens(), sampler.windows());
  if (state->step >= config.train.steps) {
    progress.nothing_to_train(*state);
    return absl::OkStatus();
  }
  if (absl::Status s = prepare_output(config, progress); !s.ok()) return s;
  g_interrupted.store(false);
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  progress.start(*state);
  // Saves of offloaded state run beside the next steps (it ends before the session).
  Saver saver(config, session->runtime->layouts(), *session->runtime, options.env.save_pace_ms,
              progress.log(),
              SaveRanks{options.env.comm, session->runtime->owners(), session->model->layouts()});
  absl::StatusOr<bool> interrupted =
      run_steps(config, *session, *data, sampler, progress, saver, *state);
  if (!interrupted.ok()) return interrupted.status();
  if (absl::Status s = saver.finish(); !s.ok()) return s;
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (absl::Status s = progress.finish(*state, *interrupted); !s.ok()) return s;
  if (*interrupted) {
    return absl::CancelledError(absl::StrCat("interrupted at step ", state->step,
                                             "; run the same command again to resume"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status run_train(const LoadedConfig& loaded, const RunOptions& options) {
  absl::Status status = train_loop(loaded.config, options);
  // A disk that fails mid-run (NVMe swap, checkpoint writes) stops training;
  // what was saved stays valid, and the user should know it.
  switch (status.code()) {
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
      return absl::Status(
          status.code(),
          absl::StrCat(status.message(), "; training stopped, and the newest checkpoint in ",
                       loaded.config.train.output_dir,
                       " (if any) is intact: fix the disk and run the same "
                       "command to resume"));
    default:
      return status;
  }
}

}  // namespace dsinf::trainer
