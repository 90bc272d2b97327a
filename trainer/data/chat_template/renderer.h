// Evaluates a parsed template against the caller's variables, with jinja2's
// scoping: {% set %} binds in the innermost scope; each for-loop iteration
// opens a fresh one (so a set inside a loop does not outlive it: that is what
// namespace() is for); if-blocks open none.
//
// Every render is bounded: output size, evaluation steps, and bytes of
// strings and lists built, so no template (or fuzz input) can hang or
// exhaust memory; reaching a bound fails with kResourceExhausted.
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"
#include "trainer/data/chat_template/ast.h"

namespace dsinf::trainer::jinja {

inline constexpr size_t kMaxOutputBytes = size_t{64} << 20;  // also any one string
inline constexpr size_t kMaxWorkBytes = size_t{1} << 30;
inline constexpr int64_t kMaxSteps = 20'000'000;
inline constexpr size_t kMaxRangeLength = 100'000;  // jinja2's sandbox MAX_RANGE

struct RenderOptions {
  // The local time strftime_now() formats; unset: the clock's, at the call.
  std::optional<std::tm> now;
  // Evaluation steps (statements, expressions, loop iterations) and output
  // bytes one render may take; tests lower them.
  int64_t max_steps = kMaxSteps;
  size_t max_output_bytes = kMaxOutputBytes;
};

class Renderer {
 public:
  // `context`: a JSON object of variables, or null for none.
  Renderer(const RenderOptions& options, const nlohmann::json& context);
  Renderer(const RenderOptions& options, const nlohmann::ordered_json& context);
  // Throws TemplateError.
  std::string render(const Template& t);

  Value eval(const Expr& e);
  // Charges `bytes` of built strings or lists against the work budget.
  void charge(size_t bytes);
  const RenderOptions& options() const { return options_; }

  // Applies a filter or test named at run time (by map, select, ...).
  Value apply_filter(std::string_view name, const Value& input, const CallArgs& args);
  bool apply_test(std::string_view name, const Value& input, const CallArgs& args);

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  using Scope = std::vector<std::pair<std::string, Value>>;

  Flow exec(const Body& body);
  Flow exec(const Stmt& s);
  Flow exec_for(const Stmt& s);
  void exec_set(const Stmt& s, Value value);
  void emit(std::string_view text);
  void step();

  Value lookup(const std::string& name) const;
  Value resolve(const std::string& name) const;  // the caller's variables, then the globals
  void enter_frame(const Slots& slots);
  void leave_frame() { scopes_.pop_back(); }
  void bind(const std::string& name, Value value);
  void bind_targets(const Stmt& s, const Value& item);
  CallArgs eval_args(const Expr& e);
  Value eval_inner(const Expr& e);
  template <typename Json>
  void set_context(const Json& context);

  RenderOptions options_;
  ValueDict context_;
  std::vector<Scope> scopes_;
  std::string out_;
  int64_t steps_ = 0;
  size_t work_bytes_ = 0;
};

// Python's binary operators (+ - * / // % **), comparisons, and `in`.
Value binary_op(Renderer& r, std::string_view op, const Value& a, const Value& b);
bool contains(const Value& container, const Value& item);
// Python's `format % args` (printf-style), also the `format` filter.
std::string percent_format(Renderer& r, const Value& format, const Value& args);

}  // namespace dsinf::trainer::jinja
