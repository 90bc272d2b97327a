#include "trainer/data/chat_template/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "trainer/data/chat_template/error.h"
#include "trainer/data/chat_template/unicode.h"

namespace dsinf::trainer::jinja {

namespace {

uint16_t nesting_of(const ValueList& items) {
  int deepest = 0;
  for (const Value& v : items) deepest = std::max(deepest, v.depth());
  if (deepest + 1 > kMaxNesting) {
    fail_limit(str_cat("values nest deeper than ", kMaxNesting, " levels"));
  }
  return static_cast<uint16_t>(deepest + 1);
}

}  // namespace

Value Value::undefined(std::string hint) {
  Value v;
  v.payload_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}
Value Value::none() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.payload_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.payload_ = i;
  return v;
}
Value Value::number(double f) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.payload_ = f;
  return v;
}
Value Value::string(std::string s, bool markup) {
  Value v;
  v.kind_ = Kind::kString;
  v.markup_ = markup;
  v.payload_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::list(ValueList items) {
  Value v;
  v.kind_ = Kind::kList;
  v.depth_ = nesting_of(items);
  v.payload_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}
Value Value::tuple(ValueList items) {
  Value v = list(std::move(items));
  v.kind_ = Kind::kTuple;
  return v;
}
Value Value::dict(ValueDict items) {
  Value v;
  v.kind_ = Kind::kDict;
  int deepest = 0;
  for (const auto& [key, value] : items.entries) {
    deepest = std::max({deepest, key.depth(), value.depth()});
  }
  if (deepest + 1 > kMaxNesting) {
    fail_limit(str_cat("values nest deeper than ", kMaxNesting, " levels"));
  }
  v.depth_ = static_cast<uint16_t>(deepest + 1);
  v.payload_ = std::make_shared<const ValueDict>(std::move(items));
  return v;
}
Value Value::ns(std::shared_ptr<Namespace> ns) {
  Value v;
  v.kind_ = Kind::kNamespace;
  v.depth_ = 1;
  v.payload_ = std::move(ns);
  return v;
}
Value Value::callable(std::shared_ptr<const Callable> fn) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.depth_ = static_cast<uint16_t>(fn->self.depth());
  v.payload_ = std::move(fn);
  return v;
}
Value Value::loop(std::shared_ptr<LoopState> state) {
  Value v;
  v.kind_ = Kind::kLoop;
  v.depth_ = 1;
  v.payload_ = std::move(state);
  return v;
}

Value Value::generator(std::shared_ptr<Generator> state) {
  Value v;
  v.kind_ = Kind::kGenerator;
  v.depth_ = nesting_of(state->items);
  v.payload_ = std::move(state);
  return v;
}

ValueList Generator::take_rest() {
  ValueList rest(items.begin() + static_cast<std::ptrdiff_t>(std::min(next, items.size())),
                 items.end());
  next = items.size();
  if (!error.empty()) fail(error);
  return rest;
}

int64_t Value::as_int() const {
  if (kind_ == Kind::kBool) return std::get<bool>(payload_) ? 1 : 0;
  return std::get<int64_t>(payload_);
}
double Value::as_double() const {
  if (kind_ == Kind::kFloat) return std::get<double>(payload_);
  return static_cast<double>(as_int());
}
const std::string& Value::str() const {
  static const std::string kEmpty;
  if (const auto* s = std::get_if<std::shared_ptr<const std::string>>(&payload_)) return **s;
  return kEmpty;
}
const ValueList& Value::items() const {
  return *std::get<std::shared_ptr<const ValueList>>(payload_);
}
const ValueDict& Value::dict() const {
  return *std::get<std::shared_ptr<const ValueDict>>(payload_);
}
const std::shared_ptr<Namespace>& Value::ns() const {
  return std::get<std::shared_ptr<Namespace>>(payload_);
}
const Callable& Value::fn() const { return *std::get<std::shared_ptr<const Callable>>(payload_); }
LoopState& Value::loop() const { return *std::get<std::shared_ptr<LoopState>>(payload_); }

bool LoopState::fill(size_t count) {
  while (accepted.size() < count && open && scanned < source->size()) {
    const Value& item = (*source)[scanned++];
    if (!accept || accept(item)) accepted.push_back(item);
  }
  return accepted.size() >= count;
}

