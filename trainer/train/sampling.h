// Choosing the next token from a row of logits: greedy (temperature 0: the
// largest logit, ties to the lowest id) or sampled from the softmax at a
// temperature, restricted to the top_k largest and then to the nucleus (the
// fewest most likely tokens whose probability reaches top_p). A sampler is
// seeded and draws its uniforms from std::mt19937_64 by bit arithmetic, so a
// seed gives the same tokens on every machine.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/types/span.h"

namespace dsinf::trainer {

struct SamplingOptions {
  double temperature = 0;  // 0: greedy
  double top_p = 1.0;      // (0, 1]; 1: no nucleus cut
  int top_k = 0;           // 0: every token
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {}
  int32_t next(absl::Span<const float> logits);
  const SamplingOptions& options() const { return options_; }

 private:
  int32_t sample(absl::Span<const float> logits);
  double uniform();  // [0, 1) with 53 random bits

  SamplingOptions options_;
  std::mt19937_64 rng_;
  std::vector<int32_t> order_;  // candidates, most likely first
  std::vector<double> probs_;
};

// The lowest id of the largest logit.
int32_t greedy_token(absl::Span<const float> logits);

}  // namespace dsinf::trainer
