#include "trainer/data/chat_template/scoping.h"

#include <algorithm>
#include <string>
#include <vector>

namespace dsinf::trainer::jinja {

namespace {

using Load = Slot::Load;

// jinja2's Symbols: a frame's own references (with how each starts) and the
// names it assigns, over its enclosing frames'.
struct Symbols {
  const Symbols* parent = nullptr;
  Slots refs;
  std::vector<std::string> stores;

  Slot* own(const std::string& name) {
    for (Slot& s : refs) {
      if (s.name == name) return &s;
    }
    return nullptr;
  }
  bool find_ref(const std::string& name) const {
    for (const Slot& s : refs) {
      if (s.name == name) return true;
    }
    return parent != nullptr && parent->find_ref(name);
  }
  void add_store(const std::string& name) {
    if (std::find(stores.begin(), stores.end(), name) == stores.end()) stores.push_back(name);
  }
  void define(const std::string& name, Load load) {
    if (Slot* s = own(name)) {
      s->load = load;
    } else {
      refs.push_back(Slot{name, load});
    }
  }
  void store(const std::string& name) {
    add_store(name);
    if (own(name) != nullptr) return;
    define(name, parent != nullptr && parent->find_ref(name) ? Load::kAlias : Load::kUndefined);
  }
  void declare_parameter(const std::string& name) {
    add_store(name);
    define(name, Load::kParam);
  }
  void load(const std::string& name) {
    if (!find_ref(name)) define(name, Load::kResolve);
  }
  // After an if: what a branch assigns starts as the caller's (or the
  // enclosing frame's) value, since the branch may not run.
  void branch_update(const std::vector<Symbols>& branches) {
    std::vector<std::string> new_stores;
    for (const Symbols& b : branches) {
      for (const std::string& name : b.stores) {
        if (std::find(stores.begin(), stores.end(), name) == stores.end() &&
            std::find(new_stores.begin(), new_stores.end(), name) == new_stores.end()) {
          new_stores.push_back(name);
        }
      }
    }
    for (const Symbols& b : branches) {
      for (const Slot& s : b.refs) define(s.name, s.load);
      for (const std::string& name : b.stores) add_store(name);
    }
    for (const std::string& name : new_stores) {
      define(name, parent != nullptr && parent->find_ref(name) ? Load::kAlias : Load::kResolve);
    }
  }
};

void load_names(const Expr* e, Symbols& symbols) {
  if (e == nullptr) return;
  if (e->kind == ExprKind::kName) symbols.load(e->name);
  for (const ExprPtr& op : e->operands) load_names(op.get(), symbols);
  for (const Arg& arg : e->args) load_names(arg.value.get(), symbols);
}

// jinja2's FrameSymbolVisitor over one frame; nested frames (loops, set
// blocks, generation blocks) are collected and analyzed once this frame is
// complete, against its final symbols, as jinja2's compiler does.
class FrameVisitor {
 public:
  explicit FrameVisitor(Symbols& symbols) : symbols_(&symbols) {}

  void visit(Body& body) {
    for (auto& s : body) visit(*s);
  }

  const std::vector<Stmt*>& nested() const { return nested_; }

 private:
  void visit(Stmt& s) {
    switch (s.kind) {
      case StmtKind::kOutput:
        load_names(s.expr.get(), *symbols_);
        break;
      case StmtKind::kIf:
        visit_if(s);
        break;
      case StmtKind::kFor:
        load_names(s.expr.get(), *symbols_);
        nested_.push_back(&s);
        break;
      case StmtKind::kSet:
        load_names(s.expr.get(), *symbols_);
        if (!s.attribute.empty()) {
          symbols_->load(s.targets[0]);
        } else {
          for (const std::string& name : s.targets) symbols_->store(name);
        }
        break;
      case StmtKind::kSetBlock:
        symbols_->store(s.targets[0]);
        nested_.push_back(&s);
        break;
      case StmtKind::kBody:
        nested_.push_back(&s);
        break;
      default:
        break;
    }
  }

  // jinja2's If(test, body, elif_=[If, ...], else_): the body, the elifs
  // (one after another) and the else are each visited in a copy of the
  // frame's symbols, then merged.
  void visit_if(Stmt& s) {
    load_names(s.branches[0].condition.get(), *symbols_);
    Symbols* original = symbols_;
    std::vector<Symbols> branches(3, *original);
    symbols_ = &branches[0];
    visit(s.branches[0].body);
    for (size_t i = 1; i < s.branches.size(); ++i) {
      Branch& b = s.branches[i];
      if (b.condition) {
        load_names(b.condition.get(), branches[1]);
        std::vector<Symbols> inner(1, branches[1]);
        symbols_ = &inner[0];
        visit(b.body);
        branches[1].branch_update(inner);
      } else {
        symbols_ = &branches[2];
        visit(b.body);
      }
    }
    symbols_ = original;
    original->branch_update(branches);
  }

  Symbols* symbols_;
  std::vector<Stmt*> nested_;
};

Slots analyze(Body& body, Symbols& symbols);

void analyze_nested(Stmt& s, const Symbols& parent) {
  if (s.kind == StmtKind::kFor) {
    Symbols body{&parent, {}, {}};
    for (const std::string& name : s.targets) body.declare_parameter(name);
    body.declare_parameter("loop");
    s.body_slots = analyze(s.body, body);
    if (s.condition) {
      Symbols test{&parent, {}, {}};
      for (const std::string& name : s.targets) test.declare_parameter(name);
      load_names(s.condition.get(), test);
      s.test_slots = test.refs;
    }
    Symbols otherwise{&parent, {}, {}};
    s.else_slots = analyze(s.else_body, otherwise);
    return;
  }
  Symbols body{&parent, {}, {}};  // a set block's or generation block's body
  for (const ExprPtr& filter : s.filters) load_names(filter.get(), body);
  s.body_slots = analyze(s.body, body);
}

Slots analyze(Body& body, Symbols& symbols) {
  FrameVisitor visitor(symbols);
  visitor.visit(body);
  for (Stmt* nested : visitor.nested()) analyze_nested(*nested, symbols);
  return symbols.refs;
}

}  // namespace

Slots analyze_frames(Body& body) {
  Symbols root;
  return analyze(body, root);
}

}  // namespace dsinf::trainer::jinja
