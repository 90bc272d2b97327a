// Learning-rate schedules with DeepSpeed's parameters, defaults and formulas
// (runtime/lr_schedules.py). Stepped once per optimizer step.
#pragma once

#include <cstdint>

#include "trainer/config/config.h"

namespace dsinf::trainer {

// The learning rate of optimizer step `it` (0-based). kNone: optimizer.lr.
double learning_rate(const SchedulerConfig& scheduler, const OptimizerConfig& optimizer,
                     int64_t it);

}  // namespace dsinf::trainer
