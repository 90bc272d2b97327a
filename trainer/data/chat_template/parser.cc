#include "trainer/data/chat_template/parser.h"

#include <algorithm>
#include <initializer_list>

#include "trainer/data/chat_template/error.h"
#include "trainer/data/chat_template/lexer.h"
#include "trainer/data/chat_template/scoping.h"

namespace dsinf::trainer::jinja {

namespace {

// Deeper expressions and statement nesting are refused: evaluation recurses
// along the tree, so its depth bounds the stack a render needs.
constexpr int kMaxExprDepth = 300;
constexpr int kMaxRecursion = 150;

[[noreturn]] void fail_at(int line, std::string message) {
  throw TemplateError{absl::StatusCode::kInvalidArgument, std::move(message), line};
}

std::string describe(const Token& t) {
  switch (t.type) {
    case TokenType::kText:
      return "template text";
    case TokenType::kVariableBegin:
      return "'{{'";
    case TokenType::kVariableEnd:
      return "end of print statement";
    case TokenType::kBlockBegin:
      return "'{%'";
    case TokenType::kBlockEnd:
      return "end of statement block";
    case TokenType::kName:
      return "'" + t.value + "'";
    case TokenType::kString:
      return "string literal";
    case TokenType::kInteger:
      return "integer literal";
    case TokenType::kFloat:
      return "float literal";
    case TokenType::kOperator:
      return "'" + t.value + "'";
    case TokenType::kEnd:
      return "end of template";
  }
  return "token";
}

constexpr std::string_view kRefusedTags[] = {"macro",  "call", "filter",  "with",  "include",
                                             "import", "from", "extends", "block", "autoescape"};

class Parser {
 public:
  explicit Parser(std::string_view source) : tokens_(tokenize(source)) {}

  Body run() {
    Body body = parse_body({}, 0);
    return body;
  }

 private:
  class Guard {
   public:
    explicit Guard(Parser& p) : p_(p) {
      if (++p_.recursion_ > kMaxRecursion) {
        fail_at(p_.cur().line, "the template nests expressions or statements too deeply");
      }
    }
    ~Guard() { --p_.recursion_; }

   private:
    Parser& p_;
  };

  const Token& cur() const { return tokens_[pos_]; }
  const Token& look() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  void next() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool is_op(std::string_view op) const {
    return cur().type == TokenType::kOperator && cur().value == op;
  }
  bool is_name(std::string_view name) const {
    return cur().type == TokenType::kName && cur().value == name;
  }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) fail_at(cur().line, str_cat("expected '", op, "', got ", describe(cur())));
  }
  std::string expect_name() {
    if (cur().type != TokenType::kName) {
      fail_at(cur().line, "expected a name, got " + describe(cur()));
    }
    std::string name = cur().value;
    next();
    return name;
  }
  void expect_block_end() {
    if (cur().type != TokenType::kBlockEnd) {
      fail_at(cur().line, "expected end of statement block, got " + describe(cur()));
    }
    next();
  }

  ExprPtr node(ExprKind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }
  // Records the depth of a finished node, refusing trees too deep to walk.
  ExprPtr done(ExprPtr e) {
    int depth = 0;
    for (const auto& op : e->operands) {
      if (op) depth = std::max(depth, op->depth);
    }
    for (const auto& arg : e->args) depth = std::max(depth, arg.value->depth);
    e->depth = depth + 1;
    if (e->depth > kMaxExprDepth) fail_at(e->line, "the expression nests too deeply");
    return e;
  }
  ExprPtr binary(ExprKind kind, std::string name, int line, ExprPtr a, ExprPtr b) {
    ExprPtr e = node(kind, line);
    e->name = std::move(name);
    e->operands.push_back(std::move(a));
    e->operands.push_back(std::move(b));
    return done(std::move(e));
  }

  // ---- statements ----

