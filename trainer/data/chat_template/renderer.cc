#include "trainer/data/chat_template/renderer.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include "trainer/data/chat_template/error.h"
#include "trainer/data/chat_template/unicode.h"

namespace dsinf::trainer::jinja {

namespace {

[[noreturn]] void fail_undefined(const Value& v) {
  fail(v.str().empty() ? "an undefined value was used" : v.str());
}

[[noreturn]] void fail_operands(std::string_view op, const Value& a, const Value& b) {
  fail(str_cat("unsupported operand type(s) for ", op, ": '", type_name(a), "' and '", type_name(b),
               "'"));
}

[[noreturn]] void fail_overflow() {
  fail("integer overflow: integers are limited to 64 bits here (Python's are unbounded)");
}

// A namespace may not hold one, directly or in a container: no value can
// then reach itself, so printing and freeing never loop.
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

Renderer::Renderer(const RenderOptions& options, const nlohmann::json& context)
    : options_(options) {
  if (context.is_null()) return;
  if (!context.is_object()) fail("the context must be a JSON object of variables");
  context_ = from_json(context).dict();
}

std::string Renderer::render(const Template& t) {
  scopes_.clear();
  out_.clear();
  enter_frame(t.slots);
  exec(t.body);
  return std::move(out_);
}

void Renderer::enter_frame(const Slots& slots) {
  Scope scope;
  scope.reserve(slots.size());
  for (const Slot& slot : slots) {
    switch (slot.load) {
      case Slot::Load::kResolve:
        scope.emplace_back(slot.name, resolve(slot.name));
        break;
      case Slot::Load::kAlias:
        scope.emplace_back(slot.name, lookup(slot.name));
        break;
      case Slot::Load::kUndefined:
        scope.emplace_back(slot.name, Value::undefined(str_cat("'", slot.name, "' is undefined")));
        break;
      case Slot::Load::kParam:
        scope.emplace_back(slot.name, Value());
        break;
    }
  }
  scopes_.push_back(std::move(scope));
}

void Renderer::step() {
  if (++steps_ > options_.max_steps) {
    fail_limit(str_cat("the template takes more than ", options_.max_steps, " evaluation steps"));
  }
}

void Renderer::charge(size_t bytes) {
  work_bytes_ += bytes;
  if (work_bytes_ > kMaxWorkBytes) {
    fail_limit(str_cat("the template builds more than ", kMaxWorkBytes >> 20,
                       " MiB of strings and lists"));
  }
  if (bytes > kMaxOutputBytes) {
    fail_limit(str_cat("a value would exceed ", kMaxOutputBytes >> 20, " MiB"));
  }
}

void Renderer::emit(std::string_view text) {
  out_ += text;
  if (out_.size() > options_.max_output_bytes) {
    fail_limit(str_cat("the output exceeds ", options_.max_output_bytes, " bytes"));
  }
}

Value Renderer::lookup(const std::string& name) const {
  for (auto scope = scopes_.rbegin(); scope != scopes_.rend(); ++scope) {
    for (auto it = scope->rbegin(); it != scope->rend(); ++it) {
      if (it->first == name) return it->second;
    }
  }
  return resolve(name);
}

Value Renderer::resolve(const std::string& name) const {
  if (const Value* v = context_.find(name)) return *v;
  Value global = find_global(name);
  if (!global.is_undefined()) return global;
  return Value::undefined(str_cat("'", name, "' is undefined"));
}

void Renderer::bind(const std::string& name, Value value) {
  Scope& scope = scopes_.back();
  for (auto& entry : scope) {
    if (entry.first == name) {
      entry.second = std::move(value);
      return;
    }
  }
  scope.emplace_back(name, std::move(value));
}

void Renderer::bind_targets(const Stmt& s, const Value& item) {
  if (!s.unpack) {
    bind(s.targets[0], item);
    return;
  }
  ValueList parts = iterate(item);
  if (parts.size() > s.targets.size()) {
    fail(str_cat("too many values to unpack (expected ", s.targets.size(), ")"));
  }
  if (parts.size() < s.targets.size()) {
    fail(str_cat("not enough values to unpack (expected ", s.targets.size(), ", got ", parts.size(),
                 ")"));
  }
  for (size_t i = 0; i < parts.size(); ++i) bind(s.targets[i], std::move(parts[i]));
}

Renderer::Flow Renderer::exec(const Body& body) {
  for (const auto& s : body) {
    const Flow flow = exec(*s);
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

Renderer::Flow Renderer::exec(const Stmt& s) {
  step();
  try {
    switch (s.kind) {
      case StmtKind::kText:
        emit(s.text);
        return Flow::kNormal;
      case StmtKind::kOutput: {
        const Value v = eval(*s.expr);
        if (v.is_string())
          emit(v.str());
        else
          emit(to_str(v));
        return Flow::kNormal;
      }
      case StmtKind::kIf:
        for (const Branch& branch : s.branches) {
          if (!branch.condition || truthy(eval(*branch.condition))) return exec(branch.body);
        }
        return Flow::kNormal;
      case StmtKind::kFor:
        return exec_for(s);
      case StmtKind::kSet:
        exec_set(s, eval(*s.expr));
        return Flow::kNormal;
      case StmtKind::kSetBlock: {
        std::string outer;
        std::swap(out_, outer);
        enter_frame(s.body_slots);
        Flow flow;
        try {
          flow = exec(s.body);
        } catch (...) {
          std::swap(out_, outer);
          throw;
        }
        std::swap(out_, outer);
        Value value = Value::string(std::move(outer));
        for (const ExprPtr& filter : s.filters) {
          value = filter->filter(*this, value, eval_args(*filter));
        }
        leave_frame();
        exec_set(s, std::move(value));
        return flow;
      }
      case StmtKind::kBreak:
        return Flow::kBreak;
      case StmtKind::kContinue:
        return Flow::kContinue;
      case StmtKind::kBody: {
        enter_frame(s.body_slots);
        const Flow flow = exec(s.body);
        leave_frame();
        return flow;
      }
    }
  } catch (TemplateError& e) {
    if (e.line == 0) e.line = s.line;
    throw;
  }
  return Flow::kNormal;
}

Renderer::Flow Renderer::exec_for(const Stmt& s) {
  auto state = std::make_shared<LoopState>();
  state->source = std::make_shared<const ValueList>(iterate(eval(*s.expr)));
  const size_t depth = scopes_.size();
  if (s.condition) {
    // The filter runs in its own frame over the loop's enclosing frames, also
    // when loop.last or loop.length asks for it from inside the body.
    state->accept = [this, &s, depth](const Value& item) {
      step();
      std::vector<Scope> above(std::make_move_iterator(scopes_.begin() + depth),
                               std::make_move_iterator(scopes_.end()));
      scopes_.resize(depth);
      enter_frame(s.test_slots);
      bind_targets(s, item);
      const bool keep = truthy(eval(*s.condition));
      leave_frame();
      for (Scope& scope : above) scopes_.push_back(std::move(scope));
      return keep;
    };
  }
  bool iterated = false;
  for (size_t i = 0; state->fill(i + 1); ++i) {
    step();
    iterated = true;
    state->index0 = static_cast<int64_t>(i);
    enter_frame(s.body_slots);
    bind_targets(s, state->accepted[i]);
    bind("loop", Value::loop(state));
    const Flow flow = exec(s.body);
    leave_frame();
    if (flow == Flow::kBreak) break;
  }
  state->open = false;
  state->accept = nullptr;
  if (!iterated) {
    enter_frame(s.else_slots);
    const Flow flow = exec(s.else_body);
    leave_frame();
    return flow;
  }
  return Flow::kNormal;
}

void Renderer::exec_set(const Stmt& s, Value value) {
  if (!s.attribute.empty()) {
    const Value target = lookup(s.targets[0]);
    if (target.kind() != Kind::kNamespace) fail("cannot assign attribute on non-namespace object");
    if (holds_namespace(value)) fail("a namespace cannot hold a namespace here");
    target.ns()->attrs.set(Value::string(s.attribute), std::move(value));
    return;
  }
  bind_targets(s, value);
}

CallArgs Renderer::eval_args(const Expr& e) {
  CallArgs args;
  for (const Arg& arg : e.args) {
    if (arg.keyword.empty()) {
      args.positional.push_back(eval(*arg.value));
    } else {
      for (const auto& [keyword, value] : args.keyword) {
        if (keyword == arg.keyword) fail("keyword argument repeated: " + keyword);
      }
      args.keyword.emplace_back(arg.keyword, eval(*arg.value));
    }
  }
  return args;
}

Value Renderer::apply_filter(std::string_view name, const Value& input, const CallArgs& args) {
  bool refused = false;
  FilterFn filter = find_filter(name, &refused);
  if (filter == nullptr) {
    fail(refused ? str_cat("the \"", name, "\" filter is not supported")
                 : str_cat("no filter named \"", name, "\""));
  }
  return filter(*this, input, args);
}

bool Renderer::apply_test(std::string_view name, const Value& input, const CallArgs& args) {
  bool refused = false;
  TestFn test = find_test(name, &refused);
  if (test == nullptr) {
    fail(refused ? str_cat("the \"", name, "\" test is not supported")
                 : str_cat("no test named \"", name, "\""));
  }
  return test(*this, input, args);
}

Value Renderer::eval(const Expr& e) {
  step();
  try {
    return eval_inner(e);
  } catch (TemplateError& error) {
    if (error.line == 0) error.line = e.line;
    throw;
  }
}

Value Renderer::eval_inner(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kConst:
      return e.constant;
    case ExprKind::kName:
      return lookup(e.name);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      ValueList items;
      items.reserve(e.operands.size());
      for (const ExprPtr& op : e.operands) items.push_back(eval(*op));
      return e.kind == ExprKind::kList ? Value::list(std::move(items))
                                       : Value::tuple(std::move(items));
    }
    case ExprKind::kDict: {
      ValueDict dict;
      for (size_t i = 0; i + 1 < e.operands.size(); i += 2) {
        Value key = eval(*e.operands[i]);
        if (key.kind() == Kind::kList || key.kind() == Kind::kDict || key.is_undefined()) {
          if (key.is_undefined()) fail_undefined(key);
          fail("unhashable type: '" + type_name(key) + "'");
        }
        dict.set(std::move(key), eval(*e.operands[i + 1]));
      }
      return Value::dict(std::move(dict));
    }
    case ExprKind::kAttr:
      return get_attribute(eval(*e.operands[0]), e.name);
    case ExprKind::kItem: {
      const Value obj = eval(*e.operands[0]);
      return get_item(obj, eval(*e.operands[1]));
    }
    case ExprKind::kSlice: {
      const Value obj = eval(*e.operands[0]);
      Value parts[3];
      for (int i = 0; i < 3; ++i) {
        parts[i] = e.operands[i + 1] ? eval(*e.operands[i + 1]) : Value::none();
      }
      return get_slice(obj, parts[0], parts[1], parts[2]);
    }
    case ExprKind::kCall: {
      const Value callee = eval(*e.operands[0]);
      return call_value(*this, callee, eval_args(e));
    }
    case ExprKind::kFilter: {
      const Value input = eval(*e.operands[0]);
      return e.filter(*this, input, eval_args(e));
    }
    case ExprKind::kTest: {
      const Value input = eval(*e.operands[0]);
      return Value::boolean(e.test(*this, input, eval_args(e)) != e.negated);
    }
    case ExprKind::kNot:
      return Value::boolean(!truthy(eval(*e.operands[0])));
    case ExprKind::kNeg:
    case ExprKind::kPos: {
      const Value v = eval(*e.operands[0]);
      if (v.is_undefined()) fail_undefined(v);
      const bool neg = e.kind == ExprKind::kNeg;
      if (v.is_int()) {
        if (!neg) return Value::integer(v.as_int());
        if (v.as_int() == std::numeric_limits<int64_t>::min()) fail_overflow();
        return Value::integer(-v.as_int());
      }
      if (v.kind() == Kind::kFloat) return Value::number(neg ? -v.as_double() : v.as_double());
      fail(str_cat("bad operand type for unary ", neg ? "-" : "+", ": '", type_name(v), "'"));
    }
    case ExprKind::kBinary: {
      const Value a = eval(*e.operands[0]);
      const Value b = eval(*e.operands[1]);
      return binary_op(*this, e.name, a, b);
    }
    case ExprKind::kConcat: {
      std::string out;
      for (const ExprPtr& op : e.operands) {
        const Value v = eval(*op);
        if (v.is_string())
          out += v.str();
        else
          out += to_str(v);
        charge(out.size());
      }
      return Value::string(std::move(out));
    }
    case ExprKind::kCompare: {
      Value left = eval(*e.operands[0]);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.operands[i + 1]);
        const std::string& op = e.ops[i];
        bool holds;
        if (op == "==")
          holds = equals(left, right);
        else if (op == "!=")
          holds = !equals(left, right);
        else if (op == "in")
          holds = contains(right, left);
        else if (op == "not in")
          holds = !contains(right, left);
        else {
          if (left.is_undefined()) fail_undefined(left);
          if (right.is_undefined()) fail_undefined(right);
          const bool orderable = (left.is_number() && right.is_number()) ||
                                 (left.is_string() && right.is_string()) ||
                                 (left.is_sequence() && left.kind() == right.kind());
          if (!orderable) {
            fail(str_cat("'", op, "' not supported between instances of '", type_name(left),
                         "' and '", type_name(right), "'"));
          }
          const int c = compare(left, right);
          holds = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
          if ((left.kind() == Kind::kFloat && std::isnan(left.as_double())) ||
              (right.kind() == Kind::kFloat && std::isnan(right.as_double()))) {
            holds = false;
          }
        }
        if (!holds) return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
    case ExprKind::kAnd: {
      Value a = eval(*e.operands[0]);
      if (!truthy(a)) return a;
      return eval(*e.operands[1]);
    }
    case ExprKind::kOr: {
      Value a = eval(*e.operands[0]);
      if (truthy(a)) return a;
      return eval(*e.operands[1]);
    }
    case ExprKind::kCond:
      if (truthy(eval(*e.operands[1]))) return eval(*e.operands[0]);
      if (e.operands[2]) return eval(*e.operands[2]);
      return Value::undefined(str_cat("the inline if-expression on line ", e.line,
                                      " evaluated to false and no else section was defined."));
  }
  fail("unknown expression");
}

}  // namespace dsinf::trainer::jinja
