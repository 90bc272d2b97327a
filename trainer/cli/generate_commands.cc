#include "trainer/cli/generate_commands.h"

#include <unistd.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/util/args.h"
#include "memory/util/exit_code.h"
#include "memory/util/format.h"
#include "nlohmann/json.hpp"
#include "trainer/config/config.h"
#include "trainer/train/generate.h"
#include "trainer/train/generate_text.h"

namespace dsinf::trainer {
namespace {

using util::Args;
using json = nlohmann::json;

constexpr const char* kSamplingUsage =
    R"(  --max-new-tokens N   at most N new tokens (default 128); generation also
                       stops at an EOS or end-of-turn token and at the model's
                       max_position_embeddings
  --temperature F      0 (the default) is greedy: the most likely token, ties
                       to the lowest id; above 0 samples from softmax(logits / F)
  --top-k N            sample among the N most likely tokens only (0: all)
  --top-p F            then among the fewest whose probability reaches F (0 < F <= 1)
  --seed N             the sampler's seed (default 0): the same tokens for a seed
  --json               stdout carries one JSON object per answer: text, tokens,
                       prompt_tokens, new_tokens, tokens_per_s, stop
)";

constexpr const char* kGenerateUsage =
    R"(usage: dsinf generate CONFIG (--prompt TEXT | --in PROMPTS.jsonl) [options]

Continues prompts with the config's model and weights (the newest checkpoint in
train.output_dir, else model.init_from, else the seeded initialisation), placed
as the config places parameters (offload_param streams them from host or NVMe
within memory.device_budget_bytes). The text streams to stdout as it is made;
tokens/s at the end. --in takes JSON Lines: {"prompt": "..."} or
{"messages": [{"role": "user", "content": "..."}, ...]} (rendered with the
tokenizer's chat template and its generation prompt). The tokenizer is
data.tokenizer (else model.init_from's directory).

options:
  --prompt TEXT        one prompt
  --in FILE            prompts, one JSON object a line
)";

constexpr const char* kChatUsage =
    R"(usage: dsinf chat CONFIG [options]

A conversation with the config's model through its tokenizer's chat template
(data.tokenizer, else model.init_from's directory). Each line typed is a user
message; the answer streams as it is made and the conversation is kept.
/reset starts a new conversation, /exit (or end of input) ends. Reading from a
pipe, each line is answered in turn.

options:
)";

int usage_error(const std::string& message, const char* usage) {
  std::cerr << "dsinf: " << message << "\n(see dsinf " << usage << " --help)\n";
  return util::kExitBadInput;
}

int failed(const absl::Status& status) {
  std::cerr << "dsinf: " << status.message() << "\n";
  return util::exit_code(status);
}

const Args::Spec& sampling_spec(bool generate) {
  static const Args::Spec generate_spec{
      {"--prompt", "--in", "--max-new-tokens", "--temperature", "--top-p", "--top-k", "--seed"},
      {"--json", "--help"},
      1};
  static const Args::Spec chat_spec{
      {"--max-new-tokens", "--temperature", "--top-p", "--top-k", "--seed"}, {"--json", "--help"}, 1};
  return generate ? generate_spec : chat_spec;
}

// A real number flag in [lo, hi] (lo excluded when open_lo); `fallback` when absent.
absl::StatusOr<double> real_flag(const Args& parsed, const std::string& name, double fallback,
                                 double lo, double hi, bool open_lo) {
  const std::optional<std::string> text = parsed.text(name);
  if (!text) return fallback;
  double value = 0;
  const bool in_range = absl::SimpleAtod(*text, &value) && std::isfinite(value) &&
                        (open_lo ? value > lo : value >= lo) && value <= hi;
  if (!in_range) {
    return absl::InvalidArgumentError(absl::StrFormat("%s must be a number in %s%g, %g], got '%s'",
                                                      name, open_lo ? "(" : "[", lo, hi, *text));
  }
  return value;
}

absl::StatusOr<GenerateOptions> parse_options(const Args& parsed) {
  GenerateOptions options;
  absl::StatusOr<int64_t> max_new = parsed.integer("--max-new-tokens", 128, 1, 1 << 24);
  if (!max_new.ok()) return max_new.status();
  options.max_new_tokens = static_cast<int>(*max_new);
  absl::StatusOr<double> temperature = real_flag(parsed, "--temperature", 0, 0, 100, false);
  if (!temperature.ok()) return temperature.status();
  absl::StatusOr<double> top_p = real_flag(parsed, "--top-p", 1, 0, 1, true);
  if (!top_p.ok()) return top_p.status();
  absl::StatusOr<int64_t> top_k = parsed.integer("--top-k", 0, 0, 1 << 30);
  if (!top_k.ok()) return top_k.status();
  absl::StatusOr<int64_t> seed = parsed.integer("--seed", 0, 0, INT64_MAX);
  if (!seed.ok()) return seed.status();
  options.sampling = {*temperature, *top_p, static_cast<int>(*top_k), static_cast<uint64_t>(*seed)};
  return options;
}

// One prompt of --prompt or of a --in line.
struct PromptItem {
  std::string where;  // "--prompt" or "FILE:LINE"
  std::optional<std::string> prompt;
  json messages;  // when not a plain prompt
};

absl::Status bad_line(const std::string& where, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", message));
}

absl::Status check_messages(const std::string& where, const json& messages) {
  if (!messages.is_array() || messages.empty()) {
    return bad_line(where, "\"messages\" must be a non-empty list");
  }
  for (const json& m : messages) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return bad_line(where, "each message needs a \"role\" string");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PromptItem> parse_prompt_line(const std::string& where, const std::string& line) {
  const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad_line(where, "not valid JSON");
  if (!j.is_object() || j.contains("prompt") == j.contains("messages")) {
    return bad_line(where, "a line must be an object with \"prompt\" or \"messages\"");
  }
  PromptItem item{where, std::nullopt, json()};
  if (j.contains("prompt")) {
    if (!j["prompt"].is_string()) return bad_line(where, "\"prompt\" must be a string");
    item.prompt = j["prompt"].get<std::string>();
    return item;
  }
  if (absl::Status s = check_messages(where, j["messages"]); !s.ok()) return s;
  item.messages = j["messages"];
  return item;
}

absl::StatusOr<std::vector<PromptItem>> read_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--in: cannot open '", path, "'"));
  std::vector<PromptItem> items;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    absl::StatusOr<PromptItem> item = parse_prompt_line(absl::StrCat(path, ":", number), line);
    if (!item.ok()) return item.status();
    items.push_back(*std::move(item));
  }
  if (items.empty()) return absl::InvalidArgumentError(absl::StrCat("--in: '", path, "' holds no prompt"));
  return items;
}

