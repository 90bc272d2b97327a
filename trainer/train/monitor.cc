#include "trainer/train/monitor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "memory/util/atomic_file.h"
#include "memory/util/crc32c.h"
#include "memory/util/errno_status.h"

namespace dsinf::trainer {
namespace {

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// mkdir -p. An existing component is accepted whatever mkdir says about it
// (EEXIST, or EACCES/EROFS on a read-only parent), as long as it is a directory.
absl::Status make_dirs(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("monitor output directory is empty");
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    const std::string prefix = dir.substr(0, pos);
    if (prefix.empty() || prefix.back() == '/') continue;
    if (::mkdir(prefix.c_str(), 0755) == 0) continue;
    const int err = errno;
    if (is_directory(prefix)) continue;
    struct stat st;
    const int why = (err == EEXIST && ::stat(prefix.c_str(), &st) == 0) ? ENOTDIR : err;
    return util::errno_status(why, absl::StrCat(dir, ": cannot create directory ", prefix));
  }
  return absl::OkStatus();
}

absl::Status flush_file(std::FILE* f, const std::string& path) {
  if (std::fflush(f) != 0 || std::ferror(f)) {
    const int err = errno != 0 ? errno : EIO;
    std::clearerr(f);
    return util::errno_status(err, absl::StrCat(path, ": write"));
  }
  return absl::OkStatus();
}

absl::Status write_bytes(std::FILE* f, const std::string& bytes, const std::string& path) {
  errno = 0;
  if (std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
    const int err = errno != 0 ? errno : EIO;
    std::clearerr(f);
    return util::errno_status(err, absl::StrCat(path, ": write"));
  }
  return absl::OkStatus();
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

double wall_time_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------- CSV

// A CSV field as Python's csv.writer would write it.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// A double as Python's repr() writes it (what DeepSpeed's csv_monitor gets
// from csv.writer): the shortest digits that round-trip, in fixed notation
// for exponents -5 < e < 16 (always with a '.'), scientific otherwise.
std::string python_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  const char* end = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific).ptr;
  std::string_view sci(buf, static_cast<size_t>(end - buf));  // [-]d[.ddd]e[+-]xx
  std::string out;
  if (sci.front() == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  const size_t e_at = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_at)) {
    if (c != '.') digits += c;
  }
  int exp10 = 0;
  const std::string_view exp_text = sci.substr(e_at + 1);
  std::from_chars(exp_text.data() + (exp_text.front() == '+' ? 1 : 0),
                  exp_text.data() + exp_text.size(), exp10);
  const int decpt = exp10 + 1;  // value = 0.digits * 10^decpt
  const int n = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (n > 1) out += "." + digits.substr(1);
    const int magnitude = std::abs(exp10);
    return absl::StrCat(out, exp10 < 0 ? "e-" : "e+", magnitude < 10 ? "0" : "", magnitude);
  }
  if (decpt <= 0) return out + "0." + std::string(-decpt, '0') + digits;
  if (decpt < n) return out + digits.substr(0, decpt) + "." + digits.substr(decpt);
  return out + digits + std::string(decpt - n, '0') + ".0";
}

class CsvMonitor final : public Monitor {
 public:
  explicit CsvMonitor(std::string dir) : dir_(std::move(dir)) {}

  // Rows are flushed at the end of every write so a crash loses nothing that
  // was reported; the cost is one small write per series per call.
  absl::Status write(const std::vector<ScalarEvent>& events) override {
    for (const ScalarEvent& e : events) {
      absl::StatusOr<Series*> series = series_for(e.name);
      if (!series.ok()) return series.status();
      const std::string row = absl::StrCat(e.step, ",", python_float_repr(e.value), "\n");
      if (absl::Status s = write_bytes((*series)->file.get(), row, (*series)->path); !s.ok()) {
        return s;
      }
    }
    return flush();
  }

