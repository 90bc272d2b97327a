// Token data: byte-level text (token id = byte value), directories of text
// files read in sorted name order, and dsinf token shards. Window i of a
// stream has inputs tokens[iT, (i+1)T) and targets tokens[iT+1, (i+1)T+1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dsinf::trainer {

// A dsinf token shard: a 32-byte header -- the magic "DSINFTOK", uint32 version (1),
// uint32 bytes per token (2 or 4), uint64 token count, uint64 zero -- then the
// tokens, little-endian.
inline constexpr char kShardMagic[8] = {'D', 'S', 'I', 'N', 'F', 'T', 'O', 'K'};

// Reads `path` (file or directory): token shards, JSON Lines files (*.jsonl,
// each line's "text" as bytes) and any other file as bytes (byte-level
// tokens; with a non-empty `text_refusal` text is refused, the message ending
// with it). kInvalidArgument naming the file (and line) for an
// unreadable file, a malformed shard, or a token id >= vocab_size; `key` (e.g.
// "data.path") is named in messages.
absl::StatusOr<std::vector<int32_t>> load_tokens(const std::string& path, int vocab_size,
                                                 const std::string& key,
                                                 const std::string& text_refusal = "");

absl::Status write_token_shard(const std::string& path, const std::vector<int32_t>& tokens);

// Complete windows of length T in a stream of n tokens.
inline int64_t num_windows(size_t n, int T) {
  return n < 1 ? 0 : static_cast<int64_t>((n - 1) / static_cast<size_t>(T));
}

// Where the training sampler is: which pass over the data and how far into it.
struct SamplerState {
  int64_t epoch = 0;
  int64_t cursor = 0;
};

// Draws training windows in a seeded order: each epoch is a permutation of all
// windows determined by (seed, epoch) alone, so a state restores the exact order.
class WindowSampler {
 public:
  WindowSampler(const std::vector<int32_t>* tokens, int T, uint64_t seed);
  // Fills inputs and targets (each B*T) with the next B windows.
  void next_batch(int B, int32_t* inputs, int32_t* targets);
  SamplerState state() const { return state_; }
  // kInvalidArgument if the state does not fit this data.
  absl::Status restore(const SamplerState& state);
  int64_t windows() const { return windows_; }

 private:
  void shuffle_epoch();
  const std::vector<int32_t>* tokens_;
  int T_;
  uint64_t seed_;
  int64_t windows_;
  SamplerState state_;
  std::vector<int64_t> order_;
};

}  // namespace dsinf::trainer
