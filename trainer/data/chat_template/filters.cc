// jinja2's builtin filters, with transformers' tojson in place of
// jinja2's (json.dumps with ensure_ascii=False, no HTML escaping).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "trainer/data/chat_template/builtins.h"
#include "trainer/data/chat_template/error.h"
#include "trainer/data/chat_template/renderer.h"
#include "trainer/data/chat_template/strings.h"
#include "trainer/data/chat_template/unicode.h"

namespace dsinf::trainer::jinja {

namespace {

// soft_str(): str() of anything, Markup kept.
Value soft_str(const Value& v) {
  if (v.is_string()) return v;
  return Value::string(to_str(v));
}

Value str_result(const Value& input, std::string s) { return Value::string(std::move(s), false); }

int64_t length_of(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined:
      return 0;
    case Kind::kString:
      return utf8_length(v.str());
    case Kind::kList:
    case Kind::kTuple:
      return static_cast<int64_t>(v.items().size());
    case Kind::kDict:
      return static_cast<int64_t>(v.dict().entries.size());
    case Kind::kNamespace:
      fail("object of type 'Namespace' has no len()");
    default:
      fail("object of type '" + type_name(v) + "' has no len()");
  }
}

// jinja2's make_attrgetter: "a.b.0" looked up part by part with getitem.
Value attribute_path(const Value& item, const Value& attribute) {
  if (attribute.is_int()) return get_item(item, attribute);
  Value v = item;
  const std::string path = to_str(attribute);
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(),
                                                      [](char c) { return c >= '0' && c <= '9'; });
    if (v.is_undefined()) fail_undefined(v);
    v = get_item(
        v, numeric ? Value::integer(std::strtoll(part.c_str(), nullptr, 10)) : Value::string(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

Value ignore_case(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(str_lower(v.str()));
  return v;
}

Value sort_key(const Value& item, const Value& attribute, bool case_sensitive) {
  const Value v = attribute.is_none() ? item : attribute_path(item, attribute);
  return ignore_case(v, case_sensitive);
}

// jinja2's map, select, unique, ... are Python generators: computed here at
// once, but true even when empty, without len(), consumed by one pass, and
// raising what computing them raised only when consumed.
template <typename Produce>
Value lazily(Produce&& produce) {
  auto g = std::make_shared<Generator>();
  try {
    produce(g->items);
  } catch (TemplateError& e) {
    if (e.code != absl::StatusCode::kInvalidArgument) throw;
    g->error = std::move(e.message);
  }
  return Value::generator(std::move(g));
}

CallArgs rest_args(const CallArgs& args, size_t skip) {
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + std::min(skip, args.positional.size()),
                         args.positional.end());
  rest.keyword = args.keyword;
  return rest;
}

// ---- filters ----

Value f_abs(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("abs", {}, 0, {});
  if (v.is_int()) {
    if (v.as_int() == INT64_MIN) fail("integer overflow");
    return Value::integer(std::llabs(v.as_int()));
  }
  if (v.kind() == Kind::kFloat) return Value::number(std::fabs(v.as_double()));
  fail("bad operand type for abs(): '" + type_name(v) + "'");
}

Value f_attr(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a = args.bind("attr", {"name"}, 1, {});
  if (v.is_undefined()) fail_undefined(v);
  if (!a[0].is_string()) fail("attribute name must be string");
  if (v.is_dict()) {  // getattr only: a dict's keys are not attributes
    static constexpr std::string_view kMethods[] = {"items", "keys", "values", "get", "copy"};
    if (std::find(std::begin(kMethods), std::end(kMethods), a[0].str()) != std::end(kMethods)) {
      return get_attribute(v, a[0].str());
    }
    return Value::undefined(str_cat("'dict object' has no attribute '", a[0].str(), "'"));
  }
  return get_attribute(v, a[0].str());
}

Value f_capitalize(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("capitalize", {}, 0, {});
  return str_result(v, py_capitalize(to_str(v)));
}

Value f_center(Renderer& r, const Value& v, const CallArgs& args) {
  const std::vector<Value> a = args.bind("center", {"width"}, 0, {Value::integer(80)});
  CallArgs call;
  call.positional.push_back(a[0]);
  return call_value(r, get_attribute(soft_str(v), "center"), call);
}

Value f_length(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("length", {}, 0, {});
  return Value::integer(length_of(v));
}

Value f_default(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a = args.bind("default", {"default_value", "boolean"}, 0,
                                         {Value::string(""), Value::boolean(false)});
  if (v.is_undefined() || (truthy(a[1]) && !truthy(v))) return a[0];
  return v;
}

Value f_dictsort(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a =
      args.bind("dictsort", {"case_sensitive", "by", "reverse"}, 0,
                {Value::boolean(false), Value::string("key"), Value::boolean(false)});
  if (!v.is_dict()) fail("dictsort: a mapping is required, not " + type_name(v));
  const std::string by = to_str(a[1]);
  if (by != "key" && by != "value") fail("You can only sort by either 'key' or 'value'");
  const int pos = by == "key" ? 0 : 1;
  const bool case_sensitive = truthy(a[0]);
  ValueList items;
  for (const auto& [key, value] : v.dict().entries) items.push_back(Value::tuple({key, value}));
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return compare(ignore_case(x.items()[pos], case_sensitive),
                   ignore_case(y.items()[pos], case_sensitive)) < 0;
  });
  if (truthy(a[2])) std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value f_escape(Renderer& r, const Value& v, const CallArgs& args) {
  args.bind("escape", {}, 0, {});
  if (v.is_string() && v.markup()) return v;
  const std::string text = to_str(v);
  r.charge(text.size() * 2);
  return Value::string(html_escape(text), true);
}

Value f_forceescape(Renderer& r, const Value& v, const CallArgs& args) {
  args.bind("forceescape", {}, 0, {});
  return Value::string(html_escape(to_str(v)), true);
}

Value f_first(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("first", {}, 0, {});
  if (v.kind() == Kind::kGenerator) {
    Generator& g = v.generator();
    if (g.next < g.items.size()) return g.items[g.next++];
    if (!g.error.empty()) fail(g.error);
    return Value::undefined("No first item, sequence was empty.");
  }
  if (v.is_sequence()) {
    if (v.items().empty()) return Value::undefined("No first item, sequence was empty.");
    return v.items().front();
  }
  if (v.is_dict() && !v.dict().entries.empty()) return v.dict().entries.front().first;
  const ValueList items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("last", {}, 0, {});
  if (v.kind() == Kind::kGenerator) fail("'generator' object is not reversible");
  if (v.is_sequence()) {
    if (v.items().empty()) return Value::undefined("No last item, sequence was empty.");
    return v.items().back();
  }
  const ValueList items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value f_float(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a = args.bind("float", {"default"}, 0, {Value::number(0.0)});
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_number()) return Value::number(v.as_double());
  if (v.is_string()) {
    if (const auto f = py_float(v.str())) return Value::number(*f);
  }
  return a[0];
}

Value f_format(Renderer& r, const Value& v, const CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty()) {
    fail("can't handle positional and keyword arguments at the same time");
  }
  Value format = soft_str(v);
  if (!args.keyword.empty()) {
    ValueDict dict;
    for (const auto& [key, value] : args.keyword) dict.set(Value::string(key), value);
    return Value::string(percent_format(r, format, Value::dict(std::move(dict))), format.markup());
  }
  return Value::string(percent_format(r, format, Value::tuple(args.positional)), format.markup());
}