  absl::Status flush() override {
    for (auto& [name, series] : series_) {
      if (absl::Status s = flush_file(series.file.get(), series.path); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

 private:
  struct Series {
    std::string path;
    FilePtr file;
  };

  absl::StatusOr<Series*> series_for(const std::string& name) {
    if (auto it = series_.find(name); it != series_.end()) return &it->second;
    if (name.empty()) return absl::InvalidArgumentError("monitor event with an empty name");
    std::string file_name = name;
    for (char& c : file_name) {
      if (c == '/' || c == ' ') c = '_';
    }
    Series series;
    series.path = absl::StrCat(dir_, "/", file_name, ".csv");
    series.file.reset(std::fopen(series.path.c_str(), "ae"));
    if (series.file == nullptr) return util::errno_status(errno, series.path);
    struct stat st;
    if (::fstat(::fileno(series.file.get()), &st) != 0)
      return util::errno_status(errno, series.path);
    if (st.st_size == 0) {  // new series: header; a resumed one keeps its own
      const size_t slash = name.rfind('/');
      const std::string column = slash == std::string::npos ? name : name.substr(slash + 1);
      const std::string header = absl::StrCat("step,", csv_field(column), "\n");
      if (absl::Status s = write_bytes(series.file.get(), header, series.path); !s.ok()) return s;
    }
    return &series_.emplace(name, std::move(series)).first->second;
  }

  std::string dir_;
  std::map<std::string, Series> series_;
};

// ---------------------------------------------------------------- protobuf

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void put_key(std::string& out, uint32_t field, WireType wire) {
  put_varint(out, (uint64_t{field} << 3) | wire);
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

void put_double(std::string& out, uint32_t field, double v) {
  put_key(out, field, kFixed64);
  put_le(out, std::bit_cast<uint64_t>(v), 8);
}

void put_float(std::string& out, uint32_t field, float v) {
  put_key(out, field, kFixed32);
  put_le(out, std::bit_cast<uint32_t>(v), 4);
}

void put_int64(std::string& out, uint32_t field, int64_t v) {
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(v));  // negative: 10-byte two's complement
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

// ---------------------------------------------------------------- TensorBoard

class TensorBoardMonitor final : public Monitor {
 public:
  TensorBoardMonitor(std::string path, FilePtr file)
      : path_(std::move(path)), file_(std::move(file)) {}

  absl::Status write_record(const std::string& event) {
    return write_bytes(file_.get(), tfrecord_frame(event), path_);
  }

  absl::Status write(const std::vector<ScalarEvent>& events) override {
    const double now = wall_time_now();
    for (const ScalarEvent& e : events) {
      const std::string event = tf_event_scalar(now, e.step, e.name, static_cast<float>(e.value));
      if (absl::Status s = write_record(event); !s.ok()) return s;
    }
    return flush();  // as the CSV monitor: nothing reported is lost in a buffer
  }

  absl::Status flush() override { return flush_file(file_.get(), path_); }

 private:
  std::string path_;
  FilePtr file_;
};

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string host = buf;
  for (char& c : host) {
    if (c == '/') c = '_';
  }
  return host;
}

}  // namespace

std::string tfrecord_frame(const std::string& data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_le(out, data.size(), 8);
  put_le(out, util::crc32c_mask(util::crc32c(out.data(), 8)), 4);
  out += data;
  put_le(out, util::crc32c_mask(util::crc32c(data.data(), data.size())), 4);
  return out;
}

std::string tf_event_file_version(double wall_time) {
  std::string event;
  put_double(event, 1, wall_time);
  put_bytes(event, 3, "brain.Event:2");
  return event;
}

std::string tf_event_scalar(double wall_time, int64_t step, const std::string& tag, float value) {
  std::string summary_value;
  put_bytes(summary_value, 1, tag);
  put_float(summary_value, 2, value);
  std::string summary;
  put_bytes(summary, 1, summary_value);
  std::string event;
  put_double(event, 1, wall_time);
  put_int64(event, 2, step);
  put_bytes(event, 5, summary);
  return event;
}

absl::StatusOr<std::unique_ptr<Monitor>> make_csv_monitor(const std::string& output_dir) {
  if (absl::Status s = make_dirs(output_dir); !s.ok()) return s;
  return std::make_unique<CsvMonitor>(output_dir);
}

absl::StatusOr<std::unique_ptr<Monitor>> make_tensorboard_monitor(const std::string& output_dir) {
  if (absl::Status s = make_dirs(output_dir); !s.ok()) return s;
  const std::string base = absl::StrCat(output_dir, "/events.out.tfevents.",
                                        static_cast<int64_t>(std::time(nullptr)), ".", host_name());
  // Two writers started in the same second on one host would share a name;
  // the later one gets a numeric suffix (TensorBoard only needs "tfevents").
  constexpr int kMaxSuffix = 1000;
  for (int suffix = 0; suffix < kMaxSuffix; ++suffix) {
    const std::string path = suffix == 0 ? base : absl::StrCat(base, ".", suffix);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0) return util::errno_status(errno, path);
    FilePtr file(::fdopen(fd, "w"));
    if (file == nullptr) {
      const int err = errno;
      ::close(fd);
      return util::errno_status(err, path);
    }
    auto monitor = std::make_unique<TensorBoardMonitor>(path, std::move(file));
    if (absl::Status s = monitor->write_record(tf_event_file_version(wall_time_now())); !s.ok()) {
      return s;
    }
    if (absl::Status s = monitor->flush(); !s.ok()) return s;
    return monitor;
  }
  return absl::AlreadyExistsError(absl::StrCat(base, ": ", kMaxSuffix, " event files exist"));
}

}  // namespace dsinf::trainer