  // Statements up to one of `end_tags` (the parser then stands on that tag's
  // name, inside its {% %}) or, with none, to the end of the template.
  Body parse_body(std::initializer_list<std::string_view> end_tags, int open_line) {
    Body body;
    while (true) {
      const Token& t = cur();
      switch (t.type) {
        case TokenType::kEnd:
          if (end_tags.size() > 0) {
            fail_at(open_line, str_cat("unexpected end of template: this tag needs its '",
                                       *end_tags.begin(), "'"));
          }
          return body;
        case TokenType::kText: {
          auto s = std::make_unique<Stmt>();
          s->kind = StmtKind::kText;
          s->line = t.line;
          s->text = t.value;
          body.push_back(std::move(s));
          next();
          break;
        }
        case TokenType::kVariableBegin: {
          auto s = std::make_unique<Stmt>();
          s->kind = StmtKind::kOutput;
          s->line = t.line;
          next();
          s->expr = parse_tuple(false, true, {});
          if (cur().type != TokenType::kVariableEnd) {
            fail_at(cur().line, "expected end of print statement, got " + describe(cur()));
          }
          next();
          body.push_back(std::move(s));
          break;
        }
        case TokenType::kBlockBegin: {
          next();
          if (cur().type == TokenType::kName &&
              std::find(end_tags.begin(), end_tags.end(), cur().value) != end_tags.end()) {
            return body;
          }
          body.push_back(parse_statement());
          break;
        }
        default:
          fail_at(t.line, "unexpected " + describe(t));
      }
    }
  }

  std::unique_ptr<Stmt> parse_statement() {
    Guard guard(*this);
    const Token& t = cur();
    if (t.type != TokenType::kName) fail_at(t.line, "tag name expected, got " + describe(t));
    const std::string tag = t.value;
    const int line = t.line;
    for (std::string_view refused : kRefusedTags) {
      if (tag == refused) fail_at(line, str_cat("the \"", tag, "\" tag is not supported"));
    }
    next();
    auto s = std::make_unique<Stmt>();
    s->line = line;
    if (tag == "if") {
      parse_if(*s);
    } else if (tag == "for") {
      parse_for(*s);
    } else if (tag == "set") {
      parse_set(*s);
    } else if (tag == "print") {
      s->kind = StmtKind::kOutput;
      s->expr = parse_tuple(false, true, {});
      expect_block_end();
    } else if (tag == "break" || tag == "continue") {
      if (loops_ == 0) fail_at(line, str_cat("'", tag, "' outside of a loop"));
      s->kind = tag == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      expect_block_end();
    } else if (tag == "generation") {
      s->kind = StmtKind::kBody;
      expect_block_end();
      s->body = parse_body({"endgeneration"}, line);
      next();
      expect_block_end();
    } else if (tag.starts_with("end") || tag == "elif" || tag == "else") {
      fail_at(line, str_cat("unexpected \"", tag, "\" tag"));
    } else {
      fail_at(line, str_cat("unknown tag \"", tag, "\""));
    }
    return s;
  }

  void parse_if(Stmt& s) {
    s.kind = StmtKind::kIf;
    while (true) {
      Branch branch;
      branch.condition = parse_tuple(false, false, {});
      expect_block_end();
      branch.body = parse_body({"endif", "elif", "else"}, s.line);
      s.branches.push_back(std::move(branch));
      const std::string tag = cur().value;
      next();
      if (tag == "elif") continue;
      if (tag == "else") {
        expect_block_end();
        Branch otherwise;
        otherwise.body = parse_body({"endif"}, s.line);
        s.branches.push_back(std::move(otherwise));
        next();
      }
      expect_block_end();
      return;
    }
  }

  // Names to assign: `x`, `a, b`, `(a, b)`.
  void parse_targets(Stmt& s, std::string_view end_name) {
    const bool parenthesized = skip_op("(");
    while (true) {
      if (cur().type != TokenType::kName || (!end_name.empty() && is_name(end_name))) {
        fail_at(cur().line, "can only assign to names, got " + describe(cur()));
      }
      s.targets.push_back(cur().value);
      next();
      if (!skip_op(",")) break;
      s.unpack = true;
      if (parenthesized ? is_op(")") : (cur().type != TokenType::kName || is_name(end_name))) break;
    }
    if (parenthesized) {
      expect_op(")");
      s.unpack = true;
    }
    for (const std::string& name : s.targets) {
      if (name == "true" || name == "false" || name == "none" || name == "True" ||
          name == "False" || name == "None") {
        fail_at(s.line, "cannot assign to " + name);
      }
    }
  }

