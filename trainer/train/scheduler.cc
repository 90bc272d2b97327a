// DeepSpeed's runtime/lr_schedules.py, evaluated in closed form for step `it`.
#include "trainer/train/scheduler.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dsinf::trainer {
namespace {

// DeepSpeed clamps the warmup length to at least 2 so that ln(W) > 0.
double warmup_steps(const SchedulerConfig& s) {
  return static_cast<double>(std::max<int64_t>(2, s.warmup_num_steps));
}

// The warmup fraction in [0, 1) for it < W.
double warmup_gamma(const SchedulerConfig& s, double it, double w) {
  if (s.warmup_type == WarmupType::kLog) return std::log(it + 1.0) / std::log(w);
  return it / w;
}

}  // namespace

double learning_rate(const SchedulerConfig& scheduler, const OptimizerConfig& optimizer,
                     int64_t it) {
  const SchedulerConfig& s = scheduler;
  const double step = static_cast<double>(std::max<int64_t>(0, it));
  const double w = warmup_steps(s);
  const double total = static_cast<double>(s.total_num_steps);
  const bool warming_up = step < w;
  switch (s.type) {
    case SchedulerType::kNone:
      return optimizer.lr;
    case SchedulerType::kWarmupLR: {
      const double gamma = warming_up ? warmup_gamma(s, step, w) : 1.0;
      return s.warmup_min_lr + (s.warmup_max_lr - s.warmup_min_lr) * gamma;
    }
    case SchedulerType::kWarmupDecayLR: {
      const double gamma = warming_up ? warmup_gamma(s, step, w)
                                      : std::max(0.0, (total - step) / std::max(1.0, total - w));
      return s.warmup_min_lr + (s.warmup_max_lr - s.warmup_min_lr) * gamma;
    }
    case SchedulerType::kWarmupCosineLR: {
      double ratio = 0;
      if (warming_up) {
        ratio = s.warmup_min_ratio + warmup_gamma(s, step, w) * (1.0 - s.warmup_min_ratio);
      } else {
        const double progress = std::min(1.0, (step - w + 1.0) / std::max(1.0, total - w));
        const double cosine = (1.0 + std::cos(std::numbers::pi * progress)) / 2.0;
        ratio = std::max(0.0, s.cos_min_ratio + (1.0 - s.cos_min_ratio) * cosine);
      }
      return optimizer.lr * ratio;
    }
  }
  return optimizer.lr;
}

}  // namespace dsinf::trainer
