#include "bench/options.h"

#include <cctype>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace dsinf::bench {

absl::StatusOr<Options> Options::parse(const std::vector<std::string>& args,
                                       const std::set<std::string>& valued,
                                       const std::set<std::string>& flags) {
  Options options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!arg.starts_with("--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    if (flags.count(name) != 0) {
      if (eq != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(name, " takes no value"));
      }
      options.values_[name] = "";
    } else if (valued.count(name) != 0) {
      std::string value;
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      }
      if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      options.values_[name] = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", name, "'"));
    }
  }
  return options;
}

std::optional<std::string> Options::text(const std::string& name) const {
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
  const std::string suffix = text.substr(digits);
  int shift = 0;
  if (suffix.empty()) {
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

absl::StatusOr<uint64_t> Options::bytes(const std::string& name, uint64_t fallback,
                                        uint64_t min_bytes, uint64_t max_bytes) const {
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

absl::StatusOr<int64_t> Options::integer(const std::string& name, int64_t fallback,
                                         int64_t min_value, int64_t max_value) const {
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

}  // namespace dsinf::bench
