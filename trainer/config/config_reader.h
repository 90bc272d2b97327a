// A strict reader for JSON config files: parse errors with line and column,
// duplicate keys, unknown keys with a nearest-key suggestion, and typed reads
// that check type and range. Every message is one line that starts with the
// source name and names the JSON path of the key. The first error wins: after
// it every read does nothing, so a schema reads straight through and checks
// Diagnostics::ok() once at the end of each stage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"

namespace dsinf::trainer::config_internal {

// Ordered, so that the first unknown key reported is the first in the file.
using Json = nlohmann::ordered_json;

// The first error and the warnings of one config file.
class Diagnostics {
 public:
  explicit Diagnostics(std::string source) : source_(std::move(source)) {}

  const std::string& source() const { return source_; }
  bool ok() const { return status_.ok(); }
  const absl::Status& status() const { return status_; }

  // "<source>: <message>", kept only if no error was recorded before.
  void fail(absl::string_view message, absl::StatusCode code = absl::StatusCode::kInvalidArgument);
  // "<source>: <path>: <message>".
  void fail_at(absl::string_view path, absl::string_view message);
  void warn_at(absl::string_view path, absl::string_view message);
  std::vector<std::string> take_warnings() { return std::move(warnings_); }

 private:
  std::string source_;
  absl::Status status_;
  std::vector<std::string> warnings_;
};

// Parses `text` as one JSON value; rejects comments, trailing text and
// duplicate keys. On failure records the error in `diag` and returns nullopt.
std::optional<Json> parse_json_strict(const std::string& text, Diagnostics* diag);

// Levenshtein distance, ASCII case-insensitive.
size_t edit_distance(absl::string_view a, absl::string_view b);
// The candidate nearest to `key` (first one on ties); empty if there is none.
absl::string_view nearest_key(absl::string_view key, absl::Span<const absl::string_view> known);

// `value` as it appeared in the file, shortened to fit a one-line message.
std::string describe_value(const Json& value);

inline constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();
inline constexpr double kInf = std::numeric_limits<double>::infinity();

// A closed or open interval for number keys: "a number > 0", "in [0, 1)".
struct NumberRange {
  double min = -kInf;
  double max = kInf;
  bool min_open = false;
  bool max_open = false;
};
inline constexpr NumberRange kPositive{0.0, kInf, true, false};
inline constexpr NumberRange kNonNegative{0.0, kInf, false, false};

// A view of the JSON object at `path` (an absent section reads as empty).
// Every read returns true only if the key is present and valid.
class ObjectReader {
 public:
  ObjectReader(const Json* object, std::string path, Diagnostics* diag)
      : object_(object), path_(std::move(path)), diag_(diag) {}

  bool present() const { return object_ != nullptr; }
  bool has(absl::string_view key) const { return find(key) != nullptr; }
  const Json* find(absl::string_view key) const;
  std::string path_of(absl::string_view key) const;
  Diagnostics* diagnostics() const { return diag_; }

  // Every key of the object must be in `known`; an unknown one is an error
  // that suggests the nearest known key.
  void allow_only(absl::Span<const absl::string_view> known);

  // A nested object; absent if the key is absent or on error.
  ObjectReader object(absl::string_view key);

  // Accepts JSON integers and integral floats (5e7) in [min, max].
  bool read_int(absl::string_view key, int64_t min, int64_t max, int64_t* out);
  template <typename T>
  bool read_int_as(absl::string_view key, int64_t min, int64_t max, T* out) {
    int64_t value = 0;
    if (!read_int(key, min, max, &value)) return false;
    *out = static_cast<T>(value);
    return true;
  }
  bool read_number(absl::string_view key, NumberRange range, double* out);
  bool read_bool(absl::string_view key, bool* out);
  bool read_string(absl::string_view key, bool non_empty, std::string* out);
  // One of `choices`; *out is the index of the match.
  bool read_enum(absl::string_view key, std::initializer_list<absl::string_view> choices,
                 bool ignore_case, size_t* out);
  // A list of exactly `count` numbers, each in `range`.
  bool read_number_list(absl::string_view key, size_t count, NumberRange range,
                        std::vector<double>* out);
  // A non-empty string or a non-empty list of non-empty strings.
  bool read_string_list(absl::string_view key, std::vector<std::string>* out);

  void fail(absl::string_view key, absl::string_view message) {
    diag_->fail_at(path_of(key), message);
  }
  void warn(absl::string_view key, absl::string_view message) {
    diag_->warn_at(path_of(key), message);
  }

 private:
  // The value of `key` if present, not "auto", and no error was recorded.
  const Json* value_to_read(absl::string_view key);
  void fail_expected(absl::string_view key, absl::string_view expected, const Json& given);

  const Json* object_;
  std::string path_;
  Diagnostics* diag_;
};

}  // namespace dsinf::trainer::config_internal