absl::StatusOr<std::vector<int32_t>> encode_item(const GenerationText& text, const PromptItem& item) {
  absl::StatusOr<std::vector<int32_t>> ids =
      item.prompt ? encode_prompt(text, *item.prompt) : encode_chat(text, item.messages);
  if (!ids.ok()) return bad_line(item.where, std::string(ids.status().message()));
  if (ids->empty()) return bad_line(item.where, "the prompt encodes to no tokens");
  return ids;
}

json result_json(const GenerationResult& r) {
  return {{"text", r.text},
          {"tokens", r.tokens},
          {"prompt_tokens", r.prompt_tokens},
          {"new_tokens", r.tokens.size()},
          {"reused_tokens", r.reused_tokens},
          {"prefill_s", r.prefill_s},
          {"decode_s", r.decode_s},
          {"tokens_per_s", r.tokens_per_s()},
          {"stop", stop_reason_name(r.stop)}};
}

std::string result_line(const GenerationResult& r) {
  const int prefilled = r.prompt_tokens - r.reused_tokens;
  return absl::StrFormat(
      "%d prompt tokens (%d computed in %.3f s, %.1f tokens/s), %d new tokens, %.2f tokens/s, "
      "stop: %s",
      r.prompt_tokens, prefilled, r.prefill_s, r.prefill_s > 0 ? prefilled / r.prefill_s : 0.0,
      r.tokens.size(), r.tokens_per_s(), stop_reason_name(r.stop));
}

