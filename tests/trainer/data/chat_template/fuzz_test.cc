// Random templates: fragments of Jinja syntax strung together, mutations of
// real templates, and random bytes. Whatever they are, parsing and
// rendering must return a status -- ok, kInvalidArgument or (for the
// limits) kResourceExhausted -- without crashing or hanging. The seeds are
// fixed, so a failure reproduces.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "trainer/data/chat_template/chat_template.h"
#include "trainer/data/chat_template/program.h"

namespace dsinf::trainer {
namespace {

const char* const kFragments[] = {
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "{{-",
    "-}}",
    "{%-",
    "-%}",
    "{%+",
    "+%}",
    " ",
    "  ",
    "\n",
    "\t",
    "\r\n",
    "if ",
    "elif ",
    "else",
    "endif",
    "for ",
    " in ",
    "endfor",
    "set ",
    "endset",
    "raw",
    "endraw",
    "break",
    "continue",
    "generation",
    "endgeneration",
    "print ",
    "macro",
    "x",
    "m",
    "messages",
    "message",
    "loop",
    "ns",
    "namespace(",
    "range(",
    "raise_exception(",
    "strftime_now('%Y')",
    ".",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    ",",
    ":",
    "=",
    "==",
    "!=",
    "<",
    ">=",
    "|",
    "trim",
    "length",
    "tojson",
    "tojson(indent=2)",
    "items()",
    "upper",
    "join(',')",
    "selectattr('role', 'equalto', 'user')",
    "map(attribute='content')",
    "list",
    "default(1)",
    "replace('a', 'b')",
    "format(1)",
    "indent(2)",
    "sort",
    "unique",
    "first",
    "last",
    "int",
    "'s'",
    "\"q\"",
    "'\\n'",
    "'\\x41'",
    "'\\u00e9'",
    "'unterminated",
    "1",
    "0",
    "-1",
    "2.5",
    "1e3",
    "0x10",
    "~",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "not ",
    " and ",
    " or ",
    " is ",
    "defined",
    "none",
    "true",
    "string",
    "odd",
    "divisibleby 2",
    " if ",
    " else ",
    "content",
    "role",
    "[::-1]",
    "[1:]",
    "[0]",
    ".strip()",
    ".split()",
    ".startswith('a')",
    "\\",
    "é",
    "日",
    "\xff",
    "\xc3",
    std::string("\0", 1).c_str(),
    "%",
    "#",
    "-",
};

constexpr char kContext[] = R"json({
  "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": " hi\n"},
               {"role": "assistant", "content": "<think>r</think>a", "tool_calls": [
                  {"function": {"name": "f", "arguments": {"a": [1, 2.5, null, true]}}}]}],
  "x": "X", "m": {"a": 1, "b": [1, 2], "items": "shadow"}, "add_generation_prompt": true,
  "bos_token": "<s>", "eos_token": "</s>", "tools": null
})json";

void expect_status_only(const std::string& source, const nlohmann::json& context) {
  jinja::RenderOptions options;
  options.max_steps = 20'000;
  options.max_output_bytes = 1 << 20;
  absl::StatusOr<std::shared_ptr<const ChatTemplate::Program>> program =
      jinja::compile(source, "fuzz");
  if (!program.ok()) {
    EXPECT_EQ(program.status().code(), absl::StatusCode::kInvalidArgument)
        << program.status() << "\nsource: " << source;
    return;
  }
  absl::StatusOr<std::string> out = jinja::render_program(**program, context, options);
  if (!out.ok()) {
    EXPECT_TRUE(out.status().code() == absl::StatusCode::kInvalidArgument ||
                out.status().code() == absl::StatusCode::kResourceExhausted)
        << out.status() << "\nsource: " << source;
  }
}

TEST(ChatTemplateFuzz, RandomFragments) {
  std::mt19937 rng(20240726);
  const nlohmann::json context = nlohmann::json::parse(kContext);
  std::uniform_int_distribution<size_t> pick(0, std::size(kFragments) - 1);
  std::uniform_int_distribution<int> length(1, 40);
  for (int i = 0; i < 20000; ++i) {
    std::string source;
    const int n = length(rng);
    for (int k = 0; k < n; ++k) source += kFragments[pick(rng)];
    expect_status_only(source, context);
  }
}

// Well-formed templates: a tag or an expression in each slot, nested.
class TemplateGrammar {
 public:
  explicit TemplateGrammar(uint32_t seed) : rng_(seed) {}

  std::string body(int depth) {
    std::string out;
    for (int n = below(3) + 1; n > 0; --n) out += statement(depth);
    return out;
  }

