// Checkpoints: one file per save, "<output_dir>/ckpt-<step>.dsinf", holding
// the parameters, Adam m and v of every chunk (raw, page-aligned sections,
// each with a CRC32C) and the training state as JSON. Written atomically; the
// pointer file "<output_dir>/latest" is replaced last, so a crash at any point
// leaves the previous checkpoint as the newest complete one.
//
// File layout: "DSINFCKP", zero padding to 4096 | sections, each page-aligned |
// header JSON (training state, model shape, section table with offsets, sizes
// and CRC32Cs) | footer: uint64 LE header offset, uint64 LE header length,
// uint32 LE CRC32C of the header, "DSINFCKP". The header goes last so the
// file is written in one sequential pass.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "memory/chunk_layout.h"
#include "trainer/config.h"
#include "trainer/data.h"
#include "trainer/loss_scaler.h"

namespace dsinf::trainer {

class GPT2;
class Optimizer;

struct TrainState {
  int64_t step = 0;     // optimizer steps completed
  int64_t samples = 0;  // training windows consumed
  SamplerState sampler;
  double last_loss = 0;       // mean loss of the last step
  uint64_t data_tokens = 0;   // size of the training data when saved (a warning if it changes)
  int64_t skipped_steps = 0;  // steps whose update an fp16 overflow skipped
  std::optional<LossScalerState> loss_scaler;  // fp16 runs
};

// What a checkpoint holds of the model and optimizer, wherever those bytes live
// (device, host or NVMe): each chunk of each class (kParamClass the fp32
// weights, kMClass and kVClass Adam's moments) as the chunk layout's bytes().
inline constexpr int kParamClass = 0, kMClass = 1, kVClass = 2;
class CheckpointState {
 public:
  virtual ~CheckpointState() = default;
  virtual absl::Status read_class(int cls, size_t chunk, std::byte* host) = 0;
  virtual absl::Status write_class(int cls, size_t chunk, const std::byte* host) = 0;
  virtual bool has_optimizer() const = 0;  // false: parameters only (eval, export)
  virtual int64_t optimizer_steps() const = 0;
  virtual void set_optimizer_steps(int64_t steps) = 0;

  // Saving in the background, while training goes on. begin_snapshot(), on
  // the trainer's thread between steps, fixes the state after the steps done
  // so far; read_snapshot() then reads it from another thread, chunk by chunk
  // in order, snapshot_chunk_read(c) saying chunk c is done, and end_snapshot()
  // lets it go (also after an error). Updates of later steps wait, chunk by
  // chunk, until the snapshot has read the chunk: no full copy is made and no
  // step waits for the whole save.
  virtual bool saves_in_background() const { return false; }
  virtual void begin_snapshot() {}
  virtual absl::Status read_snapshot(int cls, size_t chunk, std::byte* host) {
    return read_class(cls, chunk, host);
  }
  virtual void snapshot_chunk_read(size_t chunk) { (void)chunk; }
  virtual void end_snapshot() {}
};

// The resident model's chunks and its optimizer (null: parameters only).
std::unique_ptr<CheckpointState> resident_checkpoint_state(GPT2& model, Optimizer* optimizer);

// Writes a checkpoint of `step` and then points "latest" at it. Returns its path.
absl::StatusOr<std::string> save_checkpoint(const std::string& output_dir, const ModelConfig& model,
                                            const std::vector<memory::ChunkLayout>& layouts,
                                            CheckpointState& chunks, const TrainState& state);
absl::StatusOr<std::string> save_checkpoint(const std::string& output_dir, GPT2& model,
                                            Optimizer& optimizer, const TrainState& state);

// A save_checkpoint on a thread of its own, over a snapshot of `chunks`
// (which must saves_in_background()); the TrainState is copied at start().
class BackgroundSave {
 public:
  BackgroundSave();
  ~BackgroundSave();  // waits for the save in progress
  BackgroundSave(const BackgroundSave&) = delete;
  BackgroundSave& operator=(const BackgroundSave&) = delete;

  // Takes the snapshot (on the calling thread) and starts writing it; a save
  // still in progress must have been finished first.
  void start(const std::string& output_dir, const ModelConfig& model,
             const std::vector<memory::ChunkLayout>& layouts, CheckpointState& chunks,
             const TrainState& state);
  bool busy() const { return worker_ != nullptr; }
  // The save in progress has ended (finish() will not wait).
  bool ended() const;
  // Waits for the save in progress: its path, or its error.
  absl::StatusOr<std::string> finish();

 private:
  struct Worker;
  std::unique_ptr<Worker> worker_;
};

// The newest complete checkpoint in output_dir: the one "latest" names, else
// (no pointer yet) the highest-numbered ckpt-*.dsinf. nullopt when there is none.
// kInvalidArgument when "latest" names a file that does not exist.
absl::StatusOr<std::optional<std::string>> find_latest_checkpoint(const std::string& output_dir);

// Removes the temporaries ("<dir>/.<name>.tmp.<pid>") that a process killed
// while saving left behind, when that process is gone. Returns their names.
std::vector<std::string> remove_stale_temporaries(const std::string& output_dir);

// Loads a checkpoint into the model (and the optimizer, when not null). Every
// header field, offset and size is checked against the file and the model's
// layout before any data is used; a checksum mismatch is kDataLoss and any
// other problem kInvalidArgument, both naming the file.
absl::StatusOr<TrainState> load_checkpoint(const std::string& path, const ModelConfig& model,
                                           const std::vector<memory::ChunkLayout>& layouts,
                                           CheckpointState& chunks);
absl::StatusOr<TrainState> load_checkpoint(const std::string& path, GPT2& model,
                                           Optimizer* optimizer);

}  // namespace dsinf::trainer
