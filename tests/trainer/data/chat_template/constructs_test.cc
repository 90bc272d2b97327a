// Each construct of the supported subset, rendered and compared with the
// output Python's jinja2 gives in transformers' environment. The expected
// strings were produced by jinja2_render.py (jinja2 3.1.6) and are kept
// here by hand, so this test needs neither Python nor node.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "trainer/data/chat_template/chat_template.h"
#include "trainer/data/chat_template/program.h"

namespace dsinf::trainer {
namespace {

struct Case {
  const char* name;
  const char* source;
  const char* context;  // JSON
  const char* expected;
};

// clang-format off
const Case kWhitespace[] = {
    {"trim_blocks drops the newline after a block tag",
     "{% if true %}\nyes\n{% endif %}\nend",
     "{}",
     "yes\nend"},
    {"lstrip_blocks drops indentation before a block tag",
     "a\n    {% if true %}\n    b\n    {% endif %}\nc",
     "{}",
     "a\n    b\nc"},
    {"lstrip_blocks leaves expressions alone",
     "a\n    {{ 'b' }}\n",
     "{}",
     "a\n    b"},
    {"minus strips all whitespace on its side",
     "a  \n {{- 'b' -}} \n\t c",
     "{}",
     "abc"},
    {"minus on block tags",
     "x\n\n  {%- if true -%}\n\n  y  {%- endif %}  z",
     "{}",
     "xy  z"},
    {"plus keeps indentation despite lstrip_blocks",
     "a\n  {%+ if true %}b{% endif %}",
     "{}",
     "a\n  b"},
    {"plus on the closing tag keeps the newline",
     "{% if true +%}\nb{% endif %}",
     "{}",
     "\nb"},
    {"comments vanish, with trim and lstrip",
     "a\n  {# note #}\nb {#- tight -#} c",
     "{}",
     "a\nbc"},
    {"raw blocks are text",
     "{% raw %}{{ not evaluated }} {% if %}{% endraw %}!",
     "{}",
     "{{ not evaluated }} {% if %}!"},
    {"CRLF newlines become LF; one trailing newline goes",
     "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n",
     "{}",
     "a\nb\n"},
    {"only the last trailing newline goes",
     "a\n\n",
     "{}",
     "a\n"},
    {"unicode whitespace counts for minus",
     "a　 {{- 'b' }}",
     "{}",
     "ab"},
};

const Case kLoops[] = {
    {"loop variables",
     "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
     "{}",
     "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;"},
    {"previtem, nextitem, cycle",
     "{% for x in [1, 2, 3] %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }} {{ loop.cycle('a', 'b') }}|{% endfor %}",
     "{}",
     "<1>2 a|1<2>3 b|2<3> a|"},
    {"a filter counts only kept items",
     "{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}:{{ m.content }}{{ ',' if not loop.last }}{% endfor %}",
     "{\"messages\": [{\"content\": \"S\", \"role\": \"system\"}, {\"content\": \"U1\", \"role\": \"user\"}, {\"content\": \"A1\", \"role\": \"assistant\"}, {\"content\": \"U2\", \"role\": \"user\"}]}",
     "1/3:U1,2/3:A1,3/3:U2"},
    {"else runs for an empty loop",
     "{% for x in [] %}x{% else %}empty{% endfor %}{% for x in undefined_name %}x{% else %}none{% endfor %}",
     "{}",
     "emptynone"},
    {"items() unpacks pairs",
     "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
     "{\"d\": {\"a\": 1, \"b\": [2]}}",
     "a=1;b=[2];"},
    {"dicts iterate over keys, strings over characters",
     "{% for k in d %}{{ k }}{% endfor %}|{% for c in 'héé' %}[{{ c }}]{% endfor %}",
     "{\"d\": {\"x\": 1, \"y\": 2}}",
     "xy|[h][é][é]"},
    {"break and continue",
     "{% for i in range(10) %}{% if i is odd %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}{{ i }}{% endfor %}",
     "{}",
     "0246"},
    {"nested loops have their own loop",
     "{% for i in [1, 2] %}{% for j in 'ab' %}{{ loop.index }}{{ j }}{% endfor %}/{{ loop.index }} {% endfor %}",
     "{}",
     "1a2b/1 1a2b/2 "},
    {"messages[::-1] with an index",
     "{% for m in messages[::-1] %}{{ (messages|length - 1) - loop.index0 }}{{ m.role[0] }}{% endfor %}",
     "{\"messages\": [{\"content\": \"S\", \"role\": \"system\"}, {\"content\": \"U1\", \"role\": \"user\"}, {\"content\": \"A1\", \"role\": \"assistant\"}, {\"content\": \"U2\", \"role\": \"user\"}]}",
     "3u2a1u0s"},
    {"loop.changed",
     "{% for x in [1, 1, 2, 1] %}{{ loop.changed(x) }} {% endfor %}",
     "{}",
     "True False True True "},
    {"range forms",
     "{{ range(3)|list }}{{ range(1, 7, 2)|list }}{{ range(5, 0, -2)|list }}",
     "{}",
     "[0, 1, 2][1, 3, 5][5, 3, 1]"},
};

const Case kConditionalsAndSet[] = {
    {"if, elif, else",
     "{% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %} {% endfor %}",
     "{}",
     "one two many "},
    {"inline if, with and without else",
     "{{ 'a' if x else 'b' }}{{ 'c' if not x }}{{ 'd' if x }}",
     "{\"x\": true}",
     "ad"},
    {"and/or return an operand",
     "{{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ '' and 'b' }}|{{ none or [] }}",
     "{}",
     "x|b||[]"},
    {"set inside a loop does not outlive it",
     "{% set x = 0 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}|{{ x }}",
     "{}",
     "12|0"},
    {"namespace carries state out of a loop",
     "{% set ns = namespace(total=0, names=[]) %}{% for m in messages %}{% set ns.total = ns.total + 1 %}{% set ns.names = ns.names + [m.role] %}{% endfor %}{{ ns.total }} {{ ns.names|join(',') }}",
     "{\"messages\": [{\"content\": \"S\", \"role\": \"system\"}, {\"content\": \"U1\", \"role\": \"user\"}, {\"content\": \"A1\", \"role\": \"assistant\"}, {\"content\": \"U2\", \"role\": \"user\"}]}",
     "4 system,user,assistant,user"},
    {"set in an if block is visible after it",
     "{% if true %}{% set y = 'set' %}{% endif %}{{ y }}",
     "{}",
     "set"},
    {"a later top-level set makes the loop's read undefined (jinja2 scoping)",
     "{% for i in [1] %}[{{ x }}]{% endfor %}{% set x = 1 %}[{{ x }}]",
     "{\"x\": \"caller\"}",
     "[][1]"},
    {"read before set in the same frame sees the caller's value",
     "{{ x }}{% set x = x ~ '!' %}{{ x }}",
     "{\"x\": \"caller\"}",
     "callercaller!"},
    {"tuple assignment",
     "{% set a, b = 1, 'two' %}{{ a }}{{ b }}",
     "{}",
     "1two"},
    {"block set, with a filter",
     "{% set x %}Hello {{ name }}{% endset %}{% set y | upper %}shout{% endset %}{{ x }}/{{ y }}",
     "{\"name\": \"you\"}",
     "Hello you/SHOUT"},
    {"defined and undefined",
     "{{ a is defined }}{{ b is defined }}{{ b is undefined }}{{ d.missing is defined }}{{ none is none }}",
     "{\"a\": 1, \"d\": {}}",
     "TrueFalseTrueFalseTrue"},
    {"deepseek's 'not x is defined' idiom",
     "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ add_generation_prompt }}",
     "{}",
     "False"},
    {"generation blocks render their body; sets inside stay inside",
     "{% generation %}{% set g = 1 %}[{{ g }}]{% endgeneration %}[{{ g }}]",
     "{}",
     "[1][]"},
};

const Case kExpressions[] = {
    {"string literals and escapes",
     "{{ 'a\\'b' }}|{{ \"q\\\"\" }}|{{ 'tab\\tnl\\n' }}|{{ '\\u00e9\\x41\\101' }}|{{ 'keep\\d' }}|{{ 'x' 'y' }}",
     "{}",
     "a'b|q\"|tab\tnl\n|éAA|keep\\d|xy"},
    {"numbers",
     "{{ 1_000 }} {{ 0x1F }} {{ 0b11 }} {{ 1e3 }} {{ 2.50 }} {{ -0.0 }} {{ 1e16 }} {{ 1e-5 }} {{ 0.1 + 0.2 }}",
     "{}",
     "1000 31 3 1000.0 2.5 -0.0 1e+16 1e-05 0.30000000000000004"},
    {"arithmetic as Python's",
     "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 6 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ true + 1 }}",
     "{}",
     "3 -4 2 3.5 3.0 1024 0.5 3.0 2"},
    {"concatenation with ~ stringifies",
     "{{ 'n=' ~ 1 ~ none ~ true ~ [1] }}",
     "{}",
     "n=1NoneTrue[1]"},
    {"+ on strings and lists",
     "{{ 'a' + 'b' }}{{ [1] + [2, 3] }}{{ 'ab' * 2 }}{{ [0] * 3 }}",
     "{}",
     "ab[1, 2, 3]abab[0, 0, 0]"},
    {"comparisons, chained",
     "{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ 'a' < 'b' }}{{ [1, 2] < [1, 3] }}{{ 1 == 1.0 }}{{ 1 == true }}{{ none == none }}",
     "{}",
     "TrueFalseTrueTrueTrueTrueTrue"},
    {"in and not in",
     "{{ 'b' in 'abc' }}{{ 2 in [1, 2] }}{{ 'k' in d }}{{ 'z' not in d }}{{ '</think>' in s }}",
     "{\"d\": {\"k\": 1}, \"s\": \"a</think>b\"}",
     "TrueTrueTrueTrueTrue"},
    {"slicing",
     "{{ 'hello'[1:3] }}|{{ 'hello'[::-1] }}|{{ [1, 2, 3, 4][1:] }}|{{ [1, 2, 3, 4][:-1] }}|{{ [1, 2, 3, 4][::2] }}|{{ 'héllo'[1] }}|{{ [1, 2][-1] }}",
     "{}",
     "el|olleh|[2, 3, 4]|[1, 2, 3]|[1, 3]|é|2"},
    {"attribute and item access",
     "{{ m.role }}|{{ m['content'] }}|{{ l[0].k }}|{{ l.0.k }}|{{ m.missing }}|{{ l[5] }}",
     "{\"l\": [{\"k\": \"v\"}], \"m\": {\"content\": \"hi\", \"role\": \"user\"}}",
     "user|hi|v|v||"},
    {"a dict method shadows a key of that name in attribute access",
     "{{ d.items is defined }}|{{ d['items'] }}|{{ d.get('items') }}",
     "{\"d\": {\"items\": \"the key\"}}",
     "True|the key|the key"},
    {"Python's printing of values",
     "{{ true }}|{{ none }}|{{ [1, 'a', none, 1.5] }}|{{ {'k': [true]} }}|{{ (1,) }}|{{ 'it\\'s' }}|{{ ['it\\'s', '\\n'] }}",
     "{}",
     "True|None|[1, 'a', None, 1.5]|{'k': [True]}|(1,)|it's|[\"it's\", '\\n']"},
    {"tests",
     "{{ 1 is number }}{{ true is number }}{{ true is integer }}{{ 1.0 is float }}{{ 's' is string }}{{ {} is mapping }}{{ [] is sequence }}{{ 's' is iterable }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 1 is eq 1 }}{{ 2 is in [1, 2] }}{{ false is false }}{{ 0 is false }}",
     "{}",
     "TrueTrueFalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalse"},
    {"test with negation",
     "{{ x is not none }}{{ x is not string }}",
     "{\"x\": null}",
     "FalseTrue"},
    {"unary minus binds before filters' operands",
     "{{ -3|abs }}{{ -(3)|abs }}{{ not 1 in [1] }}",
     "{}",
     "33False"},
};

const Case kFilters[] = {
    {"trim, upper, lower, title, capitalize",
     "[{{ '  x y  '|trim }}][{{ 'aBc'|upper }}][{{ 'ÀBC'|lower }}][{{ \"it's a-b c(d\"|title }}][{{ 'hELLO'|capitalize }}][{{ 'xxhixx'|trim('x') }}]",
     "{}",
     "[x y][ABC][àbc][It's A-B C(D][Hello][hi]"},
    {"length and count",
     "{{ 'héllo'|length }}{{ [1, 2]|count }}{{ {'a': 1}|length }}{{ undefined_name|length }}",
     "{}",
     "5210"},
    {"default",
     "{{ missing|default('d') }}|{{ ''|default('d') }}|{{ ''|default('d', true) }}|{{ none|d('x') }}|{{ 0|d('x', boolean=true) }}",
     "{}",
     "d||d|None|x"},
    {"join, first, last, list",
     "{{ [1, 2, 3]|join(', ') }}|{{ l|join('-', attribute='n') }}|{{ [3, 4]|first }}|{{ 'xyz'|last }}|{{ 'ab'|list }}|{{ []|first }}",
     "{\"l\": [{\"n\": \"a\"}, {\"n\": \"b\"}]}",
     "1, 2, 3|a-b|3|z|['a', 'b']|"},
    {"string, int, float, round, abs",
     "{{ 1|string ~ 2 }}|{{ '42'|int + 1 }}|{{ '3.9'|int }}|{{ 'x'|int(7) }}|{{ '2.5'|float }}|{{ 2.5|round }}|{{ 3.5|round }}|{{ 2.675|round(2) }}|{{ 2.1|round(0, 'ceil') }}|{{ -3|abs }}",
     "{}",
     "12|43|3|7|2.5|2.0|4.0|2.67|3.0|3"},
    {"replace",
     "{{ 'aaa'|replace('a', 'b') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'ab'|replace('', '-') }}",
     "{}",
     "bbb|bba|-a-b-"},
    {"items and dictsort",
     "{{ d|items|list }}|{{ d|dictsort }}|{{ d|dictsort(by='value', reverse=true) }}",
     "{\"d\": {\"a\": 2, \"b\": 1}}",
     "[('a', 2), ('b', 1)]|[('a', 2), ('b', 1)]|[('a', 2), ('b', 1)]"},
    {"selectattr, rejectattr, map",
     "{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }}|{{ messages|rejectattr('role', 'in', ['user', 'system'])|map(attribute='content')|list }}|{{ messages|map(attribute='missing', default='-')|list }}|{{ ['a', 'b']|map('upper')|list }}",
     "{\"messages\": [{\"content\": \"S\", \"role\": \"system\"}, {\"content\": \"U1\", \"role\": \"user\"}, {\"content\": \"A1\", \"role\": \"assistant\"}, {\"content\": \"U2\", \"role\": \"user\"}]}",
     "U1,U2|['A1']|['-', '-', '-', '-']|['A', 'B']"},
    {"select, reject, unique, sort, reverse",
     "{{ [1, 2, 3, 4]|select('odd')|list }}{{ [1, none, 2]|reject('none')|list }}{{ ['B', 'a', 'A', 'b']|unique|list }}{{ ['b', 'A', 'a']|sort }}{{ [1, 3, 2]|sort(reverse=true) }}{{ [1, 2]|reverse|list }}{{ 'abc'|reverse }}",
     "{}",
     "[1, 3][1, 2]['B', 'a']['A', 'a', 'b'][3, 2, 1][2, 1]cba"},
    {"a generator is true even when empty",
     "{% if []|select('odd') %}true{% endif %}|{{ []|select('odd')|list|length }}",
     "{}",
     "true|0"},
    {"sum, min, max",
     "{{ [1, 2, 3]|sum }}{{ l|sum(attribute='n') }}{{ [3, 1, 2]|min }}{{ ['b', 'C', 'a']|max }}",
     "{\"l\": [{\"n\": 1}, {\"n\": 2}]}",
     "631C"},
    {"indent",
     "[{{ 'a\nb\n\nc'|indent }}][{{ 'a\nb'|indent(2, true) }}][{{ 'a\n\nb'|indent('> ', blank=true) }}]",
     "{}",
     "[a\n    b\n\n    c][  a\n  b][a\n> \n> b]"},
    {"escape, safe, format, wordcount, center",
     "{{ '<a href=\"x\">&\\'</a>'|e }}|{{ ('<b>'|safe) + '<i>' }}|{{ '%s has %d'|format('x', 3) }}|{{ 'one two, three'|wordcount }}|{{ 'x'|center(5) }}|",
     "{}",
     "&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;|<b>&lt;i&gt;|x has 3|3|  x  |"},
    {"truncate",
     "{{ s|truncate(20) }}|{{ s|truncate(20, true) }}|{{ s|truncate(20, end='…') }}|{{ 'short'|truncate(3, leeway=0) }}",
     "{\"s\": \"The quick brown fox jumps over the lazy dog\"}",
     "The quick brown...|The quick brown f...|The quick brown…|..."},
    {"attr",
     "[{{ d|attr('k') }}]|{{ d|attr('get') is defined }}",
     "{\"d\": {\"k\": \"v\"}}",
     "[]|True"},
};

const Case kTojson[] = {
    {"json.dumps defaults: ', ' and ': ', no ASCII escaping",
     "{{ d|tojson }}",
     "{\"d\": {\"a\": \"é\\\"\\\\\\n\\t\\u0001</script>\", \"b\": [1, 2.5, null, true]}}",
     "{\"a\": \"é\\\"\\\\\\n\\t\\u0001</script>\", \"b\": [1, 2.5, null, true]}"},
    {"indent uses ',' between items",
     "{{ d|tojson(indent=2) }}|{{ []|tojson(indent=2) }}|{{ {}|tojson(indent=2) }}",
     "{\"d\": {\"a\": [1, {\"b\": null}]}}",
     "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ]\n}|[]|{}"},
    {"indent as a string, separators, sort_keys, ensure_ascii",
     "{{ d|tojson(indent='\\t') }}|{{ d|tojson(separators=(',', ':')) }}|{{ d|tojson(sort_keys=true) }}|{{ 'é😀'|tojson(ensure_ascii=true) }}",
     "{\"d\": {\"a\": \"é\", \"z\": 1}}",
     "{\n\t\"a\": \"é\",\n\t\"z\": 1\n}|{\"a\":\"é\",\"z\":1}|{\"a\": \"é\", \"z\": 1}|\"\\u00e9\\ud83d\\ude00\""},
    {"numbers keep Python's forms",
     "{{ [1, 1.0, 1e20, 1e-7, -0.0, 0.1]|tojson }}",
     "{}",
     "[1, 1.0, 1e+20, 1e-07, -0.0, 0.1]"},
    {"tuples are arrays; strings quote",
     "{{ (1, 'two')|tojson }}|{{ 'it\\'s \"q\"'|tojson }}",
     "{}",
     "[1, \"two\"]|\"it's \\\"q\\\"\""},
};

const Case kMethods[] = {
    {"strip family with arguments",
     "[{{ '  a  '.strip() }}][{{ '\\n\\na\\n'.lstrip('\\n') }}][{{ 'a\\n\\n'.rstrip('\\n') }}][{{ 'xyax'.strip('xy') }}]",
     "{}",
     "[a][a\n][a][a]"},
    {"split and rsplit",
     "{{ 'a,b,,c'.split(',') }}{{ '  a  b '.split() }}{{ 'a b c'.split(' ', 1) }}{{ 'a b c'.rsplit(' ', 1) }}{{ 'x</think>y'.split('</think>')[-1] }}",
     "{}",
     "['a', 'b', '', 'c']['a', 'b']['a', 'b c']['a b', 'c']y"},
    {"startswith, endswith, find, count, replace",
     "{{ 'hello'.startswith('he') }}{{ 'hello'.endswith(('x', 'lo')) }}{{ 'hello'.find('l') }}{{ 'hello'.rfind('l') }}{{ 'hello'.count('l') }}{{ 'hello'.replace('l', 'L', 1) }}",
     "{}",
     "TrueTrue232heLlo"},
    {"case methods (Python's, not the filters')",
     "{{ 'hello world'.title() }}|{{ \"it's\".title() }}|{{ 'ß'.upper() }}|{{ 'ABC'.lower() }}|{{ 'aBc'.capitalize() }}|{{ 'aB'.swapcase() }}",
     "{}",
     "Hello World|It'S|SS|abc|Abc|Ab"},
    {"format",
     "{{ '{} and {}'.format(1, 'x') }}|{{ '{0}{0}{name}'.format('a', name='b') }}|{{ '{:>5}|{:<4}|{:^5}|{:05.1f}|{:,}'.format('r', 'l', 'c', 3.14159, 1234567) }}",
     "{}",
     "1 and x|aab|    r|l   |  c  |003.1|1,234,567"},
    {"predicates and padding",
     "{{ '123'.isdigit() }}{{ 'abc'.isalpha() }}{{ ' '.isspace() }}{{ 'ab'.islower() }}{{ 'AB'.isupper() }}{{ '7'.zfill(3) }}{{ 'x'.ljust(3, '.') }}{{ 'x'.rjust(3) }}",
     "{}",
     "TrueTrueTrueTrueTrue007x..  x"},
    {"dict methods",
     "{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 0) }}{{ d.keys()|list }}{{ d.values()|list }}{{ d.items()|list }}",
     "{\"d\": {\"a\": 1, \"b\": 2}}",
     "1None0['a', 'b'][1, 2][('a', 1), ('b', 2)]"},
    {"list methods",
     "{{ [1, 2, 1].count(1) }}{{ [1, 2].index(2) }}",
     "{}",
     "21"},
};

// clang-format on

template <size_t N>
void expect_renders(const Case (&cases)[N]) {
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<ChatTemplate> t = ChatTemplate::parse(c.source, "constructs");
    ASSERT_TRUE(t.ok()) << t.status();
    absl::StatusOr<std::string> out = t->render(nlohmann::json::parse(c.context));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(*out, c.expected);
  }
}

TEST(ChatTemplateConstructs, Whitespace) { expect_renders(kWhitespace); }
TEST(ChatTemplateConstructs, Loops) { expect_renders(kLoops); }
TEST(ChatTemplateConstructs, ConditionalsAndSet) { expect_renders(kConditionalsAndSet); }
TEST(ChatTemplateConstructs, Expressions) { expect_renders(kExpressions); }
TEST(ChatTemplateConstructs, Filters) { expect_renders(kFilters); }
TEST(ChatTemplateConstructs, Tojson) { expect_renders(kTojson); }
TEST(ChatTemplateConstructs, Methods) { expect_renders(kMethods); }

// strftime_now reads the clock; the internal entry point fixes it.
TEST(ChatTemplateConstructs, StrftimeNowFormatsTheGivenTime) {
  auto program = jinja::compile(
      "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M') }}", "clock");
  ASSERT_TRUE(program.ok()) << program.status();
  jinja::RenderOptions options;
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 6;
  tm.tm_mday = 26;
  tm.tm_hour = 9;
  tm.tm_min = 5;
  options.now = tm;
  absl::StatusOr<std::string> out =
      jinja::render_program(**program, nlohmann::json::object(), options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "26 Jul 2024|2024-07-26 09:05");
}

// nlohmann::json sorts object keys; ordered_json keeps the caller's order,
// as a Python dict would (tool schemas printed with tojson depend on it).
TEST(ChatTemplateConstructs, OrderedJsonKeepsKeyOrder) {
  auto program =
      jinja::compile("{{ d|tojson }}|{% for k, v in d.items() %}{{ k }}{% endfor %}", "order");
  ASSERT_TRUE(program.ok()) << program.status();
  const auto ordered = nlohmann::ordered_json::parse(R"({"d": {"z": 1, "a": {"y": 2, "b": 3}}})");
  absl::StatusOr<std::string> out = jinja::render_program_ordered(**program, ordered, {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"z": 1, "a": {"y": 2, "b": 3}}|za)");
  out = jinja::render_program(**program, nlohmann::json::parse(ordered.dump()), {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"a": {"b": 3, "y": 2}, "z": 1}|az)");
}

TEST(ChatTemplateConstructs, ContextMayBeNullOrEmpty) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::parse("[{{ x }}]", "empty");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->render(nlohmann::json()).value_or("failed"), "[]");
  EXPECT_EQ(t->render(nlohmann::json::object()).value_or("failed"), "[]");
}

// One parsed template, rendered from several threads at once.
TEST(ChatTemplateConstructs, RendersConcurrently) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::parse(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
      "{{ m.content|upper }}{% endfor %}{{ ns.n }}",
      "threads");
  ASSERT_TRUE(t.ok());
  std::vector<std::thread> threads;
  std::vector<std::string> outputs(8);
  for (size_t i = 0; i < outputs.size(); ++i) {
    threads.emplace_back([&, i] {
      nlohmann::json messages = nlohmann::json::array();
      for (size_t k = 0; k <= i; ++k) {
        messages.push_back({{"content", std::string(1, static_cast<char>('a' + k))}});
      }
      for (int repeat = 0; repeat < 200; ++repeat) {
        outputs[i] = t->render({{"messages", messages}}).value_or("failed");
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (size_t i = 0; i < outputs.size(); ++i) {
    std::string expected;
    for (size_t k = 0; k <= i; ++k) expected.push_back(static_cast<char>('A' + k));
    EXPECT_EQ(outputs[i], expected + std::to_string(i + 1));
  }
}

}  // namespace
}  // namespace dsinf::trainer