 private:
  int below(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  template <size_t N>
  const char* one_of(const char* const (&options)[N]) {
    return options[below(static_cast<int>(N))];
  }

  std::string expr(int depth) {
    static const char* const kAtoms[] = {
        "x",         "m",    "messages", "loop",       "ns.v",    "1",
        "'a b'",     "none", "[1, 2]",   "{'k': 'v'}", "m.b",     "messages[0]",
        "undefined", "true", "2.5",      "(1, 'x')",   "range(3)"};
    static const char* const kPost[] = {"",
                                        "|length",
                                        "|tojson",
                                        "|trim",
                                        "|list",
                                        "|first",
                                        "|string",
                                        " is defined",
                                        " is string",
                                        ".items()",
                                        "['role']",
                                        ".content",
                                        "|default('d')",
                                        "[1:]",
                                        "|map(attribute='role')|list",
                                        "|join(', ')",
                                        "|upper"};
    static const char* const kOps[] = {" + ",  " ~ ", " == ", " in ", " and ",
                                       " or ", " * ", " // ", " % ",  " < "};
    std::string e = std::string(one_of(kAtoms)) + one_of(kPost);
    if (depth < 3 && below(3) == 0) e = "(" + e + one_of(kOps) + expr(depth + 1) + ")";
    if (depth < 3 && below(6) == 0)
      e = "(" + e + " if " + expr(depth + 1) + " else " + expr(depth + 1) + ")";
    if (below(8) == 0) e = "not " + e;
    return e;
  }

  std::string statement(int depth) {
    static const char* const kWs[] = {"", " ", "\n", "  \n", "\t"};
    static const char* const kOpen[] = {"{%", "{%-", "{%+"};
    static const char* const kClose[] = {"%}", "-%}", "+%}"};
    const auto tag = [&](const std::string& inside) {
      return std::string(one_of(kWs)) + one_of(kOpen) + " " + inside + " " + one_of(kClose) +
             one_of(kWs);
    };
    const int kind = depth > 3 ? 0 : below(8);
    switch (kind) {
      case 1:
        return tag("if " + expr(0)) + body(depth + 1) +
               (below(2) ? tag("elif " + expr(0)) + body(depth + 1) : "") +
               (below(2) ? tag("else") + body(depth + 1) : "") + tag("endif");
      case 2:
        return tag("for v in " + expr(0) + (below(4) == 0 ? " if " + expr(0) : "")) +
               body(depth + 1) + (below(4) == 0 ? tag("break") : "") +
               (below(3) == 0 ? tag("else") + body(depth + 1) : "") + tag("endfor");
      case 3:
        return tag("set " + std::string(below(2) ? "x" : "ns.v") + " = " + expr(0));
      case 4:
        return tag("set y") + body(depth + 1) + tag("endset");
      case 5:
        return std::string(one_of(kWs)) + "{# c #}" + one_of(kWs);
      default:
        return std::string(one_of(kWs)) + (below(2) ? "{{ " : "{{- ") + expr(0) +
               (below(2) ? " }}" : " -}}") + one_of(kWs);
    }
  }

  std::mt19937 rng_;
};

TEST(ChatTemplateFuzz, RandomWellFormedTemplates) {
  const nlohmann::json context = nlohmann::json::parse(kContext);
  TemplateGrammar grammar(7);
  for (int i = 0; i < 3000; ++i) {
    expect_status_only("{% set ns = namespace(v=1) %}" + grammar.body(0), context);
  }
}

std::vector<std::string> real_templates() {
  std::vector<std::string> out;
  const std::filesystem::path root =
      std::filesystem::path(DSINF_SOURCE_DIR) / ".fixtures/tokenizers";
  for (const char* family : {"llama3", "qwen3", "gemma3", "deepseek_v3"}) {
    absl::StatusOr<TokenizerConfig> config = read_tokenizer_config((root / family).string());
    if (config.ok() && !config->chat_template.empty()) out.push_back(config->chat_template);
  }
  // Always one, without the fixtures.
  out.push_back(
      "{%- set ns = namespace(sys='') %}{%- for m in messages %}{%- if m.role == 'system' %}"
      "{%- set ns.sys = m.content %}{%- elif m.role == 'user' %}{{ bos_token }}[INST] "
      "{{ (ns.sys ~ '\\n\\n' if loop.first and ns.sys) ~ m.content|trim }} [/INST]"
      "{%- else %} {{ m.content }}{{ eos_token }}{%- endif %}{%- endfor %}"
      "{%- if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}");
  return out;
}

TEST(ChatTemplateFuzz, MutatedRealTemplates) {
  const nlohmann::json context = nlohmann::json::parse(kContext);
  std::mt19937 rng(42);
  const std::vector<std::string> templates = real_templates();
  for (int i = 0; i < 4000; ++i) {
    std::string source = templates[rng() % templates.size()];
    for (int edits = static_cast<int>(rng() % 4) + 1; edits > 0 && !source.empty(); --edits) {
      const size_t at = rng() % source.size();
      const size_t span = std::min<size_t>(rng() % 24 + 1, source.size() - at);
      switch (rng() % 4) {
        case 0:
          source.erase(at, span);
          break;  // delete
        case 1:
          source.insert(at, source.substr(at, span));
          break;  // duplicate
        case 2:
          source.insert(at, kFragments[rng() % std::size(kFragments)]);
          break;
        default:
          source[at] = static_cast<char>(rng() % 256);
          break;  // flip a byte
      }
    }
    expect_status_only(source, context);
  }
}

TEST(ChatTemplateFuzz, RandomBytesAndHostileContexts) {
  std::mt19937 rng(99);
  const std::string alphabet = "{}%#-+ \n'\"()[]|.,:=~*/x1\\\xff\xc3";
  for (int i = 0; i < 5000; ++i) {
    std::string source;
    for (int n = static_cast<int>(rng() % 64); n > 0; --n) {
      source.push_back(rng() % 4 == 0 ? static_cast<char>(rng() % 256)
                                      : alphabet[rng() % alphabet.size()]);
    }
    expect_status_only(source, nlohmann::json::parse(kContext));
  }
  // Invalid UTF-8 and deep nesting in the context.
  nlohmann::json deep = "leaf";
  for (int i = 0; i < 500; ++i) deep = nlohmann::json::array({deep});
  const nlohmann::json hostile = {{"x", std::string("\xff\xfe\xc3(", 4)}, {"deep", deep}};
  for (const char* source : {"{{ x }}{{ x|upper }}{{ x|tojson }}{{ x[1:] }}{{ x|length }}",
                             "{{ deep }}", "{{ deep|tojson }}"}) {
    expect_status_only(source, hostile);
  }
}

}  // namespace
}  // namespace dsinf::trainer
