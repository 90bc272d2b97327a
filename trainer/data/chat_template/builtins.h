// jinja2's filters, tests, global functions and the methods of str, dict and
// list that templates call, with Python's semantics. Looked up by name when
// the template is parsed: an unknown or unimplemented filter or test is
// refused there, before anything renders.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "trainer/data/chat_template/value.h"

namespace dsinf::trainer::jinja {

class Renderer;

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // Python's argument binding for a builtin with parameters `names`, the
  // first `required` of them without defaults and the rest defaulting to
  // `defaults`: each the positional at its place or the keyword of its name.
  // Fails naming `function` for a missing, repeated or unexpected argument.
  std::vector<Value> bind(std::string_view function, std::initializer_list<std::string_view> names,
                          size_t required, std::vector<Value> defaults) const;
};

using FilterFn = Value (*)(Renderer& r, const Value& input, const CallArgs& args);
using TestFn = bool (*)(Renderer& r, const Value& input, const CallArgs& args);

// nullptr when unknown; `refused` is set when jinja2 has it but this
// renderer does not.
FilterFn find_filter(std::string_view name, bool* refused);
TestFn find_test(std::string_view name, bool* refused);

// A global function (range, namespace, dict, raise_exception, strftime_now),
// or kUndefined.
Value find_global(std::string_view name);

// obj.name as jinja2's sandbox resolves it: a method of str/dict/list
// (unsafe mutating ones give an Undefined that fails when called), else a
// dict key, a namespace attribute or a loop field; else Undefined.
Value get_attribute(const Value& obj, std::string_view name);
// obj[key]: an item first, then (for a string key) an attribute.
Value get_item(const Value& obj, const Value& key);
// obj[start:stop:step] for strings, lists and tuples.
Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

Value call_value(Renderer& r, const Value& fn, const CallArgs& args);

// Python's iteration: a list's or tuple's items, a dict's keys, a string's
// characters; Undefined iterates as empty. Fails for what is not iterable.
ValueList iterate(const Value& v);

// Markup's escape(): & < > " ' as entities.
std::string html_escape(std::string_view s);

}  // namespace dsinf::trainer::jinja
