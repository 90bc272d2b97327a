// Checkpoints: one file per save, "<output_dir>/ckpt-<step>.dsinf", holding
// the parameters, Adam m and v of every chunk (raw, page-aligned sections;
// a frozen chunk (LoRA's base) has none: the header names it by fingerprint;
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
#include "actors/runtime/checkpoint_state.h"
#include "actors/runtime/loss_scaler.h"
#include "kernels/comm/communicator.h"
#include "memory/chunk_layout.h"
#include "trainer/config/config.h"
#include "trainer/data/windows.h"

namespace dsinf::trainer {

struct TrainState {
  int64_t step = 0;     // optimizer steps completed
  int64_t samples = 0;  // training windows consumed
  SamplerState sampler;
  double last_loss = 0;       // mean loss of the last step
  uint64_t data_tokens = 0;   // size of the training data when saved (a warning if it changes)
  int64_t skipped_steps = 0;  // steps whose update an fp16 overflow skipped
  std::optional<actors::LossScalerState> loss_scaler;  // fp16 runs
  // LoRA: the frozen base the adapters were trained on (base_fingerprint());
  // the checkpoint holds the adapters only.
  std::string base_fingerprint;
};

using actors::CheckpointState;
using actors::kMClass;
using actors::kParamClass;
using actors::kVClass;

// Writes a checkpoint of `step` and then points "latest" at it. Returns its path.
absl::StatusOr<std::string> save_checkpoint(const std::string& output_dir, const ModelConfig& model,
                                            const std::vector<memory::ChunkLayout>& layouts,
                                            CheckpointState& chunks, const TrainState& state);

// A checkpoint of several ranks: each rank writes the trainable chunks it
// owns (`owners`, partition.h; `layouts` the model's) to its part,
// "ckpt-<step>.part<r>-of-<N>"; once every part is durable rank 0 writes the
// manifest "ckpt-<step>.dsinf", JSON naming the parts, and points "latest" at
// it. A rank killed mid-save leaves the previous checkpoint the newest. Every
// rank calls it, on the thread its other collectives run on. load_checkpoint
// reads a manifest's parts at any world size. save_partitioned writes this
// rank's part and then calls commit_partitioned; a background save
// (BackgroundSave with a PartOf) writes the part beside training, and the
// caller commits it later.
struct PartOf {
  std::vector<int> owners;  // each chunk's owning rank (-1: none)
  int rank = 0;
  int world = 1;
};
absl::StatusOr<std::string> save_partitioned(const std::string& output_dir,
                                             const ModelConfig& model,
                                             const std::vector<memory::ChunkLayout>& layouts,
                                             const std::vector<int>& owners,
                                             kernels::comm::Communicator& comm,
                                             CheckpointState& chunks, const TrainState& state);
// After every rank's write of its part of step `step` (`part`: this rank's
// outcome): a collective of the outcomes; rank 0 then writes the manifest.
// The manifest's path, or the first failing rank's error on every rank.
absl::StatusOr<std::string> commit_partitioned(const std::string& output_dir, int64_t step,
                                               const absl::StatusOr<std::string>& part,
                                               kernels::comm::Communicator& comm);

// A save_checkpoint on a thread of its own, over a snapshot of `chunks`
// (which must saves_in_background()); the TrainState is copied at start().
// With `part` (several ranks) it writes this rank's part only; the caller
// commits it (commit_partitioned) once every rank's has ended.
class BackgroundSave {
 public:
  BackgroundSave();
  ~BackgroundSave();  // waits for the save in progress
  BackgroundSave(const BackgroundSave&) = delete;
  BackgroundSave& operator=(const BackgroundSave&) = delete;

  // Takes the snapshot (on the calling thread) and starts writing it; a save
  // still in progress must have been finished first. `pace_ms` (a test hook)
  // holds each chunk that much longer before the snapshot lets it go, so the
  // next steps' updates meet the snapshot.
  void start(const std::string& output_dir, const ModelConfig& model,
             const std::vector<memory::ChunkLayout>& layouts, CheckpointState& chunks,
             const TrainState& state, int pace_ms = 0, const PartOf* part = nullptr);
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

// Loads a checkpoint, or a partitioned one's parts, into the model (and the
// optimizer state the CheckpointState holds). Every
// header field, offset and size is checked against the file and the model's
// layout before any data is used; a checksum mismatch is kDataLoss and any
// other problem kInvalidArgument, both naming the file.
absl::StatusOr<TrainState> load_checkpoint(const std::string& path, const ModelConfig& model,
                                           const std::vector<memory::ChunkLayout>& layouts,
                                           CheckpointState& chunks);

}  // namespace dsinf::trainer