Value f_indent(Renderer& r, const Value& v, const CallArgs& args) {
  const std::vector<Value> a =
      args.bind("indent", {"width", "first", "blank"}, 0,
                {Value::integer(4), Value::boolean(false), Value::boolean(false)});
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_string()) fail("indent: a string is required, not " + type_name(v));
  std::string indention;
  if (a[0].is_string()) {
    indention = a[0].str();
  } else if (a[0].is_int()) {
    if (a[0].as_int() > 10000) fail_limit("an indent width is too large");
    indention = std::string(std::max<int64_t>(0, a[0].as_int()), ' ');
  } else {
    fail("can't multiply sequence by non-int of type '" + type_name(a[0]) + "'");
  }
  const std::string text = to_str(v) + "\n";
  const std::vector<std::string> lines = py_splitlines(text, false);
  std::string out;
  if (truthy(a[2])) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n" + indention;
      out += lines[i];
    }
  } else {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n" + (lines[i].empty() ? "" : indention);
      out += lines[i];
    }
  }
  if (truthy(a[1])) out = indention + out;
  r.charge(out.size());
  return Value::string(std::move(out), v.is_string() && v.markup());
}

Value f_int(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a =
      args.bind("int", {"default", "base"}, 0, {Value::integer(0), Value::integer(10)});
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_string()) {
    if (!a[1].is_int()) fail("int() base must be an integer");
    if (const auto i =
            py_int(v.str(), static_cast<int>(std::clamp<int64_t>(a[1].as_int(), -1, 37)))) {
      return Value::integer(*i);
    }
    if (const auto f = py_float(v.str())) {
      if (std::isfinite(*f) && std::fabs(*f) < 9.2e18)
        return Value::integer(static_cast<int64_t>(*f));
    }
    return a[0];
  }
  if (v.is_int()) return Value::integer(v.as_int());
  if (v.kind() == Kind::kFloat) {
    const double f = v.as_double();
    if (!std::isfinite(f)) return a[0];
    if (std::fabs(f) >= 9.2e18) fail("integer overflow: integers are limited to 64 bits here");
    return Value::integer(static_cast<int64_t>(f));
  }
  return a[0];
}