int64_t LoopState::length() {
  fill(SIZE_MAX);
  return static_cast<int64_t>(accepted.size());
}
Generator& Value::generator() const { return *std::get<std::shared_ptr<Generator>>(payload_); }

const Value* ValueDict::find(const Value& key) const {
  for (const auto& entry : entries) {
    if (equals(entry.first, key)) return &entry.second;
  }
  return nullptr;
}
const Value* ValueDict::find(std::string_view key) const {
  for (const auto& entry : entries) {
    if (entry.first.is_string() && entry.first.str() == key) return &entry.second;
  }
  return nullptr;
}
void ValueDict::set(Value key, Value value) {
  for (auto& entry : entries) {
    if (equals(entry.first, key)) {
      entry.second = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

void fail_undefined(const Value& v) {
  fail(v.str().empty() ? "an undefined value was used" : v.str());
}

bool holds_namespace(const Value& v) {
  switch (v.kind()) {
    case Kind::kNamespace:
      return true;
    case Kind::kList:
    case Kind::kTuple:
      for (const Value& item : v.items()) {
        if (holds_namespace(item)) return true;
      }
      return false;
    case Kind::kDict:
      for (const auto& [key, value] : v.dict().entries) {
        if (holds_namespace(value)) return true;
      }
      return false;
    case Kind::kCallable:
      return holds_namespace(v.fn().self);
    case Kind::kGenerator:
      for (const Value& item : v.generator().items) {
        if (holds_namespace(item)) return true;
      }
      return false;
    default:
      return false;
  }
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return v.as_bool();
    case Kind::kInt:
      return v.as_int() != 0;
    case Kind::kFloat:
      return v.as_double() != 0.0;
    case Kind::kString:
      return !v.str().empty();
    case Kind::kList:
    case Kind::kTuple:
      return !v.items().empty();
    case Kind::kDict:
      return !v.dict().entries.empty();
    default:
      return true;
  }
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind() != Kind::kFloat && b.kind() != Kind::kFloat) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kString:
      return a.str() == b.str();
    case Kind::kList:
    case Kind::kTuple: {
      const ValueList& x = a.items();
      const ValueList& y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!equals(x[i], y[i])) return false;
      }
      return true;
    }
    case Kind::kDict: {
      const ValueDict& x = a.dict();
      const ValueDict& y = b.dict();
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [key, value] : x.entries) {
        const Value* other = y.find(key);
        if (other == nullptr || !equals(value, *other)) return false;
      }
      return true;
    }
    case Kind::kNamespace:
      return a.ns() == b.ns();
    case Kind::kCallable:
      return a.fn().name == b.fn().name && a.fn().method == b.fn().method &&
             equals(a.fn().self, b.fn().self);
    case Kind::kLoop:
      return &a.loop() == &b.loop();
    case Kind::kGenerator:
      return &a.generator() == &b.generator();
    default:
      return false;
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_undefined()) fail(a.str());
  if (b.is_undefined()) fail(b.str());
  if (a.is_number() && b.is_number()) {
    if (a.kind() != Kind::kFloat && b.kind() != Kind::kFloat) {
      return a.as_int() < b.as_int() ? -1 : (a.as_int() > b.as_int() ? 1 : 0);
    }
    const double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : (x > y ? 1 : 0);  // NaN compares equal: no order either way
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_sequence() && a.kind() == b.kind()) {
    const ValueList& x = a.items();
    const ValueList& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equals(x[i], y[i])) return compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  fail(str_cat("'<' not supported between instances of '", type_name(a), "' and '", type_name(b),
               "'"));
}

std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string_view sci(buf, end - buf);  // [-]d[.ddd]e[+-]xx
  std::string out;
  if (sci.front() == '-') {
    out.push_back('-');
    sci.remove_prefix(1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  int exponent = 0;
  std::from_chars(sci.data() + e + 1 + (sci[e + 1] == '+'), sci.data() + sci.size(), exponent);
  const int decpt = exponent + 1;  // where the point goes among the digits
  const int n = static_cast<int>(digits.size());
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(-decpt, '0') + digits;
    } else if (decpt >= n) {
      out += digits + std::string(decpt - n, '0') + ".0";
    } else {
      out += digits.substr(0, decpt) + "." + digits.substr(decpt);
    }
  } else {
    out += digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    const int shown = decpt - 1;
    out += shown < 0 ? "e-" : "e+";
    const int magnitude = std::abs(shown);
    if (magnitude < 10) out.push_back('0');
    out += std::to_string(magnitude);
  }
  return out;
}

