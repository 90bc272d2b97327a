// Numbers for people: the one way dsinf writes byte counts and durations.
#pragma once

#include <cstdint>
#include <string>

namespace dsinf::util {

// 812 -> "812 B", 131072 -> "128 KiB", 1572864 -> "1.5 MiB": binary units,
// whole numbers without decimals, others with one.
std::string format_bytes(uint64_t bytes);
// Exact for a config, readable for people: "815104 bytes (796 KiB)"; "812 bytes".
std::string format_bytes_exact(uint64_t bytes);
// A duration rounded to the second: "42s", "3m05s", "2h07m"; "?" when unknown
// (negative or not finite).
std::string format_duration(double seconds);
// A short interval with its unit: "1.234 s", "12.345 ms", "3.000 us".
std::string format_seconds(double seconds);

}  // namespace dsinf::util