  void parse_for(Stmt& s) {
    s.kind = StmtKind::kFor;
    parse_targets(s, "in");
    if (!skip_name("in")) fail_at(cur().line, "expected 'in', got " + describe(cur()));
    s.expr = parse_tuple(false, false, {"recursive"});
    if (skip_name("if")) s.condition = parse_expression(true);
    if (is_name("recursive")) fail_at(cur().line, "recursive loops are not supported");
    expect_block_end();
    ++loops_;
    s.body = parse_body({"endfor", "else"}, s.line);
    --loops_;
    if (cur().value == "else") {
      next();
      expect_block_end();
      s.else_body = parse_body({"endfor"}, s.line);
    }
    next();
    expect_block_end();
  }

  void parse_set(Stmt& s) {
    s.kind = StmtKind::kSet;
    if (cur().type == TokenType::kName && look().type == TokenType::kOperator &&
        look().value == ".") {
      s.targets.push_back(cur().value);
      next();
      next();
      s.attribute = expect_name();
    } else {
      parse_targets(s, "");
    }
    if (skip_op("=")) {
      s.expr = parse_tuple(false, true, {});
      expect_block_end();
      return;
    }
    if (s.unpack || !s.attribute.empty()) {
      fail_at(s.line, "the block form of \"set\" assigns to one name only");
    }
    s.kind = StmtKind::kSetBlock;
    while (skip_op("|")) s.filters.push_back(parse_filter_call(nullptr));
    expect_block_end();
    s.body = parse_body({"endset"}, s.line);
    next();
    expect_block_end();
  }

  // ---- expressions ----

  bool is_tuple_end(std::initializer_list<std::string_view> extra_end) const {
    if (cur().type == TokenType::kVariableEnd || cur().type == TokenType::kBlockEnd ||
        cur().type == TokenType::kEnd || is_op(")")) {
      return true;
    }
    for (std::string_view name : extra_end) {
      if (is_name(name)) return true;
    }
    return false;
  }

