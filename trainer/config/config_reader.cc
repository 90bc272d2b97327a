#include "trainer/config/config_reader.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace dsinf::trainer::config_internal {
namespace {

constexpr size_t kMaxDescribedChars = 60;

std::string join_path(absl::string_view parent, absl::string_view key) {
  if (parent.empty()) return std::string(key);
  return absl::StrCat(parent, ".", key);
}

bool is_auto(const Json& value) {
  return value.is_string() && value.get_ref<const std::string&>() == "auto";
}

std::string format_number(double x) { return absl::StrFormat("%g", x); }

std::string int_expectation(int64_t min, int64_t max) {
  if (min == max) return absl::StrCat(min);
  if (max == kNoMax) return absl::StrCat("an integer >= ", min);
  return absl::StrCat("an integer in [", min, ", ", max, "]");
}

std::string number_expectation(const NumberRange& r) {
  const bool has_min = r.min != -kInf;
  const bool has_max = r.max != kInf;
  if (has_min && has_max) {
    return absl::StrCat("a number in ", r.min_open ? "(" : "[", format_number(r.min), ", ",
                        format_number(r.max), r.max_open ? ")" : "]");
  }
  if (has_min) return absl::StrCat("a number ", r.min_open ? "> " : ">= ", format_number(r.min));
  if (has_max) return absl::StrCat("a number ", r.max_open ? "< " : "<= ", format_number(r.max));
  return "a number";
}

bool in_range(double x, const NumberRange& r) {
  if (r.min_open ? !(x > r.min) : !(x >= r.min)) return false;
  if (r.max_open ? !(x < r.max) : !(x <= r.max)) return false;
  return true;
}

// A JSON integer, or a float with no fractional part that fits in int64.
std::optional<int64_t> as_int64(const Json& value) {
  if (value.is_number_integer() && !value.is_number_unsigned()) return value.get<int64_t>();
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(kNoMax)) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (value.is_number_float()) {
    const double d = value.get<double>();
    // 2^63 is exactly representable; anything >= it does not fit.
    if (std::trunc(d) != d || d < -9223372036854775808.0 || d >= 9223372036854775808.0) {
      return std::nullopt;
    }
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

// Counts line and column (1-based, in bytes) of the byte at 0-based `offset`.
std::pair<size_t, size_t> line_and_column(const std::string& text, size_t offset) {
  offset = std::min(offset, text.size());
  size_t line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return {line, offset - line_start + 1};
}

// nlohmann's message after its own position prefix, on one line.
std::string parse_error_reason(const std::string& what) {
  std::string reason = what;
  const size_t at = what.find("parse error");
  if (at != std::string::npos) {
    const size_t colon = what.find(": ", at);
    if (colon != std::string::npos) reason = what.substr(colon + 2);
  }
  std::replace(reason.begin(), reason.end(), '\n', ' ');
  return reason;
}

// Tracks the open containers during parsing to find the first duplicate key.
class DuplicateKeyFinder {
 public:
  bool on_event(nlohmann::detail::parse_event_t event, const Json& parsed) {
    using Event = nlohmann::detail::parse_event_t;
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        frames_.push_back({event == Event::object_start, child_path(), {}, {}, 0});
        break;
      case Event::object_end:
      case Event::array_end:
        if (!frames_.empty()) frames_.pop_back();
        end_child();
        break;
      case Event::key: {
        Frame& frame = frames_.back();
        frame.pending_key = parsed.get<std::string>();
        if (!frame.keys.insert(frame.pending_key).second && !duplicate_) {
          duplicate_ = join_path(frame.path, frame.pending_key);
        }
        break;
      }
      case Event::value:
        end_child();
        break;
    }
    return true;
  }
  const std::optional<std::string>& duplicate() const { return duplicate_; }

 private:
  struct Frame {
    bool is_object;
    std::string path;
    std::set<std::string> keys;
    std::string pending_key;
    size_t index;
  };
  std::string child_path() const {
    if (frames_.empty()) return "";
    const Frame& top = frames_.back();
    if (top.is_object) return join_path(top.path, top.pending_key);
    return absl::StrCat(top.path, "[", top.index, "]");
  }
  void end_child() {
    if (!frames_.empty() && !frames_.back().is_object) ++frames_.back().index;
  }

  std::vector<Frame> frames_;
  std::optional<std::string> duplicate_;
};

}  // namespace

