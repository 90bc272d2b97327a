// Attribute and item access, calls, the global functions, and the methods of
// str, dict, list and loop, as jinja2's ImmutableSandboxedEnvironment allows
// them: methods that would modify a dict or list are unsafe there, and fail
// when called.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <limits>

#include "trainer/data/chat_template/builtins.h"
#include "trainer/data/chat_template/error.h"
#include "trainer/data/chat_template/renderer.h"
#include "trainer/data/chat_template/strings.h"
#include "trainer/data/chat_template/unicode.h"

namespace dsinf::trainer::jinja {

namespace {

constexpr std::string_view kStrMethods[] = {
    "strip",        "lstrip",    "rstrip",    "split",   "rsplit",  "splitlines", "startswith",
    "endswith",     "replace",   "upper",     "lower",   "title",   "capitalize", "swapcase",
    "casefold",     "find",      "rfind",     "index",   "rindex",  "count",      "join",
    "format",       "isdigit",   "isalpha",   "isalnum", "isspace", "islower",    "isupper",
    "isdecimal",    "isnumeric", "zfill",     "center",  "ljust",   "rjust",      "removeprefix",
    "removesuffix", "partition", "rpartition"};
constexpr std::string_view kDictMethods[] = {"items", "keys", "values", "get", "copy"};
constexpr std::string_view kDictUnsafe[] = {"pop",    "popitem", "setdefault",
                                            "update", "clear",   "fromkeys"};
constexpr std::string_view kListMethods[] = {"index", "count", "copy"};
constexpr std::string_view kListUnsafe[] = {"append", "extend",  "insert", "pop",
                                            "remove", "reverse", "sort",   "clear"};
constexpr std::string_view kGlobals[] = {"range", "namespace", "dict", "raise_exception",
                                         "strftime_now"};

template <size_t N>
bool listed(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

Value bound(const Value& self, std::string_view name) {
  auto fn = std::make_shared<Callable>();
  fn->name = std::string(name);
  fn->self = self;
  fn->method = true;
  return Value::callable(std::move(fn));
}

Value no_attribute(const Value& obj, std::string_view name) {
  return Value::undefined(str_cat("'", object_repr(obj), "' has no attribute '", name, "'"));
}

Value unsafe(const Value& obj, std::string_view name) {
  return Value::undefined(
      str_cat("access to attribute '", name, "' of '", type_name(obj), "' object is unsafe."));
}

// A method or field of `obj` named `name`, or kUndefined without a hint
// when it has none (the caller then tries an item or reports it).
Value method_of(const Value& obj, std::string_view name) {
  switch (obj.kind()) {
    case Kind::kString:
      if (listed(kStrMethods, name)) return bound(obj, name);
      break;
    case Kind::kDict:
      if (listed(kDictMethods, name)) return bound(obj, name);
      if (listed(kDictUnsafe, name)) return unsafe(obj, name);
      break;
    case Kind::kList:
      if (listed(kListMethods, name)) return bound(obj, name);
      if (listed(kListUnsafe, name)) return unsafe(obj, name);
      break;
    case Kind::kTuple:
      if (name == "index" || name == "count") return bound(obj, name);
      break;
    case Kind::kNamespace:
      if (const Value* v = obj.ns()->attrs.find(name)) return *v;
      break;
    case Kind::kLoop: {
      LoopState& loop = obj.loop();
      const int64_t i = loop.index0;
      const auto next_exists = [&]() { return loop.fill(static_cast<size_t>(i) + 2); };
      if (name == "index") return Value::integer(i + 1);
      if (name == "index0") return Value::integer(i);
      if (name == "revindex") return Value::integer(loop.length() - i);
      if (name == "revindex0") return Value::integer(loop.length() - i - 1);
      if (name == "first") return Value::boolean(i == 0);
      if (name == "last") return Value::boolean(!next_exists());
      if (name == "length") return Value::integer(loop.length());
      if (name == "depth") return Value::integer(1);
      if (name == "depth0") return Value::integer(0);
      if (name == "previtem") {
        return i > 0 ? loop.accepted[i - 1] : Value::undefined("there is no previous item");
      }
      if (name == "nextitem") {
        return next_exists() ? loop.accepted[i + 1] : Value::undefined("there is no next item");
      }
      if (name == "cycle" || name == "changed") return bound(obj, name);
      break;
    }
    default:
      break;
  }
  return Value();
}

bool found(const Value& v) { return !v.is_undefined() || !v.str().empty(); }

std::string describe_element(const Value& obj, const Value& key) {
  return str_cat("'", object_repr(obj), "' has no element ", repr(key));
}

// Python's PySlice_AdjustIndices: the positions a slice visits.
std::vector<int64_t> slice_positions(int64_t length, const Value& start_v, const Value& stop_v,
                                     const Value& step_v) {
  const int64_t step = step_v.is_none() ? 1 : step_v.as_int();
  if (step == 0) fail("slice step cannot be zero");
  const auto adjust = [&](const Value& v, bool is_start) -> int64_t {
    if (v.is_none()) {
      if (is_start) return step < 0 ? length - 1 : 0;
      return step < 0 ? -1 : length;
    }
    int64_t i = v.as_int();
    if (i < 0) {
      i += length;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= length) {
      i = step < 0 ? length - 1 : length;
    }
    return i;
  };
  const int64_t start = adjust(start_v, true);
  const int64_t stop = adjust(stop_v, false);
  std::vector<int64_t> positions;
  if (step > 0) {
    for (int64_t i = start; i < stop; i += step) positions.push_back(i);
  } else {
    for (int64_t i = start; i > stop; i += step) positions.push_back(i);
  }
  return positions;
}

Value make_range(const CallArgs& args) {
  if (!args.keyword.empty()) fail("range() takes no keyword arguments");
  const auto& p = args.positional;
  if (p.empty() || p.size() > 3) fail("range expected 1 to 3 arguments");
  for (const Value& v : p) {
    if (v.is_undefined()) fail(v.str());
    if (!v.is_int()) fail("'" + type_name(v) + "' object cannot be interpreted as an integer");
  }
  const int64_t start = p.size() == 1 ? 0 : p[0].as_int();
  const int64_t stop = p.size() == 1 ? p[0].as_int() : p[1].as_int();
  const int64_t step = p.size() == 3 ? p[2].as_int() : 1;
  if (step == 0) fail("range() arg 3 must not be zero");
  const long double count =
      step > 0
          ? std::ceil((static_cast<long double>(stop) - start) / step)
          : std::ceil((static_cast<long double>(start) - stop) / -static_cast<long double>(step));
  if (count > static_cast<long double>(kMaxRangeLength)) {
    fail(str_cat("Range too big. The sandbox blocks ranges larger than MAX_RANGE (",
                 kMaxRangeLength, ")."));
  }
  ValueList items;
  for (int64_t i = 0; i < static_cast<int64_t>(std::max<long double>(count, 0)); ++i) {
    items.push_back(Value::integer(start + i * step));
  }
  return Value::list(std::move(items));
}

// dict(mapping or pairs, **kwargs), as namespace() also takes it.
ValueDict dict_from_args(const CallArgs& args, std::string_view function) {
  ValueDict dict;
  if (args.positional.size() > 1) {
    fail(str_cat(function, " expected at most 1 positional argument"));
  }
  if (!args.positional.empty()) {
    const Value& source = args.positional[0];
    if (source.is_dict()) {
      dict = source.dict();
    } else {
      for (const Value& pair : iterate(source)) {
        ValueList kv = iterate(pair);
        if (kv.size() != 2) fail("dictionary update sequence element has the wrong length");
        dict.set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [key, value] : args.keyword) dict.set(Value::string(key), value);
  return dict;
}

Value strftime_now(Renderer& r, const CallArgs& args) {
  const std::vector<Value> a = args.bind("strftime_now", {"format"}, 1, {});
  if (!a[0].is_string()) fail("strftime_now() argument must be str, not " + type_name(a[0]));
  const std::string& format = a[0].str();
  if (format.size() > 256) fail("the strftime_now() format is too long");
  std::tm tm{};
  if (r.options().now) {
    tm = *r.options().now;
  } else {
    const std::time_t now = std::time(nullptr);
    localtime_r(&now, &tm);
  }
  if (format.empty()) return Value::string("");
  std::string buffer(4096, '\0');
  const size_t n = std::strftime(buffer.data(), buffer.size(), format.c_str(), &tm);
  buffer.resize(n);
  return Value::string(std::move(buffer));
}

Value call_global(Renderer& r, const std::string& name, const CallArgs& args) {
  if (name == "range") return make_range(args);
  if (name == "dict") return Value::dict(dict_from_args(args, "dict"));
  if (name == "namespace") {
    auto ns = std::make_shared<Namespace>();
    ns->attrs = dict_from_args(args, "namespace");
    for (const auto& [key, value] : ns->attrs.entries) {
      if (value.kind() == Kind::kNamespace) fail("a namespace cannot hold a namespace here");
    }
    return Value::ns(std::move(ns));
  }
  if (name == "raise_exception") {
    const std::vector<Value> a = args.bind("raise_exception", {"message"}, 1, {});
    fail(to_str(a[0]));
  }
  if (name == "strftime_now") return strftime_now(r, args);
  fail("unknown function " + name);
}

Value call_dict_method(const Value& self, const std::string& name, const CallArgs& args) {
  const ValueDict& dict = self.dict();
  if (name == "get") {
    const std::vector<Value> a = args.bind("get", {"key", "default"}, 1, {Value::none()});
    if (const Value* v = dict.find(a[0])) return *v;
    return a[1];
  }
  args.bind(name, {}, 0, {});
  if (name == "copy") return self;
  ValueList items;
  items.reserve(dict.entries.size());
  for (const auto& [key, value] : dict.entries) {
    if (name == "items")
      items.push_back(Value::tuple({key, value}));
    else if (name == "keys")
      items.push_back(key);
    else
      items.push_back(value);
  }
  return Value::list(std::move(items));
}

Value call_list_method(const Value& self, const std::string& name, const CallArgs& args) {
  if (name == "copy") {
    args.bind(name, {}, 0, {});
    return self;
  }
  const std::vector<Value> a = args.bind(name, {"value"}, 1, {});
  const ValueList& items = self.items();
  if (name == "count") {
    return Value::integer(
        std::count_if(items.begin(), items.end(), [&](const Value& v) { return equals(v, a[0]); }));
  }
  for (size_t i = 0; i < items.size(); ++i) {
    if (equals(items[i], a[0])) return Value::integer(static_cast<int64_t>(i));
  }
  fail(repr(a[0]) + " is not in " + type_name(self));
}

Value call_loop_method(const Value& self, const std::string& name, const CallArgs& args) {
  if (name == "changed") {  // whether the arguments differ from the last call's
    LoopState& loop = self.loop();
    const Value now = Value::tuple(args.positional);
    if (loop.has_last_changed && equals(loop.last_changed, now)) return Value::boolean(false);
    loop.last_changed = now;
    loop.has_last_changed = true;
    return Value::boolean(true);
  }
  if (args.positional.empty()) fail("no items for cycling given");
  const auto& p = args.positional;
  return p[static_cast<size_t>(self.loop().index0) % p.size()];
}

}  // namespace

std::vector<Value> CallArgs::bind(std::string_view function,
                                  std::initializer_list<std::string_view> names, size_t required,
                                  std::vector<Value> defaults) const {
  const std::vector<std::string_view> params(names);
  if (positional.size() > params.size()) {
    fail(str_cat(function, "() takes at most ", params.size(), " argument",
                 params.size() == 1 ? "" : "s", " (", positional.size(), " given)"));
  }
  std::vector<Value> out(params.size());
  std::vector<bool> given(params.size(), false);
  for (size_t i = 0; i < positional.size(); ++i) {
    out[i] = positional[i];
    given[i] = true;
  }
  for (const auto& [keyword, value] : keyword) {
    const auto it = std::find(params.begin(), params.end(), keyword);
    if (it == params.end()) {
      fail(str_cat(function, "() got an unexpected keyword argument '", keyword, "'"));
    }
    const size_t i = it - params.begin();
    if (given[i]) fail(str_cat(function, "() got multiple values for argument '", keyword, "'"));
    out[i] = value;
    given[i] = true;
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (given[i]) continue;
    if (i < required) {
      fail(str_cat(function, "() missing required argument '", params[i], "'"));
    }
    out[i] = defaults[i - required];
  }
  return out;
}

Value find_global(std::string_view name) {
  if (!listed(kGlobals, name)) return Value();
  auto fn = std::make_shared<Callable>();
  fn->name = std::string(name);
  return Value::callable(std::move(fn));
}

Value get_attribute(const Value& obj, std::string_view name) {
  if (obj.is_undefined()) fail_undefined(obj);
  Value method = method_of(obj, name);
  if (found(method)) return method;
  if (obj.is_dict()) {
    if (const Value* v = obj.dict().find(name)) return *v;
  }
  return no_attribute(obj, name);
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail_undefined(obj);
  switch (obj.kind()) {
    case Kind::kDict:
      if (key.kind() != Kind::kList && key.kind() != Kind::kDict) {
        if (const Value* v = obj.dict().find(key)) return *v;
      }
      break;
    case Kind::kList:
    case Kind::kTuple:
    case Kind::kString:
      if (key.is_int()) {
        int64_t i = key.as_int();
        if (obj.is_string()) {
          if (is_ascii(obj.str())) {
            const auto n = static_cast<int64_t>(obj.str().size());
            if (i < 0) i += n;
            if (i >= 0 && i < n) return Value::string(obj.str().substr(i, 1));
          } else {
            const std::u32string cps = utf8_decode(obj.str());
            const auto n = static_cast<int64_t>(cps.size());
            if (i < 0) i += n;
            if (i >= 0 && i < n) return Value::string(utf8_encode(cps.substr(i, 1)));
          }
        } else {
          const auto n = static_cast<int64_t>(obj.items().size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) return obj.items()[i];
        }
        return Value::undefined(describe_element(obj, key));
      }
      break;
    default:
      break;
  }
  if (key.is_string()) {
    Value method = method_of(obj, key.str());
    if (found(method)) return method;
    return no_attribute(obj, key.str());
  }
  return Value::undefined(describe_element(obj, key));
}

Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) fail_undefined(obj);
  // jinja2 compiles a slice to Python's own obj[a:b:c], outside the
  // sandbox's getitem: what cannot be sliced fails rather than giving Undefined.
  for (const Value* v : {&start, &stop, &step}) {
    if (v->is_undefined()) fail_undefined(*v);
    if (!v->is_none() && !v->is_int()) {
      fail("slice indices must be integers or None or have an __index__ method");
    }
  }
  if (obj.is_string()) {
    const std::u32string cps = utf8_decode(obj.str());
    std::u32string out;
    for (int64_t i : slice_positions(static_cast<int64_t>(cps.size()), start, stop, step)) {
      out.push_back(cps[i]);
    }
    return Value::string(utf8_encode(out), obj.markup());
  }
  if (obj.is_sequence()) {
    ValueList out;
    for (int64_t i : slice_positions(static_cast<int64_t>(obj.items().size()), start, stop, step)) {
      out.push_back(obj.items()[i]);
    }
    return obj.kind() == Kind::kTuple ? Value::tuple(std::move(out)) : Value::list(std::move(out));
  }
  if (obj.is_dict()) fail("unhashable type: 'slice'");
  if (obj.kind() == Kind::kGenerator) fail("'generator' object is not subscriptable");
  fail(str_cat("'", type_name(obj), "' object is not subscriptable"));
}

Value call_value(Renderer& r, const Value& fn, const CallArgs& args) {
  if (fn.is_undefined()) fail_undefined(fn);
  if (fn.kind() != Kind::kCallable) fail("'" + type_name(fn) + "' object is not callable");
  const Callable& c = fn.fn();
  if (!c.method) return call_global(r, c.name, args);
  switch (c.self.kind()) {
    case Kind::kString:
      return call_str_method(r, c.self, c.name, args);
    case Kind::kDict:
      return call_dict_method(c.self, c.name, args);
    case Kind::kList:
    case Kind::kTuple:
      return call_list_method(c.self, c.name, args);
    case Kind::kLoop:
      return call_loop_method(c.self, c.name, args);
    default:
      fail("unknown method " + c.name);
  }
}

ValueList iterate(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined:
      return {};
    case Kind::kGenerator:
      return v.generator().take_rest();
    case Kind::kList:
    case Kind::kTuple:
      return v.items();
    case Kind::kDict: {
      ValueList keys;
      keys.reserve(v.dict().entries.size());
      for (const auto& [key, value] : v.dict().entries) keys.push_back(key);
      return keys;
    }
    case Kind::kString: {
      ValueList chars;
      for (char32_t cp : utf8_decode(v.str())) {
        std::string c;
        utf8_append(cp, c);
        chars.push_back(Value::string(std::move(c)));
      }
      return chars;
    }
    default:
      fail("'" + type_name(v) + "' object is not iterable");
  }
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

}  // namespace dsinf::trainer::jinja