Value f_items(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("items", {}, 0, {});
  return lazily([&](ValueList& items) {
    if (v.is_undefined()) return;
    if (!v.is_dict()) fail("Can only get item pairs from a mapping.");
    for (const auto& [key, value] : v.dict().entries) items.push_back(Value::tuple({key, value}));
  });
}

Value f_join(Renderer& r, const Value& v, const CallArgs& args) {
  const std::vector<Value> a =
      args.bind("join", {"d", "attribute"}, 0, {Value::string(""), Value::none()});
  const std::string separator = to_str(a[0]);
  std::string out;
  const ValueList items = iterate(v);
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += separator;
    const Value item = a[1].is_none() ? items[i] : attribute_path(items[i], a[1]);
    out += to_str(item);
    r.charge(separator.size() + 16);
  }
  r.charge(out.size());
  return Value::string(std::move(out));
}

Value f_list(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("list", {}, 0, {});
  return Value::list(iterate(v));
}

Value f_lower(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("lower", {}, 0, {});
  return str_result(v, str_lower(to_str(v)));
}

Value f_upper(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("upper", {}, 0, {});
  return str_result(v, str_upper(to_str(v)));
}

Value f_map(Renderer& r, const Value& v, const CallArgs& args) {
  if (args.positional.empty()) {
    Value attribute, fallback;
    bool has_attribute = false, has_default = false;
    for (const auto& [key, value] : args.keyword) {
      if (key == "attribute")
        attribute = value, has_attribute = true;
      else if (key == "default")
        fallback = value, has_default = true;
      else
        fail("Unexpected keyword argument '" + key + "'");
    }
    if (!has_attribute) fail("map requires a filter argument");
    return lazily([&](ValueList& out) {
      if (!truthy(v)) return;
      for (const Value& item : iterate(v)) {
        Value mapped = attribute_path(item, attribute);
        if (has_default && mapped.is_undefined()) mapped = fallback;
        out.push_back(std::move(mapped));
      }
    });
  }
  const std::string name = to_str(args.positional[0]);
  const CallArgs rest = rest_args(args, 1);
  return lazily([&](ValueList& out) {
    if (!truthy(v)) return;
    for (const Value& item : iterate(v)) out.push_back(r.apply_filter(name, item, rest));
  });
}

