// Typed, non-throwing reads of tokenizer.json values. Every error names the
// JSON path of the value (e.g. `pre_tokenizer.pretokenizers[1].pattern`); the
// loader prefixes the file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace dsinf::trainer::tokenizer_internal {

using Json = nlohmann::json;

// The largest token id accepted: ids index tables, so a file claiming a huge
// id is refused rather than allocated for.
inline constexpr int64_t kMaxTokenId = (int64_t{1} << 26) - 1;

// This abseil's string_view is its own type: the conversions both ways.
inline absl::string_view av(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view sv(absl::string_view s) { return {s.data(), s.size()}; }

inline std::string json_child(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(av(path), ".", av(key));
}
inline std::string json_index(std::string_view path, size_t index) {
  return absl::StrCat(av(path), "[", index, "]");
}

inline absl::Status json_error(std::string_view path, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(av(path), ": ", av(what)));
}

// The member `key` of `object`, or nullptr when absent or null.
inline const Json* json_member(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

const char* json_type_name(const Json& value);

absl::StatusOr<std::string> json_string(const Json& value, std::string_view path);
absl::StatusOr<bool> json_bool(const Json& value, std::string_view path);
// A non-negative integer no larger than `max`.
absl::StatusOr<int64_t> json_uint(const Json& value, std::string_view path, int64_t max);

// Members: absent or null gives the default (or, when required, an error).
absl::StatusOr<std::string> member_string(const Json& object, std::string_view path,
                                          std::string_view key,
                                          std::optional<std::string> fallback = std::nullopt);
absl::StatusOr<bool> member_bool(const Json& object, std::string_view path, std::string_view key,
                                 bool fallback);
absl::StatusOr<int64_t> member_uint(const Json& object, std::string_view path, std::string_view key,
                                    int64_t max, std::optional<int64_t> fallback = std::nullopt);
// The member `key`, which must be present with the given JSON type.
absl::StatusOr<const Json*> member_array(const Json& object, std::string_view path,
                                         std::string_view key);
absl::StatusOr<const Json*> member_object(const Json& object, std::string_view path,
                                          std::string_view key);

// The "type" of a component object (refused when `value` is not an object).
absl::StatusOr<std::string> component_type(const Json& value, std::string_view path);
// The refusal of an unsupported component type.
absl::Status unsupported_type(std::string_view path, std::string_view type);

}  // namespace dsinf::trainer::tokenizer_internal