namespace {

void append_hex(uint32_t value, int width, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int shift = (width - 1) * 4; shift >= 0; shift -= 4)
    out.push_back(kHex[(value >> shift) & 15]);
}

void repr_string(const std::string& s, std::string& out) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  out.push_back(quote);
  for (char32_t cp : utf8_decode(s)) {
    if (cp == static_cast<char32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (is_printable(cp)) {
      utf8_append(cp, out);
    } else if (cp <= 0xFF) {
      out += "\\x";
      append_hex(cp, 2, out);
    } else if (cp <= 0xFFFF) {
      out += "\\u";
      append_hex(cp, 4, out);
    } else {
      out += "\\U";
      append_hex(cp, 8, out);
    }
  }
  out.push_back(quote);
}

void repr_into(const Value& v, std::string& out, bool top_level_str);

void repr_items(const ValueList& items, std::string& out) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    repr_into(items[i], out, false);
  }
}

void repr_dict(const ValueDict& dict, std::string& out) {
  out.push_back('{');
  bool first = true;
  for (const auto& [key, value] : dict.entries) {
    if (!first) out += ", ";
    first = false;
    repr_into(key, out, false);
    out += ": ";
    repr_into(value, out, false);
  }
  out.push_back('}');
}

// str() when top_level_str, else repr().
void repr_into(const Value& v, std::string& out, bool top_level_str) {
  switch (v.kind()) {
    case Kind::kUndefined:
      if (!top_level_str) out += "Undefined";
      return;
    case Kind::kNone:
      out += "None";
      return;
    case Kind::kBool:
      out += v.as_bool() ? "True" : "False";
      return;
    case Kind::kInt:
      out += std::to_string(v.as_int());
      return;
    case Kind::kFloat:
      out += float_repr(v.as_double());
      return;
    case Kind::kString:
      if (top_level_str) {
        out += v.str();
      } else {
        if (v.markup()) out += "Markup(";
        repr_string(v.str(), out);
        if (v.markup()) out += ")";
      }
      return;
    case Kind::kList:
      out.push_back('[');
      repr_items(v.items(), out);
      out.push_back(']');
      return;
    case Kind::kTuple:
      out.push_back('(');
      repr_items(v.items(), out);
      if (v.items().size() == 1) out.push_back(',');
      out.push_back(')');
      return;
    case Kind::kDict:
      repr_dict(v.dict(), out);
      return;
    case Kind::kNamespace:
      out += "<Namespace ";
      repr_dict(v.ns()->attrs, out);
      out += ">";
      return;
    case Kind::kCallable:
      if (v.fn().method) {
        out +=
            str_cat("<built-in method ", v.fn().name, " of ", type_name(v.fn().self), " object>");
      } else {
        out += str_cat("<built-in function ", v.fn().name, ">");
      }
      return;
    case Kind::kLoop:
      out += str_cat("<LoopContext ", v.loop().index0 + 1, "/", v.loop().length(), ">");
      return;
    case Kind::kGenerator:
      out += "<generator object>";
      return;
  }
}

}  // namespace

std::string to_str(const Value& v) {
  if (v.is_string()) return v.str();
  std::string out;
  repr_into(v, out, true);
  return out;
}

std::string repr(const Value& v) {
  std::string out;
  repr_into(v, out, false);
  return out;
}

std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return v.markup() ? "Markup" : "str";
    case Kind::kList:
      return "list";
    case Kind::kTuple:
      return "tuple";
    case Kind::kDict:
      return "dict";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kCallable:
      return v.fn().method ? "builtin_function_or_method" : "function";
    case Kind::kLoop:
      return "LoopContext";
    case Kind::kGenerator:
      return "generator";
  }
  return "object";
}

std::string object_repr(const Value& v) {
  if (v.is_none()) return "None";
  return type_name(v) + " object";
}