Value min_max(const Value& v, const CallArgs& args, bool want_max) {
  const std::vector<Value> a = args.bind(want_max ? "max" : "min", {"case_sensitive", "attribute"},
                                         0, {Value::boolean(false), Value::none()});
  const ValueList items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = sort_key(items[0], a[1], truthy(a[0]));
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = sort_key(items[i], a[1], truthy(a[0]));
    const int c = compare(key, best_key);
    if (want_max ? c > 0 : c < 0) best = i, best_key = std::move(key);
  }
  return items[best];
}
Value f_max(Renderer&, const Value& v, const CallArgs& args) { return min_max(v, args, true); }
Value f_min(Renderer&, const Value& v, const CallArgs& args) { return min_max(v, args, false); }

Value f_replace(Renderer& r, const Value& v, const CallArgs& args) {
  const std::vector<Value> a = args.bind("replace", {"old", "new", "count"}, 2, {Value::none()});
  const int64_t count = a[2].is_none() ? -1 : (a[2].is_int() ? a[2].as_int() : -1);
  if (!a[2].is_none() && !a[2].is_int())
    fail("'" + type_name(a[2]) + "' object cannot be interpreted as an integer");
  const Value text = soft_str(v);
  if (text.markup()) {
    const Value old = soft_str(a[0]), replacement = soft_str(a[1]);
    return Value::string(
        py_replace(r, text.str(), old.markup() ? old.str() : html_escape(old.str()),
                   replacement.markup() ? replacement.str() : html_escape(replacement.str()),
                   count),
        true);
  }
  return Value::string(py_replace(r, text.str(), to_str(a[0]), to_str(a[1]), count));
}

Value f_reverse(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("reverse", {}, 0, {});
  if (v.is_string()) {
    std::u32string cps = utf8_decode(v.str());
    std::reverse(cps.begin(), cps.end());
    return Value::string(utf8_encode(cps), v.markup());
  }
  ValueList items = iterate(v);
  std::reverse(items.begin(), items.end());
  if (v.kind() == Kind::kGenerator) return Value::list(std::move(items));  // list(v) reversed
  return lazily([&](ValueList& out) { out = std::move(items); });          // reversed(v)
}

Value f_round(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a =
      args.bind("round", {"precision", "method"}, 0, {Value::integer(0), Value::string("common")});
  const std::string method = to_str(a[1]);
  if (method != "common" && method != "ceil" && method != "floor") {
    fail("method must be common, ceil or floor");
  }
  if (v.is_undefined()) fail("type Undefined doesn't define __round__ method");
  if (!v.is_number()) fail("type " + type_name(v) + " doesn't define __round__ method");
  if (!a[0].is_int()) fail("'" + type_name(a[0]) + "' object cannot be interpreted as an integer");
  const int64_t precision = std::clamp<int64_t>(a[0].as_int(), -400, 400);
  if (method == "common") {
    if (v.is_int()) {
      if (precision >= 0) return Value::integer(v.as_int());
      // round(int, negative): to a multiple of 10**-precision, half to even
      const double scale = std::pow(10.0, static_cast<double>(-precision));
      return Value::integer(static_cast<int64_t>(std::nearbyint(v.as_double() / scale) * scale));
    }
    const double f = v.as_double();
    if (!std::isfinite(f)) return v;
    if (precision > 300) return v;
    if (precision < 0) {
      const double scale = std::pow(10.0, static_cast<double>(-precision));
      return Value::number(std::nearbyint(f / scale) * scale);
    }
    // printf rounds the exact binary value, ties to even: what Python's round() does.
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), f);
    return Value::number(std::strtod(buf, nullptr));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double f = v.as_double() * scale;
  return Value::number((method == "ceil" ? std::ceil(f) : std::floor(f)) / scale);
}

Value f_safe(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("safe", {}, 0, {});
  return Value::string(to_str(v), true);
}

