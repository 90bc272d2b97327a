#include "trainer/data/tokenizer/json_util.h"

namespace dsinf::trainer::tokenizer_internal {

const char* json_type_name(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a number";
    default:
      return "an unknown value";
  }
}

absl::StatusOr<std::string> json_string(const Json& value, std::string_view path) {
  if (!value.is_string()) {
    return json_error(path, absl::StrCat("expected a string, got ", json_type_name(value)));
  }
  return value.get_ref<const std::string&>();
}

absl::StatusOr<bool> json_bool(const Json& value, std::string_view path) {
  if (!value.is_boolean()) {
    return json_error(path, absl::StrCat("expected a boolean, got ", json_type_name(value)));
  }
  return value.get<bool>();
}

absl::StatusOr<int64_t> json_uint(const Json& value, std::string_view path, int64_t max) {
  if (value.is_number_unsigned()) {
    const uint64_t v = value.get<uint64_t>();
    if (v > static_cast<uint64_t>(max)) {
      return json_error(path, absl::StrCat(v, " is larger than the largest supported, ", max));
    }
    return static_cast<int64_t>(v);
  }
  if (value.is_number_integer()) {
    const int64_t v = value.get<int64_t>();
    if (v < 0) return json_error(path, absl::StrCat("expected a non-negative integer, got ", v));
    if (v > max) {
      return json_error(path, absl::StrCat(v, " is larger than the largest supported, ", max));
    }
    return v;
  }
  return json_error(path,
                    absl::StrCat("expected a non-negative integer, got ", json_type_name(value)));
}

absl::StatusOr<std::string> member_string(const Json& object, std::string_view path,
                                          std::string_view key,
                                          std::optional<std::string> fallback) {
  const Json* value = json_member(object, key);
  if (value == nullptr) {
    if (fallback) return *fallback;
    return json_error(json_child(path, key), "missing");
  }
  return json_string(*value, json_child(path, key));
}

absl::StatusOr<bool> member_bool(const Json& object, std::string_view path, std::string_view key,
                                 bool fallback) {
  const Json* value = json_member(object, key);
  if (value == nullptr) return fallback;
  return json_bool(*value, json_child(path, key));
}

absl::StatusOr<int64_t> member_uint(const Json& object, std::string_view path, std::string_view key,
                                    int64_t max, std::optional<int64_t> fallback) {
  const Json* value = json_member(object, key);
  if (value == nullptr) {
    if (fallback) return *fallback;
    return json_error(json_child(path, key), "missing");
  }
  return json_uint(*value, json_child(path, key), max);
}

absl::StatusOr<const Json*> member_array(const Json& object, std::string_view path,
                                         std::string_view key) {
  const Json* value = json_member(object, key);
  if (value == nullptr) return json_error(json_child(path, key), "missing");
  if (!value->is_array()) {
    return json_error(json_child(path, key),
                      absl::StrCat("expected an array, got ", json_type_name(*value)));
  }
  return value;
}

absl::StatusOr<const Json*> member_object(const Json& object, std::string_view path,
                                          std::string_view key) {
  const Json* value = json_member(object, key);
  if (value == nullptr) return json_error(json_child(path, key), "missing");
  if (!value->is_object()) {
    return json_error(json_child(path, key),
                      absl::StrCat("expected an object, got ", json_type_name(*value)));
  }
  return value;
}

absl::StatusOr<std::string> component_type(const Json& value, std::string_view path) {
  if (!value.is_object()) {
    return json_error(path, absl::StrCat("expected an object, got ", json_type_name(value)));
  }
  return member_string(value, path, "type");
}

absl::Status unsupported_type(std::string_view path, std::string_view type) {
  return json_error(path, absl::StrCat("type \"", av(type), "\" is not supported"));
}

}  // namespace dsinf::trainer::tokenizer_internal
