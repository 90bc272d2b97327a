#include "trainer/train/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "memory/util/check.h"

namespace dsinf::trainer {

int32_t greedy_token(absl::Span<const float> logits) {
  DSINF_CHECK(!logits.empty());
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = i;  // strictly: a tie keeps the lower id
  }
  return static_cast<int32_t>(best);
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int32_t Sampler::next(absl::Span<const float> logits) {
  if (options_.temperature <= 0) return greedy_token(logits);
  return sample(logits);
}

int32_t Sampler::sample(absl::Span<const float> logits) {
  const size_t V = logits.size();
  DSINF_CHECK(V > 0);
  // Most likely first, ties by id: a total order, so the candidates are the same everywhere.
  auto before = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  const size_t keep = options_.top_k > 0 ? std::min<size_t>(options_.top_k, V) : V;
  order_.resize(V);
  std::iota(order_.begin(), order_.end(), 0);
  std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(), before);
  order_.resize(keep);
  // Softmax at the temperature over the candidates, in double.
  const double max = logits[order_[0]];
  probs_.resize(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    probs_[i] = std::exp((logits[order_[i]] - max) / options_.temperature);
    sum += probs_[i];
  }
  // The nucleus: the fewest leading candidates whose probability reaches top_p.
  size_t n = keep;
  if (options_.top_p < 1.0) {
    double cumulative = 0;
    for (size_t i = 0; i < keep; ++i) {
      cumulative += probs_[i] / sum;
      if (cumulative >= options_.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += probs_[i];
  const double target = uniform() * total;
  double cumulative = 0;
  for (size_t i = 0; i < n; ++i) {
    cumulative += probs_[i];
    if (target < cumulative) return order_[i];
  }
  return order_[n - 1];  // rounding at the very top
}

}  // namespace dsinf::trainer
