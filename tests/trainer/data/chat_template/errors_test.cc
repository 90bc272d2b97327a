// Failures: what the parser refuses (naming the line and the construct),
// what fails while rendering (naming the line), raise_exception, and the
// limits that keep any template from hanging or exhausting memory. Each
// asserts the exact status code and message.
#include <gtest/gtest.h>

#include <string>

#include "nlohmann/json.hpp"
#include "trainer/data/chat_template/chat_template.h"
#include "trainer/data/chat_template/program.h"

namespace dsinf::trainer {
namespace {

absl::Status parse_status(const std::string& source) {
  return ChatTemplate::parse(source, "/m/tokenizer_config.json").status();
}

absl::Status render_status(const std::string& source, const nlohmann::json& context = {}) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::parse(source, "/m/tokenizer_config.json");
  if (!t.ok()) return t.status();
  return t->render(context).status();
}

void expect_error(const absl::Status& status, absl::StatusCode code, const std::string& message) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_EQ(std::string(status.message()), message);
}

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kExhausted = absl::StatusCode::kResourceExhausted;
const std::string kAt = "/m/tokenizer_config.json: chat_template line ";

TEST(ChatTemplateErrors, UnsupportedTagsAreRefusedAtParseTime) {
  expect_error(parse_status("a\nb\n{% macro m() %}x{% endmacro %}"), kInvalid,
               kAt + "3: the \"macro\" tag is not supported");
  for (const char* tag :
       {"call", "filter", "with", "include", "import", "from", "extends", "block", "autoescape"}) {
    SCOPED_TRACE(tag);
    expect_error(parse_status(std::string("{% ") + tag + " x %}"), kInvalid,
                 kAt + "1: the \"" + tag + "\" tag is not supported");
  }
  // Refused even where no input would reach it: nothing renders approximately.
  expect_error(parse_status("{% if false %}\n{% include 'x' %}{% endif %}"), kInvalid,
               kAt + "2: the \"include\" tag is not supported");
  expect_error(parse_status("{% do x.append(1) %}"), kInvalid, kAt + "1: unknown tag \"do\"");
  expect_error(parse_status("{% for x in y recursive %}{% endfor %}"), kInvalid,
               kAt + "1: recursive loops are not supported");
}

TEST(ChatTemplateErrors, UnknownOrRefusedFiltersAndTestsFailAtParseTime) {
  expect_error(parse_status("\n{{ x|bogus }}"), kInvalid, kAt + "2: no filter named \"bogus\"");
  expect_error(parse_status("{{ x|batch(2) }}"), kInvalid,
               kAt + "1: the \"batch\" filter is not supported");
  expect_error(parse_status("{{ x is bogus }}"), kInvalid, kAt + "1: no test named \"bogus\"");
}

TEST(ChatTemplateErrors, SyntaxErrorsNameTheirLine) {
  expect_error(parse_status("ok\n{% if x %}\nno end"), kInvalid,
               kAt + "2: unexpected end of template: this tag needs its 'endif'");
  expect_error(parse_status("{% for x in y %}{% endif %}"), kInvalid,
               kAt + "1: unexpected \"endif\" tag");
  expect_error(parse_status("{% endfor %}"), kInvalid, kAt + "1: unexpected \"endfor\" tag");
  expect_error(parse_status("\n\n{{ x + }}"), kInvalid,
               kAt + "3: unexpected end of print statement");
  expect_error(parse_status("{{ 'open }}"), kInvalid, kAt + "1: unterminated string literal");
  expect_error(parse_status("{{ (1 ]"), kInvalid, kAt + "1: unexpected ']', expected ')'");
  expect_error(parse_status("{{ x"), kInvalid,
               kAt + "1: unexpected end of template: '}}' expected");
  expect_error(parse_status("{# never closed"), kInvalid, kAt + "1: missing end of comment tag");
  expect_error(parse_status("{{ a ! b }}"), kInvalid, kAt + "1: unexpected character '!'");
  expect_error(parse_status("{% break %}"), kInvalid, kAt + "1: 'break' outside of a loop");
  expect_error(parse_status("{% set true = 1 %}"), kInvalid, kAt + "1: cannot assign to true");
  expect_error(parse_status("{{ x is string is string }}"), kInvalid,
               kAt + "1: tests cannot be chained with 'is'");
  // Found by the fuzzer: the slice's target was left null inside the tuple (a crash).
  expect_error(parse_status("{%for m in s[:,1]%}{%endfor%}"), kInvalid,
               kAt + "1: a slice inside a tuple subscript ('[a:b, c]') is not supported");
  expect_error(parse_status("{{ s[1, 2:] }}"), kInvalid,
               kAt + "1: a slice inside a tuple subscript ('[a:b, c]') is not supported");
}

TEST(ChatTemplateErrors, RaiseExceptionGivesItsMessage) {
  expect_error(
      render_status("line 1\n{% if x %}{{ raise_exception('Only user and assistant roles!') }}"
                    "{% endif %}",
                    {{"x", true}}),
      kInvalid, kAt + "2: Only user and assistant roles!");
}

