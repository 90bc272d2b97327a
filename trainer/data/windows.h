// Data as the model sees it: windows of T positions, each an input id and a
// target per position. A token stream gives windows i of inputs
// tokens[iT, (i+1)T) and targets tokens[iT+1, (i+1)T+1); examples (SFT data)
// give one window each, whose targets are kernels::kIgnoreTarget where no
// loss is taken (prompts, padding), as Hugging Face's -100 labels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace dsinf::trainer {

// Complete windows of length T in a stream of n tokens.
inline int64_t num_windows(size_t n, int T) {
  return n < 1 ? 0 : static_cast<int64_t>((n - 1) / static_cast<size_t>(T));
}

class Windows {
 public:
  Windows() = default;
  static Windows stream(std::vector<int32_t> tokens, int T);
  // inputs and targets: count * T each.
  static Windows examples(std::vector<int32_t> inputs, std::vector<int32_t> targets, int T);

  int64_t count() const { return count_; }
  int T() const { return T_; }
  // Window i's inputs and targets (T each).
  void copy(int64_t i, int32_t* inputs, int32_t* targets) const;
  // Positions held: the stream's tokens, or count * T.
  size_t tokens() const { return inputs_.size(); }
  size_t bytes() const { return (inputs_.size() + targets_.size()) * sizeof(int32_t); }

 private:
  std::vector<int32_t> inputs_;   // the stream, or every window's inputs
  std::vector<int32_t> targets_;  // empty for a stream
  int T_ = 1;
  int64_t count_ = 0;
};

// Where the training sampler is: which pass over the data and how far into it.
struct SamplerState {
  int64_t epoch = 0;
  int64_t cursor = 0;
};

// Draws training windows in a seeded order: each epoch is a permutation of all
// windows determined by (seed, epoch) alone, so a state restores the exact order.
class WindowSampler {
 public:
  WindowSampler(const Windows* windows, uint64_t seed);
  // Fills inputs and targets (each B*T) with the next B windows.
  void next_batch(int B, int32_t* inputs, int32_t* targets);
  SamplerState state() const { return state_; }
  // kInvalidArgument if the state does not fit this data.
  absl::Status restore(const SamplerState& state);
  int64_t windows() const { return windows_->count(); }

 private:
  void shuffle_epoch();
  const Windows* windows_;
  uint64_t seed_;
  SamplerState state_;
  std::vector<int64_t> order_;
};

}  // namespace dsinf::trainer