Value select_items(Renderer& r, const Value& v, const CallArgs& args, bool by_attribute,
                   bool keep) {
  size_t skip = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty()) fail("Missing parameter for attribute name");
    attribute = args.positional[0];
    skip = 1;
  }
  const bool has_test = args.positional.size() > skip;
  const std::string test = has_test ? to_str(args.positional[skip]) : "";
  const CallArgs rest = rest_args(args, skip + 1);
  return lazily([&](ValueList& out) {
    if (!truthy(v)) return;
    for (const Value& item : iterate(v)) {
      const Value subject = by_attribute ? attribute_path(item, attribute) : item;
      const bool passes = has_test ? r.apply_test(test, subject, rest) : truthy(subject);
      if (passes == keep) out.push_back(item);
    }
  });
}
Value f_select(Renderer& r, const Value& v, const CallArgs& a) {
  return select_items(r, v, a, false, true);
}
Value f_reject(Renderer& r, const Value& v, const CallArgs& a) {
  return select_items(r, v, a, false, false);
}
Value f_selectattr(Renderer& r, const Value& v, const CallArgs& a) {
  return select_items(r, v, a, true, true);
}
Value f_rejectattr(Renderer& r, const Value& v, const CallArgs& a) {
  return select_items(r, v, a, true, false);
}

Value f_sort(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a =
      args.bind("sort", {"reverse", "case_sensitive", "attribute"}, 0,
                {Value::boolean(false), Value::boolean(false), Value::none()});
  ValueList items = iterate(v);
  std::vector<std::pair<Value, size_t>> keyed;
  for (size_t i = 0; i < items.size(); ++i)
    keyed.emplace_back(sort_key(items[i], a[2], truthy(a[1])), i);
  const bool reverse = truthy(a[0]);
  // jinja2 sorts by [key] lists, which compare equal elements as ties before
  // ordering them: equal Undefined keys do not fail.
  const auto less = [](const Value& x, const Value& y) {
    return !equals(x, y) && compare(x, y) < 0;
  };
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? less(y.first, x.first) : less(x.first, y.first);
  });
  ValueList out;
  for (const auto& [key, i] : keyed) out.push_back(items[i]);
  return Value::list(std::move(out));
}

Value f_string(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("string", {}, 0, {});
  return soft_str(v);
}

Value f_sum(Renderer& r, const Value& v, const CallArgs& args) {
  const std::vector<Value> a =
      args.bind("sum", {"attribute", "start"}, 0, {Value::none(), Value::integer(0)});
  Value total = a[1];
  for (const Value& item : iterate(v)) {
    total = binary_op(r, "+", total, a[0].is_none() ? item : attribute_path(item, a[0]));
  }
  return total;
}

Value f_title(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("title", {}, 0, {});
  // jinja2 splits at runs of [-\s({[<] and capitalizes each piece's first character.
  const std::u32string cps = utf8_decode(to_str(v));
  const auto separator = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_space(c);
  };
  std::u32string out;
  size_t i = 0;
  while (i < cps.size()) {
    const bool sep = separator(cps[i]);
    size_t j = i;
    while (j < cps.size() && separator(cps[j]) == sep) ++j;
    for (size_t k = i; k < j; ++k) {
      if (k == i)
        append_upper(cps[k], out);
      else
        append_lower(cps[k], out);
    }
    i = j;
  }
  return Value::string(utf8_encode(out));
}

Value f_tojson(Renderer& r, const Value& v, const CallArgs& args) {
  const std::vector<Value> a =
      args.bind("tojson", {"ensure_ascii", "indent", "separators", "sort_keys"}, 0,
                {Value::boolean(false), Value::none(), Value::none(), Value::boolean(false)});
  JsonOptions o;
  o.ensure_ascii = truthy(a[0]);
  o.sort_keys = truthy(a[3]);
  if (!a[1].is_none()) {
    o.indent_set = true;
    if (a[1].is_string()) {
      o.indent = a[1].str();
    } else if (a[1].is_int()) {
      o.indent = std::string(std::clamp<int64_t>(a[1].as_int(), 0, 1000), ' ');
    } else {
      fail("tojson: indent must be an int or a string");
    }
    o.item_separator = ",";
  }
  if (!a[2].is_none()) {
    if (!a[2].is_sequence() || a[2].items().size() != 2 || !a[2].items()[0].is_string() ||
        !a[2].items()[1].is_string()) {
      fail("tojson: separators must be a pair of strings");
    }
    o.item_separator = a[2].items()[0].str();
    o.key_separator = a[2].items()[1].str();
  }
  std::string json = to_json(v, o);
  r.charge(json.size());
  return Value::string(std::move(json));
}

