// The values a chat template computes with: Python's objects as jinja2 sees
// them (None, bool, int, float, str, list, tuple, dict, jinja2's Undefined
// and Namespace, callables), with Python's semantics for truth, equality,
// ordering, str() and repr(), and json.dumps for the tojson filter.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "nlohmann/json.hpp"
#include "trainer/data/chat_template/error.h"

namespace dsinf::trainer::jinja {

class Value;
using ValueList = std::vector<Value>;
struct ValueDict;
struct Namespace;
struct Callable;
struct LoopState;
struct Generator;

enum class Kind : uint8_t {
  kUndefined,  // jinja2's default Undefined: "" when printed, falsy, empty when iterated
  kNone,
  kBool,
  kInt,  // int64 here; Python's are unbounded (overflow is an error)
  kFloat,
  kString,  // UTF-8; Python indexes it by code point
  kList,
  kTuple,  // a list that prints as (a, b) and equals no list
  kDict,   // insertion-ordered, as Python's
  kNamespace,
  kCallable,
  kLoop,       // the `loop` variable of a for loop
  kGenerator,  // what map/select/unique/... return: always true, no len(), iterates once
};

// Containers nest at most this deep, so that no recursive walk (printing,
// comparing, freeing) can exhaust the stack.
inline constexpr int kMaxNesting = 200;

class Value {
 public:
  Value() = default;  // Undefined, without a hint
  static Value undefined(std::string hint);
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double f);
  static Value string(std::string s, bool markup = false);
  static Value list(ValueList items);  // kTooDeep past kMaxNesting
  static Value tuple(ValueList items);
  static Value dict(ValueDict items);
  static Value ns(std::shared_ptr<Namespace> ns);
  static Value callable(std::shared_ptr<const Callable> fn);
  static Value loop(std::shared_ptr<LoopState> state);
  static Value generator(std::shared_ptr<Generator> state);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_int() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }  // bool is an int
  bool is_number() const { return is_int() || kind_ == Kind::kFloat; }
  bool is_sequence() const { return kind_ == Kind::kList || kind_ == Kind::kTuple; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  // A jinja2 Markup string (from |safe or |escape): `+` escapes the other side.
  bool markup() const { return markup_; }
  int depth() const { return depth_; }

  bool as_bool() const { return std::get<bool>(payload_); }
  int64_t as_int() const;          // bool or int
  double as_double() const;        // any number
  const std::string& str() const;  // kString; kUndefined: the hint
  const ValueList& items() const;  // kList, kTuple
  const ValueDict& dict() const;
  const std::shared_ptr<Namespace>& ns() const;
  const Callable& fn() const;
  LoopState& loop() const;
  Generator& generator() const;

 private:
  using Payload =
      std::variant<std::monostate, bool, int64_t, double, std::shared_ptr<const std::string>,
                   std::shared_ptr<const ValueList>, std::shared_ptr<const ValueDict>,
                   std::shared_ptr<Namespace>, std::shared_ptr<const Callable>,
                   std::shared_ptr<LoopState>, std::shared_ptr<Generator>>;
  Kind kind_ = Kind::kUndefined;
  bool markup_ = false;
  uint16_t depth_ = 0;  // 0 for scalars; 1 + the deepest element for containers
  Payload payload_;
};

struct ValueDict {
  std::vector<std::pair<Value, Value>> entries;
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(Value key, Value value);  // replaces an equal key in place, else appends
};

// jinja2's namespace(): the one mutable object, assigned with {% set ns.x = v %}.
struct Namespace {
  ValueDict attrs;
};

// A global function (range, namespace, ...) or a method bound to `self`.
struct Callable {
  std::string name;
  Value self;  // kUndefined for globals
  bool method = false;
};

// jinja2's filters that return Python generators are computed eagerly here;
// the result remembers how far it has been consumed, and the error (if any)
// that computing the rest raised, to surface when the rest is consumed.
struct Generator {
  ValueList items;
  size_t next = 0;
  std::string error;

  // The rest, consumed; throws the deferred error after handing out all.
  ValueList take_rest();
};

// A for loop's `loop`. With an `if` filter, items are tested lazily, as
// jinja2's generator does: when the loop reaches them, or earlier when
// loop.last, nextitem, length or revindex must look ahead.
struct LoopState {
  std::shared_ptr<const ValueList> source;   // before the filter
  std::function<bool(const Value&)> accept;  // the filter; null: none
  bool open = true;                          // false once the loop is over: nothing is tested then
  ValueList accepted;
  size_t scanned = 0;  // source items tested so far
  int64_t index0 = 0;
  Value last_changed;  // loop.changed()'s arguments of its last call
  bool has_last_changed = false;

  // Whether `count` items pass, testing only as many as needed.
  bool fill(size_t count);
  int64_t length();
};

// Fails with what makes `v` undefined ("'x' is undefined", ...): what
// jinja2's Undefined does when used as a value.
[[noreturn]] void fail_undefined(const Value& v);

// Whether `v` is or holds a namespace. A namespace may not hold one: no
// value can then reach itself, so printing and freeing never loop.
bool holds_namespace(const Value& v);

// Python's truth, ==, and ordering (<0, 0, >0; a TypeError for mixed types).
bool truthy(const Value& v);
bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b);  // throws TemplateError for unorderable types

// Python's str() and repr(); Undefined prints as "".
std::string to_str(const Value& v);
std::string repr(const Value& v);
// The Python type name ("str", "NoneType", ...), and jinja2's "dict object".
std::string type_name(const Value& v);
std::string object_repr(const Value& v);

// Python's float repr: the shortest round-trip digits ("1.0", "1e+16", "inf").
std::string float_repr(double f);

// json.dumps(v, ensure_ascii=, indent=, separators=, sort_keys=), as
// transformers' tojson filter calls it.
struct JsonOptions {
  bool ensure_ascii = false;
  bool indent_set = false;  // indent=None when false
  std::string indent;       // the indent string (an int n gives n spaces)
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
std::string to_json(const Value& v, const JsonOptions& options);

// The template's variables from the caller's JSON. nlohmann::json keeps
// object keys sorted; ordered_json keeps them as written, as Python's dicts
// do (which tojson and dict iteration show).
Value from_json(const nlohmann::json& j);
Value from_json(const nlohmann::ordered_json& j);

}  // namespace dsinf::trainer::jinja