namespace {

void json_string(const std::string& s, bool ensure_ascii, std::string& out) {
  out.push_back('"');
  for (char32_t cp : utf8_decode(s)) {
    switch (cp) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
      if (cp > 0xFFFF) {
        const char32_t v = cp - 0x10000;
        out += "\\u";
        append_hex(0xD800 + (v >> 10), 4, out);
        out += "\\u";
        append_hex(0xDC00 + (v & 0x3FF), 4, out);
      } else {
        out += "\\u";
        append_hex(cp, 4, out);
      }
    } else {
      utf8_append(cp, out);
    }
  }
  out.push_back('"');
}

std::string json_float(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f > 0 ? "Infinity" : "-Infinity";
  return float_repr(f);
}

std::string json_key(const Value& key) {
  switch (key.kind()) {
    case Kind::kString:
      return key.str();
    case Kind::kInt:
      return std::to_string(key.as_int());
    case Kind::kBool:
      return key.as_bool() ? "true" : "false";
    case Kind::kFloat:
      return json_float(key.as_double());
    case Kind::kNone:
      return "null";
    default:
      fail(str_cat("keys must be str, int, float, bool or None, not ", type_name(key)));
  }
}

void json_into(const Value& v, const JsonOptions& o, int level, std::string& out) {
  const auto newline = [&](int at) {
    if (!o.indent_set) return;
    out.push_back('\n');
    for (int i = 0; i < at; ++i) out += o.indent;
  };
  switch (v.kind()) {
    case Kind::kNone:
      out += "null";
      return;
    case Kind::kBool:
      out += v.as_bool() ? "true" : "false";
      return;
    case Kind::kInt:
      out += std::to_string(v.as_int());
      return;
    case Kind::kFloat:
      out += json_float(v.as_double());
      return;
    case Kind::kString:
      json_string(v.str(), o.ensure_ascii, out);
      return;
    case Kind::kList:
    case Kind::kTuple: {
      const ValueList& items = v.items();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out.push_back('[');
      newline(level + 1);
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) {
          out += o.item_separator;
          newline(level + 1);
        }
        json_into(items[i], o, level + 1, out);
      }
      newline(level);
      out.push_back(']');
      return;
    }
    case Kind::kDict: {
      std::vector<const std::pair<Value, Value>*> entries;
      for (const auto& entry : v.dict().entries) entries.push_back(&entry);
      if (entries.empty()) {
        out += "{}";
        return;
      }
      if (o.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(), [](const auto* a, const auto* b) {
          return compare(a->first, b->first) < 0;
        });
      }
      out.push_back('{');
      newline(level + 1);
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) {
          out += o.item_separator;
          newline(level + 1);
        }
        json_string(json_key(entries[i]->first), o.ensure_ascii, out);
        out += o.key_separator;
        json_into(entries[i]->second, o, level + 1, out);
      }
      newline(level);
      out.push_back('}');
      return;
    }
    default:
      fail(str_cat("Object of type ", type_name(v), " is not JSON serializable"));
  }
}

template <typename Json>
Value from_json_at(const Json& j, int depth) {
  if (depth > kMaxNesting) {
    fail_limit(str_cat("the context nests deeper than ", kMaxNesting, " levels"));
  }
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value::none();
    case nlohmann::json::value_t::boolean:
      return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::integer(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const auto u = j.template get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Value::integer(static_cast<int64_t>(u));
      }
      return Value::number(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value::number(j.template get<double>());
    case nlohmann::json::value_t::string:
      return Value::string(j.template get_ref<const std::string&>());
    case nlohmann::json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& element : j) items.push_back(from_json_at(element, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      ValueDict dict;
      dict.entries.reserve(j.size());
      for (const auto& [key, element] : j.items()) {
        dict.entries.emplace_back(Value::string(key), from_json_at(element, depth + 1));
      }
      return Value::dict(std::move(dict));
    }
    case nlohmann::json::value_t::binary:
      fail("the context holds binary data, which a template cannot use");
    default:
      return Value();
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonOptions& options) {
  std::string out;
  json_into(v, options, 0, out);
  return out;
}

Value from_json(const nlohmann::json& j) { return from_json_at(j, 0); }
Value from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

}  // namespace dsinf::trainer::jinja
