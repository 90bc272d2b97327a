// Writing a file so that readers see either the old file or the complete new
// one: write to a temporary name in the same directory, fsync, rename over the
// target, fsync the directory. A writer that is not committed removes its
// temporary file.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dsinf::util {

class AtomicFileWriter {
 public:
  // Opens "<dir>/.<name>.tmp.<pid>" for writing.
  static absl::StatusOr<AtomicFileWriter> open(const std::string& path);
  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&&) = delete;
  ~AtomicFileWriter();

  absl::Status write(const void* data, size_t bytes);
  absl::Status write(std::string_view s) { return write(s.data(), s.size()); }
  absl::Status commit();
  size_t bytes_written() const { return written_; }

 private:
  AtomicFileWriter(std::string path, std::string tmp_path, int fd)
      : path_(std::move(path)), tmp_path_(std::move(tmp_path)), fd_(fd) {}
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  size_t written_ = 0;
  bool committed_ = false;
};

// fsync of the directory holding `path`, so a rename in it is durable.
absl::Status sync_parent_dir(const std::string& path);

}  // namespace dsinf::util