void Diagnostics::fail(absl::string_view message, absl::StatusCode code) {
  if (!status_.ok()) return;
  status_ = absl::Status(code, absl::StrCat(source_, ": ", message));
}

void Diagnostics::fail_at(absl::string_view path, absl::string_view message) {
  fail(absl::StrCat(path, ": ", message));
}

void Diagnostics::warn_at(absl::string_view path, absl::string_view message) {
  warnings_.push_back(absl::StrCat(source_, ": ", path, ": ", message));
}

std::optional<Json> parse_json_strict(const std::string& text, Diagnostics* diag) {
  DuplicateKeyFinder finder;
  Json::parser_callback_t callback = [&finder](int, nlohmann::detail::parse_event_t event,
                                               Json& parsed) {
    return finder.on_event(event, parsed);
  };
  Json value;
  try {
    value = Json::parse(text, callback, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const Json::parse_error& e) {
    // e.byte is the 1-based index of the last byte read (size + 1 at the end).
    const size_t offset = e.byte > 0 ? e.byte - 1 : 0;
    const auto [line, column] = line_and_column(text, offset);
    diag->fail(absl::StrCat("malformed JSON at line ", line, ", column ", column, ": ",
                            parse_error_reason(e.what())));
    return std::nullopt;
  } catch (const Json::exception& e) {
    // A number beyond a double ("number overflow parsing '1e400'"): located
    // by its text, which the message quotes.
    const std::string what = e.what();
    const size_t open = what.find('\''), close = what.rfind('\'');
    const std::string token =
        open != std::string::npos && close > open ? what.substr(open + 1, close - open - 1) : "";
    const size_t at = token.empty() ? std::string::npos : text.find(token);
    if (at == std::string::npos) {
      diag->fail(absl::StrCat("malformed JSON: ", parse_error_reason(what)));
    } else {
      const auto [line, column] = line_and_column(text, at);
      diag->fail(absl::StrCat("number out of range at line ", line, ", column ", column, ": ",
                              token, " does not fit a double"));
    }
    return std::nullopt;
  }
  if (finder.duplicate()) {
    diag->fail(absl::StrCat("duplicate key '", *finder.duplicate(), "'"));
    return std::nullopt;
  }
  return value;
}

size_t edit_distance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
      const size_t next = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = row[j];
      row[j] = next;
    }
  }
  return row[b.size()];
}

