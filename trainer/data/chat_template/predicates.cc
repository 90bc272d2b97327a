// jinja2's builtin tests: `x is defined`, `x is string`, `n is divisibleby 3`...
#include <algorithm>

#include "trainer/data/chat_template/builtins.h"
#include "trainer/data/chat_template/error.h"
#include "trainer/data/chat_template/renderer.h"
#include "trainer/data/chat_template/unicode.h"

namespace dsinf::trainer::jinja {

namespace {

void no_args(const CallArgs& args, std::string_view test) {
  if (!args.positional.empty() || !args.keyword.empty()) {
    fail(str_cat("test_", test, "() takes 1 positional argument but ", args.positional.size() + 1,
                 " were given"));
  }
}

bool t_boolean(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "boolean");
  return v.kind() == Kind::kBool;
}
bool t_callable(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "callable");
  return v.kind() == Kind::kCallable || v.is_undefined();  // Undefined has __call__ (that fails)
}
bool t_defined(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "defined");
  return !v.is_undefined();
}
bool t_undefined(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "undefined");
  return v.is_undefined();
}
bool t_none(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "none");
  return v.is_none();
}
bool t_true(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "true");
  return v.kind() == Kind::kBool && v.as_bool();
}
bool t_false(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "false");
  return v.kind() == Kind::kBool && !v.as_bool();
}
bool t_integer(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "integer");
  return v.kind() == Kind::kInt;
}
bool t_float(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "float");
  return v.kind() == Kind::kFloat;
}
bool t_number(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "number");
  return v.is_number();
}
bool t_string(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "string");
  return v.is_string();
}
bool t_mapping(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "mapping");
  return v.is_dict();
}
bool t_escaped(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "escaped");
  return v.is_string() && v.markup();
}
bool t_iterable(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "iterable");
  return v.kind() == Kind::kGenerator || v.is_undefined() || v.is_string() || v.is_sequence() ||
         v.is_dict();
}
bool t_sequence(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "sequence");
  return v.is_undefined() || v.is_string() || v.is_sequence() || v.is_dict();
}
// str.islower() / str.isupper(): some cased character, none of the other case.
bool all_cased(const Value& v, bool lower) {
  bool any_cased = false;
  for (char32_t c : utf8_decode(to_str(v))) {
    if (lower ? is_upper(c) : is_lower(c)) return false;
    any_cased = any_cased || (lower ? is_lower(c) : is_upper(c));
  }
  return any_cased;
}
bool t_lower(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "lower");
  return all_cased(v, true);
}
bool t_upper(Renderer&, const Value& v, const CallArgs& a) {
  no_args(a, "upper");
  return all_cased(v, false);
}

bool t_odd(Renderer& r, const Value& v, const CallArgs& a) {
  no_args(a, "odd");
  return equals(binary_op(r, "%", v, Value::integer(2)), Value::integer(1));
}
bool t_even(Renderer& r, const Value& v, const CallArgs& a) {
  no_args(a, "even");
  return equals(binary_op(r, "%", v, Value::integer(2)), Value::integer(0));
}
bool t_divisibleby(Renderer& r, const Value& v, const CallArgs& args) {
  const std::vector<Value> a = args.bind("divisibleby", {"num"}, 1, {});
  return equals(binary_op(r, "%", v, a[0]), Value::integer(0));
}

bool compare_test(Renderer&, const Value& v, const CallArgs& args, std::string_view op) {
  const std::vector<Value> a = args.bind(op, {"other"}, 1, {});
  if (op == "==") return equals(v, a[0]);
  if (op == "!=") return !equals(v, a[0]);
  if (v.is_undefined()) fail_undefined(v);
  if (a[0].is_undefined()) fail_undefined(a[0]);
  const bool orderable = (v.is_number() && a[0].is_number()) ||
                         (v.is_string() && a[0].is_string()) ||
                         (v.is_sequence() && v.kind() == a[0].kind());
  if (!orderable) {
    fail(str_cat("'", op, "' not supported between instances of '", type_name(v), "' and '",
                 type_name(a[0]), "'"));
  }
  const int c = compare(v, a[0]);
  return op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
}
bool t_eq(Renderer& r, const Value& v, const CallArgs& a) { return compare_test(r, v, a, "=="); }
bool t_ne(Renderer& r, const Value& v, const CallArgs& a) { return compare_test(r, v, a, "!="); }
bool t_lt(Renderer& r, const Value& v, const CallArgs& a) { return compare_test(r, v, a, "<"); }
bool t_le(Renderer& r, const Value& v, const CallArgs& a) { return compare_test(r, v, a, "<="); }
bool t_gt(Renderer& r, const Value& v, const CallArgs& a) { return compare_test(r, v, a, ">"); }
bool t_ge(Renderer& r, const Value& v, const CallArgs& a) { return compare_test(r, v, a, ">="); }

bool t_in(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a = args.bind("in", {"seq"}, 1, {});
  return contains(a[0], v);
}

bool t_sameas(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a = args.bind("sameas", {"other"}, 1, {});
  const Value& o = a[0];
  if (v.kind() != o.kind()) return false;
  switch (v.kind()) {
    case Kind::kNone:
    case Kind::kUndefined:
      return true;
    case Kind::kBool:
      return v.as_bool() == o.as_bool();
    case Kind::kInt:
      return v.as_int() == o.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
    case Kind::kString:
      return &v.str() == &o.str();
    case Kind::kList:
    case Kind::kTuple:
      return &v.items() == &o.items();
    case Kind::kDict:
      return &v.dict() == &o.dict();
    case Kind::kNamespace:
      return v.ns() == o.ns();
    default:
      return false;
  }
}

bool t_filter(Renderer&, const Value& v, const CallArgs&) {
  bool refused = false;
  return v.is_string() && find_filter(v.str(), &refused) != nullptr;
}
bool t_test(Renderer&, const Value& v, const CallArgs&) {
  bool refused = false;
  return v.is_string() && find_test(v.str(), &refused) != nullptr;
}

struct NamedTest {
  std::string_view name;
  TestFn fn;
};
constexpr NamedTest kTests[] = {
    {"boolean", t_boolean},
    {"callable", t_callable},
    {"defined", t_defined},
    {"divisibleby", t_divisibleby},
    {"eq", t_eq},
    {"equalto", t_eq},
    {"==", t_eq},
    {"escaped", t_escaped},
    {"even", t_even},
    {"false", t_false},
    {"filter", t_filter},
    {"float", t_float},
    {"ge", t_ge},
    {">=", t_ge},
    {"gt", t_gt},
    {"greaterthan", t_gt},
    {">", t_gt},
    {"in", t_in},
    {"integer", t_integer},
    {"iterable", t_iterable},
    {"le", t_le},
    {"<=", t_le},
    {"lower", t_lower},
    {"lt", t_lt},
    {"lessthan", t_lt},
    {"<", t_lt},
    {"mapping", t_mapping},
    {"ne", t_ne},
    {"!=", t_ne},
    {"none", t_none},
    {"number", t_number},
    {"odd", t_odd},
    {"sameas", t_sameas},
    {"sequence", t_sequence},
    {"string", t_string},
    {"test", t_test},
    {"true", t_true},
    {"undefined", t_undefined},
    {"upper", t_upper},
};

}  // namespace

TestFn find_test(std::string_view name, bool* refused) {
  for (const NamedTest& t : kTests) {
    if (t.name == name) return t.fn;
  }
  *refused = false;
  return nullptr;
}

}  // namespace dsinf::trainer::jinja
