// Training monitors with DeepSpeed's layouts: the CSV monitor (one file per
// series, e.g. Train_Samples_train_loss.csv, header "step,train_loss") and
// TensorBoard event files (TFRecord framing with masked CRC32C, scalar
// summaries). Both write under output_path/job_name.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dsinf::trainer {

struct ScalarEvent {
  std::string name;  // e.g. "Train/Samples/train_loss"
  double value = 0;
  int64_t step = 0;  // DeepSpeed's axis: samples seen
};

class Monitor {
 public:
  virtual ~Monitor() = default;
  virtual absl::Status write(const std::vector<ScalarEvent>& events) = 0;
  virtual absl::Status flush() = 0;
};

// Creates output_dir (= output_path/job_name) if needed. Appends to existing
// series files, so a resumed run continues its curves.
absl::StatusOr<std::unique_ptr<Monitor>> make_csv_monitor(const std::string& output_dir);
// Creates output_dir if needed and a new events.out.tfevents.<secs>.<host> file in it.
absl::StatusOr<std::unique_ptr<Monitor>> make_tensorboard_monitor(const std::string& output_dir);

// Exposed for tests: one TFRecord frame (length, masked crc of length, data,
// masked crc of data) and the serialized Event protos the TensorBoard monitor writes.
std::string tfrecord_frame(const std::string& data);
std::string tf_event_file_version(double wall_time);
std::string tf_event_scalar(double wall_time, int64_t step, const std::string& tag, float value);

}  // namespace dsinf::trainer
