#include "trainer/data/chat_template/strings.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "trainer/data/chat_template/error.h"
#include "trainer/data/chat_template/renderer.h"
#include "trainer/data/chat_template/unicode.h"

namespace dsinf::trainer::jinja {

namespace {

const std::string& require_str(const Value& v, std::string_view what) {
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_string()) fail(str_cat(what, " must be str, not ", type_name(v)));
  return v.str();
}

int64_t require_int(const Value& v, std::string_view what) {
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_int()) {
    fail(str_cat("'", type_name(v), "' object cannot be interpreted as an integer (", what, ")"));
  }
  return v.as_int();
}

// The code points of s[start:end] (None: the ends), and where they start.
struct Window {
  std::u32string cps;
  int64_t offset = 0;
};
Window window(std::string_view s, const Value& start, const Value& end) {
  Window w{utf8_decode(s), 0};
  const auto n = static_cast<int64_t>(w.cps.size());
  const auto clamp = [&](const Value& v, int64_t fallback) {
    if (v.is_none() || v.is_undefined()) return fallback;
    int64_t i = require_int(v, "slice index");
    if (i < 0) i = std::max<int64_t>(0, i + n);
    return std::min(i, n);
  };
  const int64_t a = clamp(start, 0), b = clamp(end, n);
  w.offset = a;
  w.cps = b > a ? w.cps.substr(a, b - a) : std::u32string();
  return w;
}

bool affix_matches(const Value& affix, const std::u32string& text, bool prefix,
                   std::string_view method) {
  std::vector<std::u32string> options;
  if (affix.kind() == Kind::kTuple) {
    for (const Value& v : affix.items()) options.push_back(utf8_decode(require_str(v, method)));
  } else if (affix.is_string()) {
    options.push_back(utf8_decode(affix.str()));
  } else {
    fail(str_cat(method, " first arg must be str or a tuple of str, not ", type_name(affix)));
  }
  for (const std::u32string& o : options) {
    if (o.size() > text.size()) continue;
    if (prefix ? text.compare(0, o.size(), o) == 0
               : text.compare(text.size() - o.size(), o.size(), o) == 0) {
      return true;
    }
  }
  return false;
}

ValueList split_whitespace(const std::u32string& cps, int64_t maxsplit, bool from_right) {
  std::vector<std::u32string> parts;
  if (!from_right) {
    size_t i = 0;
    while (true) {
      while (i < cps.size() && is_space(cps[i])) ++i;
      if (i >= cps.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        parts.push_back(cps.substr(i));
        break;
      }
      size_t j = i;
      while (j < cps.size() && !is_space(cps[j])) ++j;
      parts.push_back(cps.substr(i, j - i));
      i = j;
    }
  } else {
    int64_t i = static_cast<int64_t>(cps.size()) - 1;
    while (true) {
      while (i >= 0 && is_space(cps[i])) --i;
      if (i < 0) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        parts.push_back(cps.substr(0, i + 1));
        break;
      }
      int64_t j = i;
      while (j >= 0 && !is_space(cps[j])) --j;
      parts.push_back(cps.substr(j + 1, i - j));
      i = j;
    }
    std::reverse(parts.begin(), parts.end());
  }
  ValueList out;
  for (const auto& p : parts) out.push_back(Value::string(utf8_encode(p)));
  return out;
}

ValueList split_on(std::string_view s, std::string_view sep, int64_t maxsplit, bool from_right) {
  if (sep.empty()) fail("empty separator");
  std::vector<std::string> parts;
  if (!from_right) {
    size_t start = 0;
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      const size_t at = s.find(sep, start);
      if (at == std::string_view::npos) break;
      parts.emplace_back(s.substr(start, at - start));
      start = at + sep.size();
    }
    parts.emplace_back(s.substr(start));
  } else {
    size_t end = s.size();
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      if (end < sep.size()) break;
      const size_t at = s.rfind(sep, end - sep.size());
      if (at == std::string_view::npos) break;
      parts.emplace_back(s.substr(at + sep.size(), end - at - sep.size()));
      end = at;
    }
    parts.emplace_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
  }
  ValueList out;
  for (auto& p : parts) out.push_back(Value::string(std::move(p)));
  return out;
}

