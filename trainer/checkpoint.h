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

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/data.h"

namespace dsinf::trainer {

class GPT2;
class Optimizer;

struct TrainState {
  int64_t step = 0;     // optimizer steps completed
  int64_t samples = 0;  // training windows consumed
  SamplerState sampler;
  double last_loss = 0;      // mean loss of the last step
  uint64_t data_tokens = 0;  // size of the training data when saved (a warning if it changes)
};

// Writes a checkpoint of `step` and then points "latest" at it. Returns its path.
absl::StatusOr<std::string> save_checkpoint(const std::string& output_dir, GPT2& model,
                                            Optimizer& optimizer, const TrainState& state);

// The newest complete checkpoint in output_dir: the one "latest" names, else
// (no pointer yet) the highest-numbered ckpt-*.dsinf. nullopt when there is none.
// kInvalidArgument when "latest" names a file that does not exist.
absl::StatusOr<std::optional<std::string>> find_latest_checkpoint(const std::string& output_dir);

// Loads a checkpoint into the model (and the optimizer, when not null). Every
// header field, offset and size is checked against the file and the model's
// layout before any data is used; a checksum mismatch is kDataLoss and any
// other problem kInvalidArgument, both naming the file.
absl::StatusOr<TrainState> load_checkpoint(const std::string& path, GPT2& model,
                                           Optimizer* optimizer);

}  // namespace dsinf::trainer