// The model and its text side; the describing line on stderr.
struct Loaded {
  std::unique_ptr<GenerationSession> g;
  GenerationText text;
};

absl::StatusOr<Loaded> load(const Config& config, const RunEnvironment& env,
                            GenerationText text) {
  absl::StatusOr<std::unique_ptr<GenerationSession>> g = open_generation(config, env);
  if (!g.ok()) return g.status();
  const actors::Runtime& rt = *(*g)->session.runtime;
  std::cerr << absl::StrFormat("%s: %s; weights from %s; parameters on %s; %s; key/value cache %s\n",
                               config.source_path, (*g)->session.model->describe(),
                               (*g)->session.weights_source, tier_name(rt.placement().params),
                               rt.device_description(),
                               util::format_bytes((*g)->decoder->kv_cache_bytes()));
  return Loaded{*std::move(g), std::move(text)};
}

struct Command {
  std::string config_path;
  GenerateOptions options;
  bool json = false;
  std::optional<std::string> prompt, in;  // generate's
};

// CONFIG and the sampling flags; exit status in `exit` when they are bad (or --help).
std::optional<Command> parse_command(const std::vector<std::string>& args, bool generate,
                                     int* exit) {
  const char* name = generate ? "generate" : "chat";
  const char* usage = generate ? kGenerateUsage : kChatUsage;
  absl::StatusOr<Args> parsed = Args::parse(args, sampling_spec(generate));
  if (!parsed.ok()) {
    *exit = usage_error(absl::StrCat(name, ": ", parsed.status().message()), name);
    return std::nullopt;
  }
  if (parsed->flag("--help")) {
    std::cout << usage << kSamplingUsage;
    *exit = util::kExitOk;
    return std::nullopt;
  }
  absl::StatusOr<GenerateOptions> options = parse_options(*parsed);
  if (!options.ok()) {
    *exit = usage_error(absl::StrCat(name, ": ", options.status().message()), name);
    return std::nullopt;
  }
  if (parsed->positional().empty()) {
    *exit = usage_error(absl::StrCat(name, " needs a CONFIG file"), name);
    return std::nullopt;
  }
  return Command{parsed->positional().front(), *options, parsed->flag("--json"),
                 parsed->text("--prompt"), parsed->text("--in")};
}

// The config, its warnings printed; bad input when its family cannot generate.
absl::StatusOr<LoadedConfig> read_config(const std::string& path) {
  absl::StatusOr<LoadedConfig> loaded = load_config(path);
  if (!loaded.ok()) return loaded.status();
  for (const std::string& warning : loaded->warnings) std::cerr << "warning: " << warning << "\n";
  if (absl::StatusOr<std::unique_ptr<Decoder>> d = make_decoder(loaded->config.model); !d.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", d.status().message()));
  }
  return loaded;
}

// One answer: streamed to stdout (or one JSON object), its figures after it.
absl::StatusOr<GenerationResult> answer(Generator& generator, const std::vector<int32_t>& ids,
                                        const Command& cmd, Sampler& sampler,
                                        const GenerationText& text, std::ostream& figures) {
  GenerateOptions options = cmd.options;
  options.stop_ids = text.stop_ids;
  auto on_text = [&](std::string_view piece) {
    if (!cmd.json) std::cout << piece << std::flush;
  };
  absl::StatusOr<GenerationResult> r =
      generator.run(ids, options, sampler, *text.tokenizer, on_text);
  if (!r.ok()) return r;
  if (cmd.json) {
    emit_json(result_json(*r));
  } else {
    std::cout << "\n";
  }
  figures << result_line(*r) << std::endl;
  return r;
}

// The next line of stdin without its line end, after a prompt on a terminal.
bool read_user_line(bool terminal, std::string& line) {
  if (terminal) std::cerr << "> " << std::flush;
  if (!std::getline(std::cin, line)) return false;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return true;
}

}  // namespace

