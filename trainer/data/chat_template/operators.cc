// Python's operators on values (+ - * / // % **, `in`) and printf-style
// formatting (`format % args`, the format filter).
#include <cmath>
#include <cstdio>
#include <limits>

#include "trainer/data/chat_template/error.h"
#include "trainer/data/chat_template/renderer.h"
#include "trainer/data/chat_template/unicode.h"

namespace dsinf::trainer::jinja {

namespace {

[[noreturn]] void fail_operands(std::string_view op, const Value& a, const Value& b) {
  fail(str_cat("unsupported operand type(s) for ", op, ": '", type_name(a), "' and '", type_name(b),
               "'"));
}

[[noreturn]] void fail_overflow() {
  fail("integer overflow: integers are limited to 64 bits here (Python's are unbounded)");
}

int64_t floor_div(int64_t a, int64_t b) {
  if (b == 0) fail("integer division or modulo by zero");
  if (a == std::numeric_limits<int64_t>::min() && b == -1) fail_overflow();
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t floor_mod(int64_t a, int64_t b) {
  if (b == 0) fail("integer division or modulo by zero");
  if (b == -1) return 0;
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

// CPython's float_divmod.
std::pair<double, double> float_divmod(double vx, double wx) {
  if (wx == 0.0) fail("float divmod() by zero");
  double mod = std::fmod(vx, wx);
  double div = (vx - mod) / wx;
  if (mod != 0.0) {
    if ((wx < 0) != (mod < 0)) {
      mod += wx;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, wx);
  }
  double floordiv;
  if (div != 0.0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, vx / wx);
  }
  return {floordiv, mod};
}

Value int_power(int64_t base, int64_t exponent) {
  int64_t result = 1;
  while (exponent > 0) {
    if (exponent & 1) {
      if (__builtin_mul_overflow(result, base, &result)) fail_overflow();
    }
    exponent >>= 1;
    if (exponent > 0 && __builtin_mul_overflow(base, base, &base)) fail_overflow();
  }
  return Value::integer(result);
}

Value repeat(Renderer& r, const Value& seq, int64_t times) {
  if (times <= 0) {
    if (seq.is_string()) return Value::string("", seq.markup());
    return seq.kind() == Kind::kTuple ? Value::tuple({}) : Value::list({});
  }
  if (seq.is_string()) {
    const size_t bytes = seq.str().size();
    if (bytes != 0 && static_cast<uint64_t>(times) > kMaxOutputBytes / bytes) {
      fail_limit("a repeated string would exceed the output limit");
    }
    r.charge(bytes * times);
    std::string out;
    out.reserve(bytes * times);
    for (int64_t i = 0; i < times; ++i) out += seq.str();
    return Value::string(std::move(out), seq.markup());
  }
  const size_t n = seq.items().size();
  if (n != 0 && static_cast<uint64_t>(times) > kMaxOutputBytes / 16 / n) {
    fail_limit("a repeated list would exceed the size limit");
  }
  r.charge(n * times * sizeof(Value));
  ValueList items;
  items.reserve(n * times);
  for (int64_t i = 0; i < times; ++i)
    items.insert(items.end(), seq.items().begin(), seq.items().end());
  return seq.kind() == Kind::kTuple ? Value::tuple(std::move(items))
                                    : Value::list(std::move(items));
}

std::string format_number(const std::string& spec, char conversion, const Value& v) {
  char buf[512];
  std::string format = "%" + spec;
  if (conversion == 'd' || conversion == 'i' || conversion == 'u' || conversion == 'x' ||
      conversion == 'X' || conversion == 'o') {
    const int64_t i = v.kind() == Kind::kFloat ? static_cast<int64_t>(v.as_double()) : v.as_int();
    format += "ll";
    format.push_back(conversion == 'u' || conversion == 'i' ? 'd' : conversion);
    if ((conversion == 'x' || conversion == 'X' || conversion == 'o') && i < 0) {
      // Python prints the sign and the magnitude; C the two's complement.
      std::snprintf(buf, sizeof buf, format.c_str(),
                    static_cast<long long>(-static_cast<uint64_t>(i)));
      return "-" + std::string(buf);
    }
    std::snprintf(buf, sizeof buf, format.c_str(), static_cast<long long>(i));
  } else {
    format.push_back(conversion);
    std::snprintf(buf, sizeof buf, format.c_str(), v.as_double());
  }
  return buf;
}

}  // namespace

std::string percent_format(Renderer& r, const Value& format_value, const Value& args) {
  const std::string& format = format_value.str();
  const bool markup = format_value.markup();
  // Python: a tuple gives the arguments; anything else is one argument, and
  // when it has __getitem__ (dict, list, Undefined) also the mapping for
  // %(key)s, with no complaint about arguments left unused.
  std::vector<Value> positional;
  const bool mapping = args.is_dict() || args.kind() == Kind::kList || args.is_undefined();
  if (args.kind() == Kind::kTuple)
    positional = args.items();
  else
    positional.push_back(args);
  size_t next = 0;
  std::string out;
  const auto take = [&]() -> const Value& {
    if (next >= positional.size()) fail("not enough arguments for format string");
    return positional[next++];
  };
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) fail("incomplete format");
    const Value* value = nullptr;
    if (format[i] == '(') {
      const size_t close = format.find(')', i);
      if (close == std::string::npos) fail("incomplete format key");
      if (!mapping) fail("format requires a mapping");
      if (args.is_undefined()) fail(args.str());
      if (!args.is_dict()) fail("list indices must be integers or slices, not str");
      value = args.dict().find(std::string_view(format).substr(i + 1, close - i - 1));
      if (value == nullptr) fail("KeyError: " + format.substr(i + 1, close - i - 1));
      i = close + 1;
    }
    std::string spec;
    while (i < format.size() &&
           std::string_view("#0- +").find(format[i]) != std::string_view::npos) {
      spec.push_back(format[i++]);
    }
    const auto read_number = [&]() {
      if (i < format.size() && format[i] == '*') {
        ++i;
        const Value& n = take();
        if (!n.is_int()) fail("* wants int");
        spec += std::to_string(std::clamp<int64_t>(n.as_int(), -400, 400));
        return;
      }
      size_t digits = 0;
      while (i < format.size() && format[i] >= '0' && format[i] <= '9') {
        if (++digits > 3) fail("a format width or precision is too large");
        spec.push_back(format[i++]);
      }
    };
    read_number();
    if (i < format.size() && format[i] == '.') {
      spec.push_back(format[i++]);
      read_number();
    }
    while (i < format.size() && (format[i] == 'h' || format[i] == 'l' || format[i] == 'L')) ++i;
    if (i >= format.size()) fail("incomplete format");
    const char conversion = format[i];
    if (conversion == '%') {
      out.push_back('%');
      continue;
    }
    const Value& v = value ? *value : take();
    if (v.is_undefined() && conversion != 's') fail_undefined(v);
    switch (conversion) {
      case 's':
      case 'r':
      case 'a': {
        std::string text = conversion == 's' ? to_str(v) : repr(v);
        if (markup && !(v.is_string() && v.markup())) text = html_escape(text);
        // Width and precision count code points, as Python's do.
        std::u32string cps = utf8_decode(text);
        const size_t dot = spec.find('.');
        if (dot != std::string::npos) {
          const size_t precision = std::strtoul(spec.c_str() + dot + 1, nullptr, 10);
          if (cps.size() > precision) cps.resize(precision);
        }
        const bool left = spec.find('-') != std::string::npos;
        std::string width_digits;
        for (char c : spec.substr(0, dot)) {
          if (c >= '0' && c <= '9' && !(width_digits.empty() && c == '0'))
            width_digits.push_back(c);
        }
        const size_t width = width_digits.empty() ? 0 : std::stoul(width_digits);
        const std::string pad(width > cps.size() ? width - cps.size() : 0, ' ');
        out += left ? utf8_encode(cps) + pad : pad + utf8_encode(cps);
        break;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'e':
      case 'E':
      case 'f':
      case 'F':
      case 'g':
      case 'G':
        if (!v.is_number()) {
          fail(str_cat("%", std::string(1, conversion), " format: a real number is required, not ",
                       type_name(v)));
        }
        out += format_number(spec, conversion, v);
        break;
      case 'x':
      case 'X':
      case 'o':
        if (!v.is_int()) {
          fail(str_cat("%", std::string(1, conversion), " format: an integer is required, not ",
                       type_name(v)));
        }
        out += format_number(spec, conversion, v);
        break;
      case 'c':
        if (v.is_int() && v.as_int() >= 0 && v.as_int() <= 0x10FFFF) {
          utf8_append(static_cast<char32_t>(v.as_int()), out);
        } else if (v.is_string() && utf8_length(v.str()) == 1) {
          out += v.str();
        } else {
          fail("%c requires an int or a unicode character");
        }
        break;
      default:
        fail(str_cat("unsupported format character '", std::string(1, conversion), "'"));
    }
    r.charge(out.size());
  }
  if (!mapping && next < positional.size()) {
    fail("not all arguments converted during string formatting");
  }
  return out;
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Kind::kUndefined:
      return false;
    case Kind::kString:
      if (!item.is_string()) {
        fail("'in <string>' requires string as left operand, not " + type_name(item));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Kind::kList:
    case Kind::kTuple:
      for (const Value& v : container.items()) {
        if (equals(v, item)) return true;
      }
      return false;
    case Kind::kDict:
      if (item.kind() == Kind::kList || item.kind() == Kind::kDict) {
        fail("unhashable type: '" + type_name(item) + "'");
      }
      return container.dict().find(item) != nullptr;
    case Kind::kGenerator: {  // consumes up to the match, as Python does
      Generator& g = container.generator();
      while (g.next < g.items.size()) {
        if (equals(g.items[g.next++], item)) return true;
      }
      if (!g.error.empty()) fail(g.error);
      return false;
    }
    default:
      fail("argument of type '" + type_name(container) + "' is not iterable");
  }
}

Value binary_op(Renderer& r, std::string_view op, const Value& a, const Value& b) {
  if (op == "%" && a.is_string() && b.is_undefined())
    return Value::string(percent_format(r, a, b), a.markup());
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  const bool ints = a.is_int() && b.is_int();
  const bool numbers = a.is_number() && b.is_number();
  if (op == "+") {
    if (ints) {
      int64_t out;
      if (__builtin_add_overflow(a.as_int(), b.as_int(), &out)) fail_overflow();
      return Value::integer(out);
    }
    if (numbers) return Value::number(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      r.charge(a.str().size() + b.str().size());
      if (a.markup() && !b.markup()) return Value::string(a.str() + html_escape(b.str()), true);
      if (b.markup() && !a.markup()) return Value::string(html_escape(a.str()) + b.str(), true);
      return Value::string(a.str() + b.str(), a.markup());
    }
    if (a.is_sequence() && a.kind() == b.kind()) {
      r.charge((a.items().size() + b.items().size()) * sizeof(Value));
      ValueList items = a.items();
      items.insert(items.end(), b.items().begin(), b.items().end());
      return a.kind() == Kind::kTuple ? Value::tuple(std::move(items))
                                      : Value::list(std::move(items));
    }
    if (a.is_string() || a.is_sequence()) {
      fail(str_cat("can only concatenate ", type_name(a), " (not \"", type_name(b), "\") to ",
                   type_name(a)));
    }
    fail_operands(op, a, b);
  }
  if (op == "-") {
    if (ints) {
      int64_t out;
      if (__builtin_sub_overflow(a.as_int(), b.as_int(), &out)) fail_overflow();
      return Value::integer(out);
    }
    if (numbers) return Value::number(a.as_double() - b.as_double());
    fail_operands(op, a, b);
  }
  if (op == "*") {
    if (ints) {
      int64_t out;
      if (__builtin_mul_overflow(a.as_int(), b.as_int(), &out)) fail_overflow();
      return Value::integer(out);
    }
    if (numbers) return Value::number(a.as_double() * b.as_double());
    if ((a.is_string() || a.is_sequence()) && b.is_int()) return repeat(r, a, b.as_int());
    if ((b.is_string() || b.is_sequence()) && a.is_int()) return repeat(r, b, a.as_int());
    if (a.is_string() || a.is_sequence() || b.is_string() || b.is_sequence()) {
      fail("can't multiply sequence by non-int of type '" +
           type_name(a.is_string() || a.is_sequence() ? b : a) + "'");
    }
    fail_operands(op, a, b);
  }
  if (op == "/") {
    if (!numbers) fail_operands(op, a, b);
    if (b.as_double() == 0.0) fail("division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (op == "//") {
    if (ints) return Value::integer(floor_div(a.as_int(), b.as_int()));
    if (!numbers) fail_operands(op, a, b);
    if (b.as_double() == 0.0) fail("float floor division by zero");
    return Value::number(float_divmod(a.as_double(), b.as_double()).first);
  }
  if (op == "%") {
    if (ints) return Value::integer(floor_mod(a.as_int(), b.as_int()));
    if (numbers) {
      if (b.as_double() == 0.0) fail("float modulo by zero");
      return Value::number(float_divmod(a.as_double(), b.as_double()).second);
    }
    if (a.is_string()) return Value::string(percent_format(r, a, b), a.markup());
    fail_operands(op, a, b);
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) return int_power(a.as_int(), b.as_int());
    if (!numbers) fail_operands("** or pow()", a, b);
    const double x = a.as_double(), y = b.as_double();
    if (x == 0.0 && y < 0) fail("0.0 cannot be raised to a negative power");
    if (x < 0 && y != std::floor(y)) fail("a negative number to a fractional power is complex");
    return Value::number(std::pow(x, y));
  }
  fail(str_cat("unknown operator ", op));
}

}  // namespace dsinf::trainer::jinja
