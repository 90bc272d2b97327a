// The parsed template: statements and expressions, as jinja2's parser builds
// them, each with its source line for error messages.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "trainer/data/chat_template/builtins.h"
#include "trainer/data/chat_template/value.h"

namespace dsinf::trainer::jinja {

enum class ExprKind : uint8_t {
  kConst,    // constant
  kName,     // name
  kList,     // operands: items
  kTuple,    // operands: items
  kDict,     // operands: key, value, key, value, ...
  kAttr,     // operands[0].name
  kItem,     // operands[0][operands[1]]
  kSlice,    // operands[0][operands[1]:operands[2]:operands[3]], each may be null
  kCall,     // operands[0](args)
  kFilter,   // operands[0] | name(args); operands empty inside {% set x | f %}
  kTest,     // operands[0] is [not] name(args)
  kNot,      // not operands[0]
  kNeg,      // -operands[0]
  kPos,      // +operands[0]
  kBinary,   // operands[0] name operands[1]: + - * / // % **
  kConcat,   // operands joined with ~
  kCompare,  // operands[0] ops[0] operands[1] ops[1] ... (chained, as Python)
  kAnd,
  kOr,
  kCond,  // operands[0] if operands[1] else operands[2] (null: Undefined)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Arg {
  std::string keyword;  // empty for a positional argument
  ExprPtr value;
};

struct Expr {
  ExprKind kind;
  int line = 0;
  int depth = 1;  // of the tree below, bounded so evaluation cannot overflow the stack
  std::string name;
  Value constant;
  std::vector<ExprPtr> operands;
  std::vector<std::string> ops;
  std::vector<Arg> args;
  bool negated = false;
  FilterFn filter = nullptr;
  TestFn test = nullptr;
};

// A variable a frame (the template, a loop iteration, a loop's filter or
// else, a set block's or generation block's body) holds, and how it starts
// on entering the frame -- jinja2's idtracking, which scoping.cc replicates:
// names resolve statically, so a name the enclosing frame assigns anywhere
// is that frame's variable even where read before the assignment.
struct Slot {
  enum class Load : uint8_t {
    kParam,      // a loop target or `loop`, bound by the loop
    kResolve,    // from the caller's variables (or the globals)
    kAlias,      // a copy of the enclosing frames' variable of that name
    kUndefined,  // undefined until assigned
  };
  std::string name;
  Load load;
};
using Slots = std::vector<Slot>;

enum class StmtKind : uint8_t {
  kText,      // text
  kOutput,    // {{ expr }}
  kIf,        // branches: (condition, body); a null condition is the else
  kFor,       // for targets in expr [if condition]: body [else: else_body]
  kSet,       // set targets = expr, or set targets[0].attribute = expr
  kSetBlock,  // set targets[0] [| filters] %}body{% endset
  kBreak,
  kContinue,
  kBody,  // a transparent block: {% generation %}body{% endgeneration %}
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Branch {
  ExprPtr condition;
  Body body;
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  std::vector<std::string> targets;
  bool unpack = false;    // targets are a tuple, even of one name
  std::string attribute;  // kSet on a namespace
  ExprPtr condition;
  std::vector<Branch> branches;
  std::vector<ExprPtr> filters;  // kSetBlock
  Body body, else_body;
  Slots body_slots, test_slots, else_slots;  // the frames of kFor, kSetBlock, kBody
};

struct Template {
  Body body;
  Slots slots;  // the template's own frame
};

}  // namespace dsinf::trainer::jinja