std::string pad(std::string_view s, int64_t width, char32_t fill, char align) {
  const int64_t length = utf8_length(s);
  if (width <= length) return std::string(s);
  if (width > static_cast<int64_t>(kMaxOutputBytes))
    fail_limit("a padded string would exceed the limit");
  const int64_t margin = width - length;
  int64_t left = 0;
  if (align == '>')
    left = margin;
  else if (align == '^')
    left = margin / 2;
  else if (align == 'c')
    left = margin / 2 + (margin & width & 1);  // str.center's rounding
  std::string fill_utf8;
  utf8_append(fill, fill_utf8);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill_utf8;
  out += s;
  for (int64_t i = left; i < margin; ++i) out += fill_utf8;
  return out;
}

bool all_of_cps(std::string_view s, bool (*predicate)(char32_t)) {
  const std::u32string cps = utf8_decode(s);
  if (cps.empty()) return false;
  return std::all_of(cps.begin(), cps.end(), predicate);
}

bool cased_all(std::string_view s, bool lower) {
  bool any_cased = false;
  for (char32_t cp : utf8_decode(s)) {
    if (lower ? is_upper(cp) : is_lower(cp)) return false;
    if (lower ? is_lower(cp) : is_upper(cp)) any_cased = true;
  }
  return any_cased;
}

// str.format: {} {0} {name} with .attr/[key], !r/!s conversions, format specs.
std::string str_format(Renderer& r, const std::string& format, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      fail("Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = format.find('}', i);
    if (close == std::string::npos) fail("Single '{' encountered in format string");
    std::string field = format.substr(i + 1, close - i - 1);
    if (field.find('{') != std::string::npos) fail("nested format fields are not supported");
    i = close;
    std::string spec;
    if (const size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    char conversion = 0;
    if (const size_t bang = field.find('!'); bang != std::string::npos) {
      if (bang + 2 != field.size()) fail("expected ':' after conversion specifier");
      conversion = field[bang + 1];
      field.resize(bang);
    }
    size_t name_end = field.find_first_of(".[");
    const std::string name = field.substr(0, name_end);
    Value v;
    if (name.empty() ||
        std::all_of(name.begin(), name.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      const size_t index = name.empty() ? auto_index++ : std::strtoul(name.c_str(), nullptr, 10);
      if (index >= args.positional.size()) {
        fail(str_cat("Replacement index ", index, " out of range for positional args tuple"));
      }
      v = args.positional[index];
    } else {
      bool found = false;
      for (const auto& [keyword, value] : args.keyword) {
        if (keyword == name) v = value, found = true;
      }
      if (!found) fail("KeyError: '" + name + "'");
    }
    while (name_end != std::string::npos && name_end < field.size()) {
      if (field[name_end] == '.') {
        const size_t next = field.find_first_of(".[", name_end + 1);
        v = get_attribute(
            v, field.substr(name_end + 1,
                            next == std::string::npos ? std::string::npos : next - name_end - 1));
        name_end = next;
      } else {
        const size_t end = field.find(']', name_end);
        if (end == std::string::npos) fail("Missing ']' in format string");
        const std::string key = field.substr(name_end + 1, end - name_end - 1);
        const bool numeric = !key.empty() && std::all_of(key.begin(), key.end(), [](char d) {
          return d >= '0' && d <= '9';
        });
        v = get_item(v, numeric ? Value::integer(std::strtoll(key.c_str(), nullptr, 10))
                                : Value::string(key));
        name_end = end + 1;
      }
    }
    if (conversion == 's')
      v = Value::string(to_str(v));
    else if (conversion == 'r' || conversion == 'a')
      v = Value::string(repr(v));
    else if (conversion != 0)
      fail(str_cat("Unknown conversion specifier ", std::string(1, conversion)));
    out += py_format_spec(v, spec);
    r.charge(out.size());
  }
  return out;
}

}  // namespace

std::string py_strip(std::string_view s, const Value& chars, bool left, bool right) {
  if (!chars.is_none() && !chars.is_undefined() && !chars.is_string()) {
    fail("strip arg must be None or str");
  }
  const bool whitespace = !chars.is_string();
  if (whitespace && is_ascii(s)) {
    size_t a = 0, b = s.size();
    if (left)
      while (a < b && is_space(static_cast<unsigned char>(s[a]))) ++a;
    if (right)
      while (b > a && is_space(static_cast<unsigned char>(s[b - 1]))) --b;
    return std::string(s.substr(a, b - a));
  }
  const std::u32string set = whitespace ? std::u32string() : utf8_decode(chars.str());
  const auto strip = [&](char32_t cp) {
    return whitespace ? is_space(cp) : set.find(cp) != std::u32string::npos;
  };
  const std::u32string cps = utf8_decode(s);
  size_t a = 0, b = cps.size();
  if (left)
    while (a < b && strip(cps[a])) ++a;
  if (right)
    while (b > a && strip(cps[b - 1])) --b;
  return utf8_encode(std::u32string_view(cps).substr(a, b - a));
}

std::string py_replace(Renderer& r, std::string_view s, std::string_view old,
                       std::string_view replacement, int64_t count) {
  std::string out;
  if (old.empty()) {
    const std::u32string cps = utf8_decode(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += replacement;
        ++done;
      }
      if (i < cps.size()) utf8_append(cps[i], out);
      r.charge(replacement.size() + 4);
    }
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(old, start);
    if (at == std::string_view::npos) break;
    out += s.substr(start, at - start);
    out += replacement;
    start = at + old.size();
    ++done;
    r.charge(replacement.size() + (at - start));
  }
  out += s.substr(start);
  r.charge(out.size());
  return out;
}

