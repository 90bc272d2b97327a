#include "trainer/train/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace dsinf::trainer {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Transcribed from DeepSpeed's runtime/lr_schedules.py (WarmupLR.get_lr,
// WarmupDecayLR._get_gamma, WarmupCosineLR.get_lr_ratio), where
// last_batch_iteration is the step index.
struct DeepSpeedWarmup {
  double min_lr = 0, max_lr = 0;
  double warmup_num_steps = 0;  // already max(2, given)
  double inverse_log_warm_up = 0;
  bool log = true;
  double total_num_steps = 0;

  explicit DeepSpeedWarmup(const SchedulerConfig& s) {
    min_lr = s.warmup_min_lr;
    max_lr = s.warmup_max_lr;
    warmup_num_steps = std::max<double>(2, s.warmup_num_steps);
    inverse_log_warm_up = 1.0 / std::log(warmup_num_steps);
    log = s.warmup_type == WarmupType::kLog;
    total_num_steps = s.total_num_steps;
  }
  double warmup_gamma(double last) const {
    if (last < warmup_num_steps) {
      return log ? inverse_log_warm_up * std::log(last + 1) : last / warmup_num_steps;
    }
    return 1.0;
  }
  double warmup_lr(double last) const { return min_lr + (max_lr - min_lr) * warmup_gamma(last); }
  double decay_lr(double last) const {
    if (last < warmup_num_steps) return warmup_lr(last);
    const double gamma =
        std::max(0.0, (total_num_steps - last) / std::max(1.0, total_num_steps - warmup_num_steps));
    return min_lr + (max_lr - min_lr) * gamma;
  }
  double cosine_ratio(double last, double warmup_min_ratio, double cos_min_ratio) const {
    if (last < warmup_num_steps) {
      return warmup_min_ratio + warmup_gamma(last) * (1.0 - warmup_min_ratio);
    }
    const double real_last_step = last - warmup_num_steps + 1;
    const double real_total_steps = std::max(1.0, total_num_steps - warmup_num_steps);
    const double progress = std::min(1.0, real_last_step / real_total_steps);
    const double ratio = (1 + std::cos(kPi * progress)) / 2;
    return std::max(0.0, cos_min_ratio + (1.0 - cos_min_ratio) * ratio);
  }
};

SchedulerConfig make(SchedulerType type, WarmupType warmup_type, int64_t warmup_num_steps,
                     int64_t total_num_steps) {
  SchedulerConfig s;
  s.type = type;
  s.warmup_type = warmup_type;
  s.warmup_num_steps = warmup_num_steps;
  s.total_num_steps = total_num_steps;
  s.warmup_min_lr = 1e-5;
  s.warmup_max_lr = 3e-3;
  s.warmup_min_ratio = 0.05;
  s.cos_min_ratio = 0.1;
  return s;
}

const std::vector<int64_t> kIterations = {0,  1,   2,   3,   7,   49,  50,  51,
                                          99, 100, 101, 150, 299, 300, 301, 1000};

class SchedulerTest : public ::testing::TestWithParam<WarmupType> {};

TEST_P(SchedulerTest, WarmupLRMatchesDeepSpeed) {
  const SchedulerConfig s = make(SchedulerType::kWarmupLR, GetParam(), 100, 0);
  const DeepSpeedWarmup ref(s);
  for (int64_t it : kIterations) {
    EXPECT_NEAR(learning_rate(s, OptimizerConfig{}, it), ref.warmup_lr(it), 1e-15) << it;
  }
}

TEST_P(SchedulerTest, WarmupDecayLRMatchesDeepSpeed) {
  const SchedulerConfig s = make(SchedulerType::kWarmupDecayLR, GetParam(), 100, 300);
  const DeepSpeedWarmup ref(s);
  for (int64_t it : kIterations) {
    EXPECT_NEAR(learning_rate(s, OptimizerConfig{}, it), ref.decay_lr(it), 1e-15) << it;
  }
}

