#include "trainer/data/windows.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "memory/util/check.h"
#include "trainer/models/rng.h"

namespace dsinf::trainer {

Windows Windows::stream(std::vector<int32_t> tokens, int T) {
  Windows w;
  w.T_ = T;
  w.count_ = num_windows(tokens.size(), T);
  w.inputs_ = std::move(tokens);
  return w;
}

Windows Windows::examples(std::vector<int32_t> inputs, std::vector<int32_t> targets, int T) {
  DSINF_CHECK(inputs.size() == targets.size() && inputs.size() % static_cast<size_t>(T) == 0);
  Windows w;
  w.T_ = T;
  w.count_ = static_cast<int64_t>(inputs.size() / static_cast<size_t>(T));
  w.inputs_ = std::move(inputs);
  w.targets_ = std::move(targets);
  return w;
}

void Windows::copy(int64_t i, int32_t* inputs, int32_t* targets) const {
  DSINF_CHECK(i >= 0 && i < count_);
  const size_t start = static_cast<size_t>(i) * T_;
  std::copy_n(inputs_.begin() + start, T_, inputs);
  if (targets_.empty()) {
    std::copy_n(inputs_.begin() + start + 1, T_, targets);
  } else {
    std::copy_n(targets_.begin() + start, T_, targets);
  }
}

WindowSampler::WindowSampler(const Windows* windows, uint64_t seed)
    : windows_(windows), seed_(seed) {
  DSINF_CHECK(windows_->count() >= 1);
  shuffle_epoch();
}

void WindowSampler::shuffle_epoch() {
  const int64_t n = windows_->count();
  order_.resize(n);
  for (int64_t i = 0; i < n; ++i) order_[i] = i;
  Rng rng(seed_ * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(state_.epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(order_[i], order_[rng.below(static_cast<uint64_t>(i) + 1)]);
  }
}

void WindowSampler::next_batch(int B, int32_t* inputs, int32_t* targets) {
  const size_t T = static_cast<size_t>(windows_->T());
  for (int b = 0; b < B; ++b) {
    if (state_.cursor == windows_->count()) {
      ++state_.epoch;
      state_.cursor = 0;
      shuffle_epoch();
    }
    windows_->copy(order_[state_.cursor++], inputs + b * T, targets + b * T);
  }
}

absl::Status WindowSampler::restore(const SamplerState& state) {
  if (state.epoch < 0 || state.cursor < 0 || state.cursor > windows_->count()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data position (epoch ", state.epoch, ", window ", state.cursor, ") does not fit data with ",
        windows_->count(), " windows; the data changed since the checkpoint"));
  }
  state_ = state;
  shuffle_epoch();
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