std::string py_title(std::string_view s) {
  std::u32string out;
  bool previous_cased = false;
  for (char32_t cp : utf8_decode(s)) {
    if (previous_cased)
      append_lower(cp, out);
    else
      append_title(cp, out);
    previous_cased = is_cased(cp);
  }
  return utf8_encode(out);
}

std::string py_capitalize(std::string_view s) {
  std::u32string out;
  const std::u32string cps = utf8_decode(s);
  for (size_t i = 0; i < cps.size(); ++i) {
    if (i == 0)
      append_title(cps[i], out);
    else
      append_lower(cps[i], out);
  }
  return utf8_encode(out);
}

std::vector<std::string> py_splitlines(std::string_view s, bool keepends) {
  const std::u32string cps = utf8_decode(s);
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    const bool breaks = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C ||
                        c == 0x1D || c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!breaks) continue;
    size_t end = i + 1;
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') end = i + 2;
    lines.push_back(
        utf8_encode(std::u32string_view(cps).substr(start, (keepends ? end : i) - start)));
    start = end;
    i = end - 1;
  }
  if (start < cps.size()) lines.push_back(utf8_encode(std::u32string_view(cps).substr(start)));
  return lines;
}

std::optional<int64_t> py_int(std::string_view text, int base) {
  const std::string stripped = py_strip(text, Value::none(), true, true);
  std::string_view s = stripped;
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (base != 0 && (base < 2 || base > 36)) fail("int() base must be >= 2 and <= 36, or 0");
  const auto prefix_base = [&]() -> int {
    if (s.size() < 2 || s[0] != '0') return 0;
    const char p = static_cast<char>(s[1] | 0x20);
    return p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
  };
  const int prefixed = prefix_base();
  bool after_prefix = false;
  if (base == 0) {
    base = prefixed ? prefixed : 10;
    if (prefixed)
      s.remove_prefix(2), after_prefix = true;
    else if (s.size() > 1 && s[0] == '0' && s.find_first_not_of("0_") != std::string_view::npos)
      return std::nullopt;
  } else if (prefixed == base) {
    s.remove_prefix(2);
    after_prefix = true;
  }
  if (after_prefix && !s.empty() && s[0] == '_') s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  uint64_t magnitude = 0;
  bool previous_underscore = true;  // no leading underscore
  for (char c : s) {
    if (c == '_') {
      if (previous_underscore) return std::nullopt;
      previous_underscore = true;
      continue;
    }
    int digit;
    if (c >= '0' && c <= '9')
      digit = c - '0';
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
      digit = (c | 0x20) - 'a' + 10;
    else
      return std::nullopt;
    if (digit >= base) return std::nullopt;
    if (__builtin_mul_overflow(magnitude, static_cast<uint64_t>(base), &magnitude) ||
        __builtin_add_overflow(magnitude, static_cast<uint64_t>(digit), &magnitude) ||
        magnitude > static_cast<uint64_t>(INT64_MAX) + (negative ? 1 : 0)) {
      fail("integer overflow: integers are limited to 64 bits here (Python's are unbounded)");
    }
    previous_underscore = false;
  }
  if (previous_underscore) return std::nullopt;
  return negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
}

