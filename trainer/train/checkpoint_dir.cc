// The checkpoint folder: names, the "latest" pointer, finding the newest
// checkpoint and removing what killed saves left behind.
#include "trainer/train/checkpoint_dir.h"

#include <sys/types.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/util/atomic_file.h"
#include "memory/util/process.h"
#include "trainer/train/checkpoint.h"

namespace dsinf::trainer {

namespace fs = std::filesystem;

std::string checkpoint_name(int64_t step) { return absl::StrFormat("ckpt-%08d.dsinf", step); }
std::string part_name(int64_t step, int rank, int world) {
  return absl::StrFormat("ckpt-%08d.part%d-of-%d", step, rank, world);
}

int64_t parse_checkpoint_name(const std::string& name) {
  if (!name.starts_with("ckpt-") || !name.ends_with(".dsinf")) return -1;
  const std::string digits = name.substr(5, name.size() - 5 - 6);
  int64_t step = -1;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), step);
  if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size()) return -1;
  return step;
}

absl::Status point_latest(const std::string& output_dir, const std::string& name) {
  absl::StatusOr<util::AtomicFileWriter> latest =
      util::AtomicFileWriter::open((fs::path(output_dir) / "latest").string());
  if (!latest.ok()) return latest.status();
  if (absl::Status s = latest->write(name + "\n"); !s.ok()) return s;
  return latest->commit();
}

absl::StatusOr<std::optional<std::string>> find_latest_checkpoint(const std::string& output_dir) {
  std::error_code ec;
  if (!fs::is_directory(output_dir, ec)) return std::optional<std::string>();
  const fs::path pointer = fs::path(output_dir) / "latest";
  if (fs::exists(pointer, ec)) {
    std::ifstream in(pointer);
    std::string name;
    std::getline(in, name);
    if (parse_checkpoint_name(name) < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          pointer.string(), ": expected the name of a checkpoint (ckpt-<step>.dsinf), found '",
          name.substr(0, 80), "'"));
    }
    const fs::path target = fs::path(output_dir) / name;
    if (!fs::is_regular_file(target, ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat(pointer.string(), ": names ", name, ", which does not exist"));
    }
    return std::optional<std::string>(target.string());
  }
  int64_t best = -1;
  std::string best_path;
  for (const fs::directory_entry& entry : fs::directory_iterator(output_dir, ec)) {
    const int64_t step = parse_checkpoint_name(entry.path().filename().string());
    if (step > best && entry.is_regular_file()) {
      best = step;
      best_path = entry.path().string();
    }
  }
  if (best < 0) return std::optional<std::string>();
  return std::optional<std::string>(best_path);
}

std::vector<std::string> remove_stale_temporaries(const std::string& output_dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(output_dir, ec)) {
    const std::string name = entry.path().filename().string();
    const size_t tmp = name.rfind(".tmp.");
    if (name.empty() || name[0] != '.' || tmp == std::string::npos) continue;
    const std::string pid_text = name.substr(tmp + 5);
    pid_t pid = 0;
    auto [ptr, err] = std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), pid);
    if (err != std::errc() || ptr != pid_text.data() + pid_text.size() || pid <= 0) continue;
    // Alive (or not ours to signal): leave it. Gone: its save can never finish.
    if (pid == ::getpid() || util::process_alive(pid)) continue;
    if (fs::remove(entry.path(), ec)) removed.push_back(name);
  }
  return removed;
}

}  // namespace dsinf::trainer