absl::string_view nearest_key(absl::string_view key, absl::Span<const absl::string_view> known) {
  absl::string_view best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (absl::string_view candidate : known) {
    const size_t d = edit_distance(key, candidate);
    if (d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

std::string describe_value(const Json& value) {
  std::string text = value.dump();
  if (text.size() > kMaxDescribedChars)
    text = absl::StrCat(text.substr(0, kMaxDescribedChars), "...");
  return text;
}

const Json* ObjectReader::find(absl::string_view key) const {
  if (object_ == nullptr) return nullptr;
  const auto it = object_->find(std::string(key));
  return it == object_->end() ? nullptr : &*it;
}

std::string ObjectReader::path_of(absl::string_view key) const { return join_path(path_, key); }

void ObjectReader::allow_only(absl::Span<const absl::string_view> known) {
  if (object_ == nullptr || !diag_->ok()) return;
  for (const auto& [key, value] : object_->items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string message = absl::StrCat("unknown key '", path_of(key), "'");
    const absl::string_view suggestion = nearest_key(key, known);
    if (!suggestion.empty())
      absl::StrAppend(&message, " (did you mean '", path_of(suggestion), "'?)");
    diag_->fail(message);
    return;
  }
}

const Json* ObjectReader::value_to_read(absl::string_view key) {
  if (!diag_->ok()) return nullptr;
  const Json* value = find(key);
  if (value == nullptr) return nullptr;
  if (is_auto(*value)) {
    fail(key, "'auto' is resolved by the Hugging Face Trainer integration; give a value");
    return nullptr;
  }
  return value;
}

void ObjectReader::fail_expected(absl::string_view key, absl::string_view expected,
                                 const Json& given) {
  fail(key, absl::StrCat("expected ", expected, ", got ", describe_value(given)));
}

ObjectReader ObjectReader::object(absl::string_view key) {
  const Json* value = value_to_read(key);
  if (value == nullptr) return ObjectReader(nullptr, path_of(key), diag_);
  if (!value->is_object()) {
    fail_expected(key, "an object", *value);
    return ObjectReader(nullptr, path_of(key), diag_);
  }
  return ObjectReader(value, path_of(key), diag_);
}

bool ObjectReader::read_int(absl::string_view key, int64_t min, int64_t max, int64_t* out) {
  const Json* value = value_to_read(key);
  if (value == nullptr) return false;
  const std::optional<int64_t> x = as_int64(*value);
  if (!x || *x < min || *x > max) {
    fail_expected(key, int_expectation(min, max), *value);
    return false;
  }
  *out = *x;
  return true;
}

bool ObjectReader::read_number(absl::string_view key, NumberRange range, double* out) {
  const Json* value = value_to_read(key);
  if (value == nullptr) return false;
  if (!value->is_number() || !in_range(value->get<double>(), range)) {
    fail_expected(key, number_expectation(range), *value);
    return false;
  }
  *out = value->get<double>();
  return true;
}

bool ObjectReader::read_bool(absl::string_view key, bool* out) {
  const Json* value = value_to_read(key);
  if (value == nullptr) return false;
  if (!value->is_boolean()) {
    fail_expected(key, "true or false", *value);
    return false;
  }
  *out = value->get<bool>();
  return true;
}

bool ObjectReader::read_string(absl::string_view key, bool non_empty, std::string* out) {
  const Json* value = value_to_read(key);
  if (value == nullptr) return false;
  if (!value->is_string() || (non_empty && value->get_ref<const std::string&>().empty())) {
    fail_expected(key, non_empty ? "a non-empty string" : "a string", *value);
    return false;
  }
  *out = value->get<std::string>();
  return true;
}

bool ObjectReader::read_enum(absl::string_view key,
                             std::initializer_list<absl::string_view> choices, bool ignore_case,
                             size_t* out) {
  const Json* value = value_to_read(key);
  if (value == nullptr) return false;
  if (value->is_string()) {
    const std::string& given = value->get_ref<const std::string&>();
    size_t index = 0;
    for (absl::string_view choice : choices) {
      const bool match = ignore_case ? absl::EqualsIgnoreCase(given, choice) : given == choice;
      if (match) {
        *out = index;
        return true;
      }
      ++index;
    }
  }
  fail_expected(key, absl::StrCat("one of ", absl::StrJoin(choices, ", ")), *value);
  return false;
}

bool ObjectReader::read_number_list(absl::string_view key, size_t count, NumberRange range,
                                    std::vector<double>* out) {
  const Json* value = value_to_read(key);
  if (value == nullptr) return false;
  bool valid = value->is_array() && value->size() == count;
  std::vector<double> items;
  for (size_t i = 0; valid && i < count; ++i) {
    const Json& item = (*value)[i];
    if (is_auto(item)) {
      fail(key, "'auto' is resolved by the Hugging Face Trainer integration; give a value");
      return false;
    }
    valid = item.is_number() && in_range(item.get<double>(), range);
    if (valid) items.push_back(item.get<double>());
  }
  if (!valid) {
    fail_expected(key,
                  absl::StrCat("a list of ", count, " numbers, each ", number_expectation(range)),
                  *value);
    return false;
  }
  *out = std::move(items);
  return true;
}

bool ObjectReader::read_string_list(absl::string_view key, std::vector<std::string>* out) {
  const Json* value = value_to_read(key);
  if (value == nullptr) return false;
  std::vector<std::string> items;
  bool valid = true;
  if (value->is_string()) {
    items.push_back(value->get<std::string>());
  } else if (value->is_array() && !value->empty()) {
    for (const Json& item : *value) {
      if (is_auto(item)) {
        fail(key, "'auto' is resolved by the Hugging Face Trainer integration; give a value");
        return false;
      }
      if (!item.is_string()) {
        valid = false;
        break;
      }
      items.push_back(item.get<std::string>());
    }
  } else {
    valid = false;
  }
  for (const std::string& item : items) valid = valid && !item.empty();
  if (!valid) {
    fail_expected(key, "a non-empty string or a non-empty list of non-empty strings", *value);
    return false;
  }
  *out = std::move(items);
  return true;
}

}  // namespace dsinf::trainer::config_internal