std::optional<double> py_float(std::string_view text) {
  const std::string stripped = py_strip(text, Value::none(), true, true);
  std::string_view s = stripped;
  std::string body;
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  std::string lower;
  for (char c : s) lower.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
  if (lower == "inf" || lower == "infinity") return negative ? -INFINITY : INFINITY;
  if (lower == "nan") return NAN;
  // digits with single underscores between them, [.digits], [e[sign]digits]
  size_t i = 0;
  int mantissa_digits = 0;
  const auto digits = [&](bool count) {
    bool previous_digit = false;
    while (i < s.size()) {
      if (s[i] >= '0' && s[i] <= '9') {
        body.push_back(s[i]);
        previous_digit = true;
        if (count) ++mantissa_digits;
      } else if (s[i] == '_' && previous_digit && i + 1 < s.size() && s[i + 1] >= '0' &&
                 s[i + 1] <= '9') {
        previous_digit = false;
      } else {
        break;
      }
      ++i;
    }
  };
  digits(true);
  if (i < s.size() && s[i] == '.') {
    body.push_back('.');
    ++i;
    digits(true);
  }
  if (mantissa_digits == 0) return std::nullopt;
  if (i < s.size() && (s[i] | 0x20) == 'e') {
    body.push_back('e');
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) body.push_back(s[i++]);
    const size_t before = body.size();
    digits(false);
    if (body.size() == before) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  const double value = std::strtod(body.c_str(), nullptr);
  return negative ? -value : value;
}

std::string py_format_spec(const Value& v, std::string_view spec) {
  if (spec.empty()) return to_str(v);
  // [[fill]align][sign][#][0][width][,|_][.precision][type]
  const std::u32string cps = utf8_decode(spec);
  size_t i = 0;
  char32_t fill = ' ';
  char align = 0;
  const auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (cps.size() >= 2 && is_align(cps[1])) {
    fill = cps[0];
    align = static_cast<char>(cps[1]);
    i = 2;
  } else if (!cps.empty() && is_align(cps[0])) {
    align = static_cast<char>(cps[0]);
    i = 1;
  }
  char sign = '-';
  if (i < cps.size() && (cps[i] == '+' || cps[i] == '-' || cps[i] == ' '))
    sign = static_cast<char>(cps[i++]);
  if (i < cps.size() && cps[i] == '#') fail("the '#' format option is not supported");
  if (i < cps.size() && cps[i] == '0') {
    if (align == 0) fill = '0', align = '=';
    ++i;
  }
  int64_t width = 0;
  while (i < cps.size() && cps[i] >= '0' && cps[i] <= '9') {
    width = width * 10 + (cps[i++] - '0');
    if (width > 10000) fail("a format width is too large");
  }
  char grouping = 0;
  if (i < cps.size() && (cps[i] == ',' || cps[i] == '_')) grouping = static_cast<char>(cps[i++]);
  int precision = -1;
  if (i < cps.size() && cps[i] == '.') {
    ++i;
    precision = 0;
    while (i < cps.size() && cps[i] >= '0' && cps[i] <= '9') {
      precision = precision * 10 + (cps[i++] - '0');
      if (precision > 100) fail("a format precision is too large");
    }
  }
  char type = 0;
  if (i < cps.size()) type = static_cast<char>(cps[i++]);
  if (i != cps.size()) fail("Invalid format specifier '" + std::string(spec) + "'");

  std::string body;
  bool negative = false;
  bool numeric = false;
  if (v.is_string()) {
    if (type != 0 && type != 's')
      fail(str_cat("Unknown format code '", std::string(1, type), "' for object of type 'str'"));
    body = v.str();
    if (precision >= 0) {
      std::u32string text = utf8_decode(body);
      if (static_cast<int>(text.size()) > precision) text.resize(precision);
      body = utf8_encode(text);
    }
  } else if (v.is_number()) {
    numeric = true;
    const bool integer = v.is_int() && (type == 0 || type == 'd' || type == 'x' || type == 'X' ||
                                        type == 'o' || type == 'b' || type == 'n');
    if (integer) {
      int64_t n = v.as_int();
      negative = n < 0;
      uint64_t magnitude = negative ? 0 - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
      const int base = type == 'x' || type == 'X' ? 16 : type == 'o' ? 8 : type == 'b' ? 2 : 10;
      do {
        const int d = static_cast<int>(magnitude % base);
        body.push_back(static_cast<char>(d < 10 ? '0' + d : (type == 'X' ? 'A' : 'a') + d - 10));
        magnitude /= base;
      } while (magnitude > 0);
      std::reverse(body.begin(), body.end());
    } else {
      if (type == 'd' || type == 'x' || type == 'X' || type == 'o' || type == 'b') {
        fail(
            str_cat("Unknown format code '", std::string(1, type), "' for object of type 'float'"));
      }
      double f = v.as_double();
      negative = std::signbit(f) && !std::isnan(f);
      f = std::fabs(f);
      char buf[512];
      if (type == 0 && precision < 0) {
        body = float_repr(f);
      } else if (type == '%') {
        std::snprintf(buf, sizeof buf, "%.*f", precision < 0 ? 6 : precision, f * 100);
        body = std::string(buf) + "%";
      } else {
        const char c = type == 0 ? 'g' : type;
        if (std::string_view("eEfFgG").find(c) == std::string_view::npos) {
          fail(str_cat("Unknown format code '", std::string(1, type),
                       "' for object of type 'float'"));
        }
        const std::string f_format = str_cat("%.*", std::string(1, c));
        std::snprintf(buf, sizeof buf, f_format.c_str(), precision < 0 ? 6 : precision, f);
        body = buf;
      }
    }
    if (grouping) {
      const size_t digits_end = body.find_first_not_of("0123456789");
      const size_t n = digits_end == std::string::npos ? body.size() : digits_end;
      std::string grouped;
      for (size_t k = 0; k < n; ++k) {
        if (k > 0 && (n - k) % 3 == 0) grouped.push_back(grouping);
        grouped.push_back(body[k]);
      }
      body = grouped + body.substr(n);
    }
  } else {
    fail("unsupported format string passed to " + type_name(v) + ".__format__");
  }
  std::string sign_text;
  if (numeric) {
    if (negative)
      sign_text = "-";
    else if (sign == '+')
      sign_text = "+";
    else if (sign == ' ')
      sign_text = " ";
  }
  if (align == 0) align = numeric ? '>' : '<';
  if (align == '=') {
    return sign_text + pad(body, width - static_cast<int64_t>(sign_text.size()), fill, '>');
  }
  return pad(sign_text + body, width, fill, align);
}

