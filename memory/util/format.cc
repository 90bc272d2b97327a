#include "memory/util/format.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dsinf::util {

std::string format_bytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int unit = 0;
  uint64_t whole = bytes;
  bool exact = true;
  while (whole >= 1024 && unit < 5) {
    exact = exact && whole % 1024 == 0;
    whole /= 1024;
    ++unit;
  }
  if (unit == 0 || exact) return absl::StrCat(whole, " ", kUnits[unit]);
  const double value = static_cast<double>(bytes) / std::ldexp(1.0, 10 * unit);
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string format_bytes_exact(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " bytes");
  return absl::StrCat(bytes, " bytes (", format_bytes(bytes), ")");
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s < 60) return absl::StrFormat("%ds", s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
}

std::string format_seconds(double s) {
  if (s >= 1) return absl::StrFormat("%.3f s", s);
  if (s >= 1e-3) return absl::StrFormat("%.3f ms", s * 1e3);
  return absl::StrFormat("%.3f us", s * 1e6);
}

}  // namespace dsinf::util
