#include "trainer/data/chat_template/renderer.h"

#include <cmath>
#include <limits>

#include "trainer/data/chat_template/error.h"

namespace dsinf::trainer::jinja {

namespace {

[[noreturn]] void fail_overflow() {
  fail("integer overflow: integers are limited to 64 bits here (Python's are unbounded)");
}

}  // namespace

Renderer::Renderer(const RenderOptions& options, const nlohmann::json& context)
    : options_(options) {
  set_context(context);
}

Renderer::Renderer(const RenderOptions& options, const nlohmann::ordered_json& context)
    : options_(options) {
  set_context(context);
}

template <typename Json>
void Renderer::set_context(const Json& context) {
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
