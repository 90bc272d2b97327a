// fp16 loss scaling with DeepSpeed's semantics (runtime/fp16/loss_scaler.py),
// step by step: hysteresis, the growth window, the minimum, a static scale.
#include "actors/runtime/loss_scaler.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace dsinf::actors {
namespace {

LossScaleSpec fp16_config(double loss_scale, int power, int64_t window, int hysteresis,
                          bool consecutive = false, double min_scale = 1) {
  LossScaleSpec c;
  c.enabled = true;
  c.loss_scale = loss_scale;
  c.initial_scale_power = power;
  c.loss_scale_window = window;
  c.hysteresis = hysteresis;
  c.consecutive_hysteresis = consecutive;
  c.min_loss_scale = min_scale;
  return c;
}

// Feeds the overflow pattern ('o' overflow, '.' clean) and returns the scale
// after each step.
std::vector<double> scales(LossScaler& s, const std::string& pattern) {
  std::vector<double> out;
  for (char ch : pattern) {
    absl::StatusOr<LossScaler::Outcome> o = s.update(ch == 'o');
    EXPECT_TRUE(o.ok()) << o.status();
    if (!o.ok()) break;
    EXPECT_EQ(o->skip, ch == 'o');
    EXPECT_EQ(o->message.empty(), ch != 'o');
    out.push_back(s.scale());
  }
  return out;
}

TEST(LossScaler, HalvesAfterHysteresisOverflowsAndDoublesAfterACleanWindow) {
  LossScaler s(fp16_config(0, 4, 3, 2));
  EXPECT_TRUE(s.enabled());
  EXPECT_TRUE(s.dynamic());
  EXPECT_EQ(s.scale(), 16);
  // First overflow spends the hysteresis (2 -> 1), the second halves; after
  // that, hysteresis stays 1 (restored only when the scale grows), so the next
  // overflow halves at once. Three clean steps after the last overflow double.
  EXPECT_EQ(scales(s, "oo.o...."), (std::vector<double>{16, 8, 8, 4, 4, 4, 8, 8}));
  EXPECT_EQ(s.state().iter, 8);
  EXPECT_EQ(s.state().last_overflow_iter, 3);
  // The doubling restored the hysteresis: one overflow is absorbed again.
  EXPECT_EQ(scales(s, "oo"), (std::vector<double>{8, 4}));
}

TEST(LossScaler, ConsecutiveHysteresisRestoresAfterEveryCleanStep) {
  LossScaler s(fp16_config(0, 4, 1000, 2, /*consecutive=*/true));
  EXPECT_EQ(scales(s, "o.o.o.oo"), (std::vector<double>{16, 16, 16, 16, 16, 16, 16, 8}));
}

TEST(LossScaler, GrowsEveryWindowWithoutOverflows) {
  LossScaler s(fp16_config(0, 0, 2, 1));
  EXPECT_EQ(scales(s, "......"), (std::vector<double>{1, 2, 2, 4, 4, 8}));
}

TEST(LossScaler, NeverGoesBelowTheMinimumAndFailsOverflowingThere) {
  LossScaler s(fp16_config(0, 3, 1000, 1, false, /*min_scale=*/2));
  EXPECT_EQ(scales(s, "oo"), (std::vector<double>{4, 2}));
  absl::StatusOr<LossScaler::Outcome> o = s.update(true);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(o.status().message().find("fp16.min_loss_scale"), std::string::npos);
  // A minimum that is not a power of two is reached by the max().
  LossScaler t(fp16_config(0, 3, 1000, 1, false, /*min_scale=*/3));
  EXPECT_EQ(scales(t, "oo"), (std::vector<double>{4, 3}));
}

TEST(LossScaler, StaticScaleSkipsOverflowsButNeverChanges) {
  LossScaler s(fp16_config(128, 16, 2, 2));
  EXPECT_FALSE(s.dynamic());
  EXPECT_EQ(scales(s, "o..o...."), std::vector<double>(8, 128));
}

TEST(LossScaler, WithoutFp16TheScaleIsOneAndNothingIsSkipped) {
  LossScaler s{LossScaleSpec()};
  EXPECT_FALSE(s.enabled());
  absl::StatusOr<LossScaler::Outcome> o = s.update(true);
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->skip);
  EXPECT_EQ(s.scale(), 1);
}

}  // namespace
}  // namespace dsinf::actors