  ExprPtr parse_tuple(bool explicit_parentheses, bool with_condexpr,
                      std::initializer_list<std::string_view> extra_end) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      items.push_back(parse_expression(with_condexpr));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses)
        fail_at(cur().line, "expected an expression, got " + describe(cur()));
    }
    ExprPtr e = node(ExprKind::kTuple, line);
    e->operands = std::move(items);
    return done(std::move(e));
  }

  ExprPtr parse_expression(bool with_condexpr) {
    Guard guard(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    int line = cur().line;
    ExprPtr expr = parse_or();
    while (skip_name("if")) {
      ExprPtr condition = parse_or();
      ExprPtr otherwise;
      if (skip_name("else")) {
        Guard guard(*this);
        otherwise = parse_condexpr();
      }
      ExprPtr e = node(ExprKind::kCond, line);
      e->operands.push_back(std::move(expr));
      e->operands.push_back(std::move(condition));
      e->operands.push_back(std::move(otherwise));
      expr = done(std::move(e));
      line = cur().line;
    }
    return expr;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const int line = cur().line;
      next();
      left = binary(ExprKind::kOr, "or", line, std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const int line = cur().line;
      next();
      left = binary(ExprKind::kAnd, "and", line, std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Guard guard(*this);
      ExprPtr e = node(ExprKind::kNot, cur().line);
      next();
      e->operands.push_back(parse_not());
      return done(std::move(e));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr first = parse_math1();
    ExprPtr e;
    while (true) {
      std::string op;
      if (cur().type == TokenType::kOperator &&
          (cur().value == "==" || cur().value == "!=" || cur().value == "<" ||
           cur().value == "<=" || cur().value == ">" || cur().value == ">=")) {
        op = cur().value;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && look().type == TokenType::kName && look().value == "in") {
        op = "not in";
        next();
        next();
      } else {
        break;
      }
      if (!e) {
        e = node(ExprKind::kCompare, line);
        e->operands.push_back(std::move(first));
      }
      e->ops.push_back(op);
      e->operands.push_back(parse_math1());
      if (e->operands.size() > 64) fail_at(line, "too many chained comparisons");
    }
    if (!e) return first;
    return done(std::move(e));
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const std::string op = cur().value;
      const int line = cur().line;
      next();
      left = binary(ExprKind::kBinary, op, line, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    const int line = cur().line;
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    ExprPtr e = node(ExprKind::kConcat, line);
    e->operands.push_back(std::move(first));
    while (skip_op("~")) {
      e->operands.push_back(parse_math2());
      if (e->operands.size() > 4096) fail_at(line, "too many operands of '~'");
    }
    return done(std::move(e));
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = cur().value;
      const int line = cur().line;
      next();
      left = binary(ExprKind::kBinary, op, line, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const int line = cur().line;
      next();
      left = binary(ExprKind::kBinary, "**", line, std::move(left), parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    Guard guard(*this);
    const int line = cur().line;
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = node(is_op("-") ? ExprKind::kNeg : ExprKind::kPos, line);
      next();
      e->operands.push_back(parse_unary(false));
      e = done(std::move(e));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    const int line = t.line;
    ExprPtr e;
    switch (t.type) {
      case TokenType::kName:
        e = node(ExprKind::kConst, line);
        if (t.value == "true" || t.value == "True") {
          e->constant = Value::boolean(true);
        } else if (t.value == "false" || t.value == "False") {
          e->constant = Value::boolean(false);
        } else if (t.value == "none" || t.value == "None") {
          e->constant = Value::none();
        } else {
          e->kind = ExprKind::kName;
          e->name = t.value;
        }
        next();
        return done(std::move(e));
      case TokenType::kString: {
        std::string text;
        while (cur().type == TokenType::kString) {  // adjacent literals join
          text += cur().value;
          next();
        }
        e = node(ExprKind::kConst, line);
        e->constant = Value::string(std::move(text));
        return done(std::move(e));
      }
      case TokenType::kInteger:
      case TokenType::kFloat:
        e = node(ExprKind::kConst, line);
        e->constant =
            t.type == TokenType::kInteger ? Value::integer(t.integer) : Value::number(t.number);
        next();
        return done(std::move(e));
      case TokenType::kOperator:
        if (t.value == "(") {
          next();
          e = parse_tuple(true, true, {});
          expect_op(")");
          return e;
        }
        if (t.value == "[") return parse_list();
        if (t.value == "{") return parse_dict();
        break;
      default:
        break;
    }
    fail_at(line, "unexpected " + describe(t));
  }

  ExprPtr parse_list() {
    ExprPtr e = node(ExprKind::kList, cur().line);
    expect_op("[");
    while (!is_op("]")) {
      if (!e->operands.empty()) expect_op(",");
      if (is_op("]")) break;
      e->operands.push_back(parse_expression(true));
    }
    expect_op("]");
    return done(std::move(e));
  }

  ExprPtr parse_dict() {
    ExprPtr e = node(ExprKind::kDict, cur().line);
    expect_op("{");
    while (!is_op("}")) {
      if (!e->operands.empty()) expect_op(",");
      if (is_op("}")) break;
      e->operands.push_back(parse_expression(true));
      expect_op(":");
      e->operands.push_back(parse_expression(true));
    }
    expect_op("}");
    return done(std::move(e));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        while (skip_op("|")) e = parse_filter_call(std::move(e));
      } else if (is_name("is")) {
        e = parse_test(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target) {
    const Token& t = cur();
    const int line = t.line;
    if (t.value == ".") {
      next();
      const Token& attr = cur();
      if (attr.type == TokenType::kName) {
        ExprPtr e = node(ExprKind::kAttr, line);
        e->name = attr.value;
        e->operands.push_back(std::move(target));
        next();
        return done(std::move(e));
      }
      if (attr.type != TokenType::kInteger)
        fail_at(attr.line, "expected a name or a number after '.'");
      ExprPtr key = node(ExprKind::kConst, attr.line);
      key->constant = Value::integer(attr.integer);
      next();
      ExprPtr e = node(ExprKind::kItem, line);
      e->operands.push_back(std::move(target));
      e->operands.push_back(done(std::move(key)));
      return done(std::move(e));
    }
    next();  // [
    std::vector<ExprPtr> keys;
    while (!is_op("]")) {
      if (!keys.empty()) expect_op(",");
      keys.push_back(parse_subscribed());
    }
    expect_op("]");
    if (keys.empty()) fail_at(line, "expected a subscript");
    ExprPtr key;
    if (keys.size() == 1) {
      key = std::move(keys[0]);
    } else {
      // Python's multi-dimensional slicing (s[a:b, c]); no list or string has it.
      for (const ExprPtr& k : keys) {
        if (k->kind == ExprKind::kSlice && k->operands[0] == nullptr) {
          fail_at(line, "a slice inside a tuple subscript ('[a:b, c]') is not supported");
        }
      }
      key = node(ExprKind::kTuple, line);
      key->operands = std::move(keys);
      key = done(std::move(key));
    }
    if (key->kind == ExprKind::kSlice && key->operands[0] == nullptr) {
      key->operands[0] = std::move(target);  // the slice node takes its target
      return done(std::move(key));
    }
    ExprPtr e = node(ExprKind::kItem, line);
    e->operands.push_back(std::move(target));
    e->operands.push_back(std::move(key));
    return done(std::move(e));
  }

  // A subscript: an expression, or a slice [start]:[stop][:[step]] (returned
  // as a kSlice node with a null target, filled in by parse_subscript).
  ExprPtr parse_subscribed() {
    const int line = cur().line;
    ExprPtr start;
    if (!is_op(":")) {
      start = parse_expression(true);
      if (!is_op(":")) return start;
    }
    next();  // :
    ExprPtr e = node(ExprKind::kSlice, line);
    e->operands.push_back(nullptr);
    e->operands.push_back(std::move(start));
    ExprPtr stop, step;
    if (!is_op(":") && !is_op("]") && !is_op(",")) stop = parse_expression(true);
    if (skip_op(":")) {
      if (!is_op("]") && !is_op(",")) step = parse_expression(true);
    }
    e->operands.push_back(std::move(stop));
    e->operands.push_back(std::move(step));
    return e;
  }

  void parse_call_args(Expr& e) {
    const int line = cur().line;
    expect_op("(");
    bool require_comma = false;
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*") || is_op("**")) fail_at(line, "*args and **kwargs in calls are not supported");
      Arg arg;
      if (cur().type == TokenType::kName && look().type == TokenType::kOperator &&
          look().value == "=") {
        arg.keyword = cur().value;
        next();
        next();
      } else if (!e.args.empty() && !e.args.back().keyword.empty()) {
        fail_at(line, "a positional argument follows a keyword argument");
      }
      arg.value = parse_expression(true);
      e.args.push_back(std::move(arg));
      require_comma = true;
      if (e.args.size() > 256) fail_at(line, "too many arguments");
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    ExprPtr e = node(ExprKind::kCall, cur().line);
    e->operands.push_back(std::move(callee));
    parse_call_args(*e);
    return done(std::move(e));
  }

  std::string dotted_name() {
    std::string name = expect_name();
    while (skip_op(".")) name += "." + expect_name();
    return name;
  }

  // After '|': name [(args)]. `input` is null inside {% set x | f %}.
  ExprPtr parse_filter_call(ExprPtr input) {
    const int line = cur().line;
    ExprPtr e = node(ExprKind::kFilter, line);
    e->name = dotted_name();
    bool refused = false;
    e->filter = find_filter(e->name, &refused);
    if (e->filter == nullptr) {
      fail_at(line, refused ? str_cat("the \"", e->name, "\" filter is not supported")
                            : str_cat("no filter named \"", e->name, "\""));
    }
    if (input) e->operands.push_back(std::move(input));
    if (is_op("(")) parse_call_args(*e);
    return done(std::move(e));
  }

  ExprPtr parse_test(ExprPtr input) {
    const int line = cur().line;
    next();  // is
    ExprPtr e = node(ExprKind::kTest, line);
    e->negated = skip_name("not");
    e->name = dotted_name();
    bool refused = false;
    e->test = find_test(e->name, &refused);
    if (e->test == nullptr) {
      fail_at(line, refused ? str_cat("the \"", e->name, "\" test is not supported")
                            : str_cat("no test named \"", e->name, "\""));
    }
    e->operands.push_back(std::move(input));
    if (is_op("(")) {
      parse_call_args(*e);
    } else if ((cur().type == TokenType::kName || cur().type == TokenType::kString ||
                cur().type == TokenType::kInteger || cur().type == TokenType::kFloat ||
                is_op("(") || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail_at(cur().line, "tests cannot be chained with 'is'");
      Guard guard(*this);
      Arg arg;
      arg.value = parse_postfix(parse_primary());
      e->args.push_back(std::move(arg));
    }
    return done(std::move(e));
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int recursion_ = 0;
  int loops_ = 0;
};

}  // namespace

Template parse_template(std::string_view source) {
  Template t;
  t.body = Parser(source).run();
  t.slots = analyze_frames(t.body);
  return t;
}

}  // namespace dsinf::trainer::jinja
