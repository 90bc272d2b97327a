// The command line of every dsinf command: `--name VALUE`, `--name=VALUE`,
// `--flag` and up to a declared number of positional arguments, declared up
// front so an unknown or malformed option is an error that names it (exit 2),
// never silently ignored. "-h" is "--help".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dsinf::util {

class Args {
 public:
  struct Spec {
    std::set<std::string> valued;  // options that take a value
    std::set<std::string> flags;   // options that do not
    size_t max_positional = 0;     // arguments that are not options
  };
  // Errors are kInvalidArgument.
  static absl::StatusOr<Args> parse(const std::vector<std::string>& args, const Spec& spec);

  bool has(const std::string& name) const { return values_.count(name) != 0; }
  bool flag(const std::string& name) const { return has(name); }
  std::optional<std::string> text(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // A byte count: digits with an optional binary suffix K, M, G, T (KiB, MiB,
  // ...). `fallback` when absent. Must lie in [min_bytes, max_bytes].
  absl::StatusOr<uint64_t> bytes(const std::string& name, uint64_t fallback, uint64_t min_bytes,
                                 uint64_t max_bytes) const;
  // A decimal integer in [min_value, max_value]; `fallback` when absent.
  absl::StatusOr<int64_t> integer(const std::string& name, int64_t fallback, int64_t min_value,
                                  int64_t max_value) const;

 private:
  std::map<std::string, std::string> values_;  // flags map to ""
  std::vector<std::string> positional_;
};

// "1048576", "1M", "1MiB", "128K", "128 KiB" -> bytes; nullopt if malformed or
// overflowing.
std::optional<uint64_t> parse_byte_count(const std::string& text);

}  // namespace dsinf::util