Value call_str_method(Renderer& r, const Value& self, const std::string& name,
                      const CallArgs& args) {
  const std::string& s = self.str();
  const auto no_args = [&]() { args.bind(name, {}, 0, {}); };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const std::vector<Value> a = args.bind(name, {"chars"}, 0, {Value::none()});
    return Value::string(py_strip(s, a[0], name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    const std::vector<Value> a =
        args.bind(name, {"sep", "maxsplit"}, 0, {Value::none(), Value::integer(-1)});
    const int64_t maxsplit = require_int(a[1], "maxsplit");
    if (a[0].is_none())
      return Value::list(split_whitespace(utf8_decode(s), maxsplit, name == "rsplit"));
    return Value::list(split_on(s, require_str(a[0], "sep"), maxsplit, name == "rsplit"));
  }
  if (name == "splitlines") {
    const std::vector<Value> a = args.bind(name, {"keepends"}, 0, {Value::boolean(false)});
    ValueList out;
    for (auto& line : py_splitlines(s, truthy(a[0]))) out.push_back(Value::string(std::move(line)));
    return Value::list(std::move(out));
  }
  if (name == "startswith" || name == "endswith") {
    const std::vector<Value> a =
        args.bind(name, {"affix", "start", "end"}, 1, {Value::none(), Value::none()});
    if (a[0].is_string() && a[1].is_none() && a[2].is_none()) {
      const std::string& affix = a[0].str();
      if (affix.size() > s.size()) return Value::boolean(false);
      return Value::boolean(name == "startswith"
                                ? s.compare(0, affix.size(), affix) == 0
                                : s.compare(s.size() - affix.size(), affix.size(), affix) == 0);
    }
    const Window w = window(s, a[1], a[2]);
    return Value::boolean(affix_matches(a[0], w.cps, name == "startswith", name));
  }
  if (name == "replace") {
    const std::vector<Value> a = args.bind(name, {"old", "new", "count"}, 2, {Value::integer(-1)});
    return Value::string(py_replace(r, s, require_str(a[0], "replace() argument 1"),
                                    require_str(a[1], "replace() argument 2"),
                                    require_int(a[2], "count")));
  }
  if (name == "upper") return no_args(), Value::string(str_upper(s));
  if (name == "lower" || name == "casefold") return no_args(), Value::string(str_lower(s));
  if (name == "title") return no_args(), Value::string(py_title(s));
  if (name == "capitalize") return no_args(), Value::string(py_capitalize(s));
  if (name == "swapcase") {
    no_args();
    std::u32string out;
    for (char32_t cp : utf8_decode(s)) {
      if (is_upper(cp))
        append_lower(cp, out);
      else if (is_lower(cp))
        append_upper(cp, out);
      else
        out.push_back(cp);
    }
    return Value::string(utf8_encode(out));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    const std::vector<Value> a =
        args.bind(name, {"sub", "start", "end"}, 1, {Value::none(), Value::none()});
    const std::u32string sub = utf8_decode(require_str(a[0], name + "() argument"));
    const Window w = window(s, a[1], a[2]);
    if (name == "count") {
      if (sub.empty()) return Value::integer(static_cast<int64_t>(w.cps.size()) + 1);
      int64_t n = 0;
      for (size_t at = w.cps.find(sub); at != std::u32string::npos;
           at = w.cps.find(sub, at + sub.size()))
        ++n;
      return Value::integer(n);
    }
    const size_t at = name[0] == 'r' ? w.cps.rfind(sub) : w.cps.find(sub);
    if (at == std::u32string::npos) {
      if (name == "index" || name == "rindex") fail("substring not found");
      return Value::integer(-1);
    }
    return Value::integer(w.offset + static_cast<int64_t>(at));
  }
  if (name == "join") {
    const std::vector<Value> a = args.bind(name, {"iterable"}, 1, {});
    std::string out;
    const ValueList items = iterate(a[0]);
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        fail(str_cat("sequence item ", i, ": expected str instance, ", type_name(items[i]),
                     " found"));
      }
      if (i > 0) out += s;
      out += items[i].str();
      r.charge(s.size() + items[i].str().size());
    }
    return Value::string(std::move(out));
  }
  if (name == "format") return Value::string(str_format(r, s, args));
  if (name == "isdigit" || name == "isdecimal" || name == "isnumeric")
    return no_args(), Value::boolean(all_of_cps(s, is_digit));
  if (name == "isalpha") return no_args(), Value::boolean(all_of_cps(s, is_alpha));
  if (name == "isalnum") {
    no_args();
    return Value::boolean(all_of_cps(s, [](char32_t c) { return is_alpha(c) || is_digit(c); }));
  }
  if (name == "isspace") return no_args(), Value::boolean(all_of_cps(s, is_space));
  if (name == "islower") return no_args(), Value::boolean(cased_all(s, true));
  if (name == "isupper") return no_args(), Value::boolean(cased_all(s, false));
  if (name == "zfill") {
    const std::vector<Value> a = args.bind(name, {"width"}, 1, {});
    const int64_t width = require_int(a[0], "width");
    std::string_view body = s;
    std::string sign;
    if (!body.empty() && (body[0] == '+' || body[0] == '-'))
      sign = std::string(1, body[0]), body.remove_prefix(1);
    return Value::string(sign + pad(body, width - static_cast<int64_t>(sign.size()), '0', '>'));
  }
  if (name == "center" || name == "ljust" || name == "rjust") {
    const std::vector<Value> a = args.bind(name, {"width", "fillchar"}, 1, {Value::string(" ")});
    const std::u32string fill = utf8_decode(require_str(a[1], "fillchar"));
    if (fill.size() != 1) fail("The fill character must be exactly one character long");
    return Value::string(pad(s, require_int(a[0], "width"), fill[0],
                             name == "center"  ? 'c'
                             : name == "ljust" ? '<'
                                               : '>'));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    const std::vector<Value> a = args.bind(name, {"affix"}, 1, {});
    const std::string& affix = require_str(a[0], name + "() argument");
    if (name == "removeprefix" && s.compare(0, affix.size(), affix) == 0)
      return Value::string(s.substr(affix.size()));
    if (name == "removesuffix" && affix.size() <= s.size() && !affix.empty() &&
        s.compare(s.size() - affix.size(), affix.size(), affix) == 0) {
      return Value::string(s.substr(0, s.size() - affix.size()));
    }
    return Value::string(s);
  }
  if (name == "partition" || name == "rpartition") {
    const std::vector<Value> a = args.bind(name, {"sep"}, 1, {});
    const std::string& sep = require_str(a[0], "sep");
    if (sep.empty()) fail("empty separator");
    const size_t at = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (at == std::string::npos) {
      return name == "partition"
                 ? Value::tuple({Value::string(s), Value::string(""), Value::string("")})
                 : Value::tuple({Value::string(""), Value::string(""), Value::string(s)});
    }
    return Value::tuple({Value::string(s.substr(0, at)), Value::string(sep),
                         Value::string(s.substr(at + sep.size()))});
  }
  fail("unknown str method " + name);
}

}  // namespace dsinf::trainer::jinja
