#include "memory/util/args.h"

#include <cctype>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace dsinf::util {

absl::StatusOr<Args> Args::parse(const std::vector<std::string>& args, const Spec& spec) {
  Args parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i] == "-h" ? std::string("--help") : args[i];
    if (!arg.starts_with("-")) {
      if (parsed.positional_.size() >= spec.max_positional) {
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
      }
      parsed.positional_.push_back(arg);
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    if (spec.flags.count(name) != 0) {
      if (eq != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(name, " takes no value"));
      }
      parsed.values_[name] = "";
    } else if (spec.valued.count(name) != 0) {
      std::string value;
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      }
      if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      parsed.values_[name] = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", name, "'"));
    }
  }
  return parsed;
}

std::optional<std::string> Args::text(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::optional<uint64_t> parse_byte_count(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0) return std::nullopt;
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text.substr(0, digits), &value)) return std::nullopt;
  // "128 KiB" as format_bytes writes it reads back too.
  const size_t suffix_at =
      digits < text.size() && text[digits] == ' ' && digits + 1 < text.size() ? digits + 1 : digits;
  const std::string suffix = text.substr(suffix_at);
  int shift = 0;
  if (suffix.empty() || suffix == "B") {
    shift = 0;
  } else if (suffix == "K" || suffix == "KiB" || suffix == "k") {
    shift = 10;
  } else if (suffix == "M" || suffix == "MiB") {
    shift = 20;
  } else if (suffix == "G" || suffix == "GiB") {
    shift = 30;
  } else if (suffix == "T" || suffix == "TiB") {
    shift = 40;
  } else {
    return std::nullopt;
  }
  if (shift > 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
  return value << shift;
}

absl::StatusOr<uint64_t> Args::bytes(const std::string& name, uint64_t fallback, uint64_t min_bytes,
                                     uint64_t max_bytes) const {
  const std::optional<std::string> given = text(name);
  if (!given) return fallback;
  const std::optional<uint64_t> value = parse_byte_count(*given);
  if (!value) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a byte count such as 1048576 or 1M, got '", *given, "'"));
  }
  if (*value < min_bytes || *value > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected ", min_bytes, " to ", max_bytes, " bytes, got ", *value));
  }
  return *value;
}

absl::StatusOr<int64_t> Args::integer(const std::string& name, int64_t fallback, int64_t min_value,
                                      int64_t max_value) const {
  const std::optional<std::string> given = text(name);
  if (!given) return fallback;
  int64_t value = 0;
  if (!absl::SimpleAtoi(*given, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected an integer, got '", *given, "'"));
  }
  if (value < min_value || value > max_value) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected ", min_value, " to ", max_value, ", got ", value));
  }
  return value;
}

}  // namespace dsinf::util
