// The template's tokens, as jinja2's lexer makes them with trim_blocks and
// lstrip_blocks on (transformers' settings): text between tags already has
// the whitespace control of `-`, `+`, trim_blocks and lstrip_blocks applied;
// comments are gone; {% raw %} blocks are text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsinf::trainer::jinja {

enum class TokenType : uint8_t {
  kText,
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,
  kString,  // value: the decoded literal
  kInteger,
  kFloat,
  kOperator,  // value: the operator, e.g. "//", "|", "("
  kEnd,
};

struct Token {
  TokenType type;
  std::string value;
  int line = 1;
  int64_t integer = 0;
  double number = 0;
};

// Throws TemplateError naming the line for what jinja2 cannot lex.
std::vector<Token> tokenize(std::string_view source);

}  // namespace dsinf::trainer::jinja