TEST(ChatTemplateErrors, EvaluationErrorsNameTheirLine) {
  expect_error(render_status("{{ 1 }}\n\n{{ x.y }}"), kInvalid, kAt + "3: 'x' is undefined");
  expect_error(render_status("{{ m.a.b }}", {{"m", nlohmann::json::object()}}), kInvalid,
               kAt + "1: 'dict object' has no attribute 'a'");
  expect_error(render_status("{{ 'a' + 1 }}"), kInvalid,
               kAt + "1: can only concatenate str (not \"int\") to str");
  expect_error(render_status("{{ none < 1 }}"), kInvalid,
               kAt + "1: '<' not supported between instances of 'NoneType' and 'int'");
  expect_error(render_status("{{ 1 // 0 }}"), kInvalid,
               kAt + "1: integer division or modulo by zero");
  expect_error(render_status("{{ none|length }}"), kInvalid,
               kAt + "1: object of type 'NoneType' has no len()");
  expect_error(render_status("{{ x|tojson }}"), kInvalid,
               kAt + "1: Object of type Undefined is not JSON serializable");
  expect_error(render_status("{% for a, b in [[1, 2, 3]] %}{% endfor %}"), kInvalid,
               kAt + "1: too many values to unpack (expected 2)");
  expect_error(render_status("{% for x in 3 %}{% endfor %}"), kInvalid,
               kAt + "1: 'int' object is not iterable");
  expect_error(render_status("{% set x = 1 %}{% set x.y = 2 %}"), kInvalid,
               kAt + "1: cannot assign attribute on non-namespace object");
  expect_error(render_status("{{ 2 ** 70 }}"), kInvalid,
               kAt +
                   "1: integer overflow: integers are limited to 64 bits here (Python's are "
                   "unbounded)");
  expect_error(render_status("{{ 'x'.split('') }}"), kInvalid, kAt + "1: empty separator");
  expect_error(render_status("{{ [1][::0] }}"), kInvalid, kAt + "1: slice step cannot be zero");
}

TEST(ChatTemplateErrors, TheSandboxRefusesMutation) {
  // ImmutableSandboxedEnvironment: list.append and dict.update are unsafe;
  // merely naming them gives an Undefined that fails when called.
  EXPECT_TRUE(render_status("{{ l.append }}", {{"l", nlohmann::json::array()}}).ok());
  expect_error(render_status("{{ l.append(1) }}", {{"l", nlohmann::json::array()}}), kInvalid,
               kAt + "1: access to attribute 'append' of 'list' object is unsafe.");
  expect_error(render_status("{{ d.update({}) }}", {{"d", nlohmann::json::object()}}), kInvalid,
               kAt + "1: access to attribute 'update' of 'dict' object is unsafe.");
}

TEST(ChatTemplateErrors, ContextMustBeAnObject) {
  expect_error(render_status("x", nlohmann::json::array()), kInvalid,
               "/m/tokenizer_config.json: chat_template: the context must be a JSON object of "
               "variables");
}

TEST(ChatTemplateErrors, LimitsStopRunawayTemplates) {
  // Output beyond the limit.
  auto program = jinja::compile("{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}", "big");
  ASSERT_TRUE(program.ok());
  jinja::RenderOptions small;
  small.max_output_bytes = 100'000;
  expect_error(jinja::render_program(**program, {}, small).status(), kExhausted,
               "big: chat_template line 1: the output exceeds 100000 bytes");
  // Steps: nested loops that would run 10^10 iterations.
  program = jinja::compile(
      "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "slow");
  ASSERT_TRUE(program.ok());
  jinja::RenderOptions few;
  few.max_steps = 100'000;
  expect_error(jinja::render_program(**program, {}, few).status(), kExhausted,
               "slow: chat_template line 1: the template takes more than 100000 evaluation steps");
  // jinja2's sandbox caps range() at 100000 items.
  expect_error(render_status("{{ range(100001)|length }}"), kInvalid,
               kAt + "1: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  // One string beyond the limit.
  expect_error(render_status("{{ 'x' * 100000000 }}"), kExhausted,
               kAt + "1: a repeated string would exceed the output limit");
  // Values nested without end.
  expect_error(render_status("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}"
                             "{% set ns.x = [ns.x] %}{% endfor %}"),
               kExhausted, kAt + "1: values nest deeper than 200 levels");
  // Expressions nested without end: refused when parsed, not by a stack overflow.
  expect_error(parse_status(std::string("{{ ") + std::string(5000, '(') + "1" +
                            std::string(5000, ')') + " }}"),
               kInvalid, kAt + "1: the template nests expressions or statements too deeply");
  std::string chain = "{{ 1";
  for (int i = 0; i < 5000; ++i) chain += " + 1";
  expect_error(parse_status(chain + " }}"), kInvalid, kAt + "1: the expression nests too deeply");
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  EXPECT_EQ(parse_status(ifs).code(), kInvalid);
}

TEST(ChatTemplateErrors, NamespacesCannotHoldNamespaces) {
  // jinja2 allows it (and prints the cycle as {...}); refused here so that no
  // value can reach itself.
  expect_error(render_status("{% set ns = namespace() %}{% set ns.me = ns %}"), kInvalid,
               kAt + "1: a namespace cannot hold a namespace here");
}

}  // namespace
}  // namespace dsinf::trainer