TEST_P(SchedulerTest, WarmupCosineLRMatchesDeepSpeed) {
  const SchedulerConfig s = make(SchedulerType::kWarmupCosineLR, GetParam(), 100, 300);
  const DeepSpeedWarmup ref(s);
  OptimizerConfig optimizer;
  optimizer.lr = 6e-4;
  for (int64_t it : kIterations) {
    EXPECT_NEAR(learning_rate(s, optimizer, it),
                optimizer.lr * ref.cosine_ratio(it, s.warmup_min_ratio, s.cos_min_ratio), 1e-15)
        << it;
  }
}

TEST_P(SchedulerTest, ShortWarmupIsClampedToTwoSteps) {
  for (int64_t warmup_num_steps : {0, 1, 2}) {
    const SchedulerConfig s = make(SchedulerType::kWarmupLR, GetParam(), warmup_num_steps, 0);
    EXPECT_DOUBLE_EQ(learning_rate(s, OptimizerConfig{}, 0), s.warmup_min_lr);
    // it = 1 of W = 2: ln 2 / ln 2 = 1 (log) or 1/2 (linear).
    const double gamma = GetParam() == WarmupType::kLog ? 1.0 : 0.5;
    EXPECT_DOUBLE_EQ(learning_rate(s, OptimizerConfig{}, 1),
                     s.warmup_min_lr + (s.warmup_max_lr - s.warmup_min_lr) * gamma);
    EXPECT_DOUBLE_EQ(learning_rate(s, OptimizerConfig{}, 2), s.warmup_max_lr);
  }
}

INSTANTIATE_TEST_SUITE_P(WarmupTypes, SchedulerTest,
                         ::testing::Values(WarmupType::kLog, WarmupType::kLinear),
                         [](const ::testing::TestParamInfo<WarmupType>& info) {
                           return info.param == WarmupType::kLog ? "Log" : "Linear";
                         });

TEST(SchedulerConstantsTest, HandComputedValues) {
  OptimizerConfig optimizer;
  optimizer.lr = 0.02;
  SchedulerConfig s;
  s.warmup_min_lr = 0.0;
  s.warmup_max_lr = 0.01;
  s.warmup_num_steps = 100;

  s.type = SchedulerType::kNone;
  EXPECT_DOUBLE_EQ(learning_rate(s, optimizer, 5), 0.02);

  s.type = SchedulerType::kWarmupLR;
  s.warmup_type = WarmupType::kLog;
  EXPECT_NEAR(learning_rate(s, optimizer, 9), 0.005, 1e-15);  // ln 10 / ln 100 = 1/2
  EXPECT_DOUBLE_EQ(learning_rate(s, optimizer, 100), 0.01);
  s.warmup_type = WarmupType::kLinear;
  EXPECT_DOUBLE_EQ(learning_rate(s, optimizer, 25), 0.0025);

  s.type = SchedulerType::kWarmupDecayLR;
  s.total_num_steps = 200;
  EXPECT_DOUBLE_EQ(learning_rate(s, optimizer, 150), 0.005);  // (200 - 150) / (200 - 100)
  EXPECT_DOUBLE_EQ(learning_rate(s, optimizer, 100), 0.01);
  EXPECT_DOUBLE_EQ(learning_rate(s, optimizer, 200), 0.0);
  EXPECT_DOUBLE_EQ(learning_rate(s, optimizer, 250), 0.0);  // clamped, not negative

  s.type = SchedulerType::kWarmupCosineLR;
  s.total_num_steps = 110;
  s.warmup_num_steps = 10;
  s.warmup_min_ratio = 0.0;
  s.cos_min_ratio = 0.0;
  // p = (59 - 10 + 1) / (110 - 10) = 1/2: cos(pi/2) = 0, ratio 1/2.
  EXPECT_NEAR(learning_rate(s, optimizer, 59), 0.01, 1e-15);
  EXPECT_NEAR(learning_rate(s, optimizer, 109), 0.0, 1e-15);  // p = 1
  s.cos_min_ratio = 0.1;
  EXPECT_NEAR(learning_rate(s, optimizer, 500), 0.002, 1e-15);  // stays at cos_min_ratio
  EXPECT_DOUBLE_EQ(learning_rate(s, optimizer, 5), 0.01);       // linear warmup: 5 / 10
}

}  // namespace
}  // namespace dsinf::trainer