int generate_main(const std::vector<std::string>& args, const RunEnvironment& env) {
  int exit = 0;
  std::optional<Command> cmd = parse_command(args, /*generate=*/true, &exit);
  if (!cmd) return exit;
  if (cmd->prompt.has_value() == cmd->in.has_value()) {
    return usage_error("generate needs --prompt TEXT or --in FILE (one of them)", "generate");
  }
  absl::StatusOr<LoadedConfig> loaded = read_config(cmd->config_path);
  if (!loaded.ok()) return failed(loaded.status());
  absl::StatusOr<std::vector<PromptItem>> read =
      cmd->prompt ? std::vector<PromptItem>{{"--prompt", *cmd->prompt, json()}}
                  : read_prompts(*cmd->in);
  if (!read.ok()) return failed(read.status());
  const std::vector<PromptItem>& items = *read;
  const bool need_chat = std::any_of(items.begin(), items.end(),
                                     [](const PromptItem& i) { return !i.prompt.has_value(); });
  absl::StatusOr<GenerationText> text = open_generation_text(loaded->config, need_chat);
  if (!text.ok()) return failed(text.status());
  std::vector<std::vector<int32_t>> prompts;
  for (const PromptItem& item : items) {
    absl::StatusOr<std::vector<int32_t>> ids = encode_item(*text, item);
    if (!ids.ok()) return failed(ids.status());
    prompts.push_back(*std::move(ids));
  }
  absl::StatusOr<Loaded> model = load(loaded->config, env, *std::move(text));
  if (!model.ok()) return failed(model.status());
  Generator generator(*model->g->decoder);
  Sampler sampler(cmd->options.sampling);
  for (size_t i = 0; i < prompts.size(); ++i) {
    absl::StatusOr<GenerationResult> r =
        answer(generator, prompts[i], *cmd, sampler, model->text, human(cmd->json));
    if (!r.ok()) return failed(bad_line(items[i].where, std::string(r.status().message())));
  }
  return util::kExitOk;
}

int chat_main(const std::vector<std::string>& args, const RunEnvironment& env) {
  int exit = 0;
  std::optional<Command> cmd = parse_command(args, /*generate=*/false, &exit);
  if (!cmd) return exit;
  absl::StatusOr<LoadedConfig> loaded = read_config(cmd->config_path);
  if (!loaded.ok()) return failed(loaded.status());
  absl::StatusOr<GenerationText> text = open_generation_text(loaded->config, /*need_chat=*/true);
  if (!text.ok()) return failed(text.status());
  absl::StatusOr<Loaded> model = load(loaded->config, env, *std::move(text));
  if (!model.ok()) return failed(model.status());
  const bool terminal = ::isatty(STDIN_FILENO) == 1;
  if (terminal) std::cerr << "(/reset: a new conversation, /exit: quit)\n";
  Generator generator(*model->g->decoder);
  Sampler sampler(cmd->options.sampling);
  json messages = json::array();
  std::string line;
  for (int line_number = 1; read_user_line(terminal, line); ++line_number) {
    if (line == "/exit") break;
    if (line == "/reset") {
      messages = json::array();
      generator.reset();
      std::cerr << "(new conversation)\n";
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({{"role", "user"}, {"content", line}});
    absl::StatusOr<std::vector<int32_t>> ids = encode_chat(model->text, messages);
    absl::StatusOr<GenerationResult> r =
        ids.ok() ? answer(generator, *ids, *cmd, sampler, model->text, std::cerr) : ids.status();
    if (!r.ok()) {
      const absl::Status turn_failed(
          r.status().code(), absl::StrCat("input line ", line_number, ": ", r.status().message(),
                                          " (/reset starts a new conversation)"));
      if (!terminal) return failed(turn_failed);
      std::cerr << "dsinf: " << turn_failed.message() << "\n";
      messages.erase(messages.size() - 1);
      continue;
    }
    messages.push_back({{"role", "assistant"}, {"content", r->text}});
  }
  return util::kExitOk;
}

}  // namespace dsinf::trainer