Value f_trim(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a = args.bind("trim", {"chars"}, 0, {Value::none()});
  return str_result(v, py_strip(to_str(v), a[0], true, true));
}

Value f_unique(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a = args.bind("unique", {"case_sensitive", "attribute"}, 0,
                                         {Value::boolean(false), Value::none()});
  return lazily([&](ValueList& out) {
    ValueList seen;
    for (const Value& item : iterate(v)) {
      Value key = sort_key(item, a[1], truthy(a[0]));
      if (key.kind() == Kind::kList || key.kind() == Kind::kDict)
        fail("unhashable type: '" + type_name(key) + "'");
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) {
        seen.push_back(std::move(key));
        out.push_back(item);
      }
    }
  });
}

Value f_truncate(Renderer&, const Value& v, const CallArgs& args) {
  const std::vector<Value> a = args.bind(
      "truncate", {"length", "killwords", "end", "leeway"}, 0,
      {Value::integer(255), Value::boolean(false), Value::string("..."), Value::integer(5)});
  if (!a[0].is_int() || !a[3].is_int()) fail("truncate: length and leeway must be integers");
  const std::u32string text = utf8_decode(to_str(v));
  const std::u32string end = utf8_decode(to_str(a[2]));
  const int64_t length = a[0].as_int();
  if (length < static_cast<int64_t>(end.size())) {
    fail(str_cat("expected length >= ", end.size(), ", got ", length));
  }
  if (a[3].as_int() < 0) fail(str_cat("expected leeway >= 0, got ", a[3].as_int()));
  if (static_cast<int64_t>(text.size()) <= length + a[3].as_int()) return Value::string(to_str(v));
  std::u32string kept = text.substr(0, static_cast<size_t>(length) - end.size());
  if (!truthy(a[1])) {  // cut at the last space, as rsplit(" ", 1)[0]
    const size_t space = kept.rfind(U' ');
    if (space != std::u32string::npos) kept.resize(space);
  }
  return Value::string(utf8_encode(kept + end));
}

Value f_wordcount(Renderer&, const Value& v, const CallArgs& args) {
  args.bind("wordcount", {}, 0, {});
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : utf8_decode(to_str(v))) {
    const bool word = is_alpha(c) || is_digit(c) || c == '_';
    if (word && !in_word) ++words;
    in_word = word;
  }
  return Value::integer(words);
}

struct NamedFilter {
  std::string_view name;
  FilterFn fn;
};
constexpr NamedFilter kFilters[] = {
    {"abs", f_abs},
    {"attr", f_attr},
    {"capitalize", f_capitalize},
    {"center", f_center},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"first", f_first},
    {"float", f_float},
    {"forceescape", f_forceescape},
    {"format", f_format},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_lower},
    {"map", f_map},
    {"max", f_max},
    {"min", f_min},
    {"reject", f_reject},
    {"rejectattr", f_rejectattr},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"round", f_round},
    {"safe", f_safe},
    {"select", f_select},
    {"selectattr", f_selectattr},
    {"sort", f_sort},
    {"string", f_string},
    {"sum", f_sum},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"unique", f_unique},
    {"upper", f_upper},
    {"truncate", f_truncate},
    {"wordcount", f_wordcount},
};
// jinja2 has these; this renderer refuses them by name.
constexpr std::string_view kRefusedFilters[] = {
    "batch",     "filesizeformat", "groupby", "pprint",   "random",  "slice",
    "striptags", "urlencode",      "urlize",  "wordwrap", "xmlattr", "min_max"};

}  // namespace

FilterFn find_filter(std::string_view name, bool* refused) {
  for (const NamedFilter& f : kFilters) {
    if (f.name == name) return f.fn;
  }
  *refused = std::find(std::begin(kRefusedFilters), std::end(kRefusedFilters), name) !=
             std::end(kRefusedFilters);
  return nullptr;
}

}  // namespace dsinf::trainer::jinja
