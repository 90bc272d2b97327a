#include "trainer/data/sft.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "kernels/ops.h"
#include "trainer/data/documents.h"

namespace dsinf::trainer {
namespace {

constexpr char kMarker[] = "dsinfassistantturnmarker";

absl::StatusOr<std::string> render(const ChatFormat& f, const nlohmann::json& messages,
                                   bool generation_prompt) {
  nlohmann::json context = f.variables;
  context["messages"] = messages;
  context["add_generation_prompt"] = generation_prompt;
  return f.chat_template->render(context);
}

// Tokens whose start lies in one of `spans` ([begin, end) byte ranges) are trained.
Example mark(Encoding encoding, const std::vector<std::pair<size_t, size_t>>& spans) {
  Example e;
  e.trained.resize(encoding.ids.size(), 0);
  for (size_t k = 0; k < encoding.ids.size(); ++k) {
    const size_t begin = encoding.offsets[k].first;
    for (const auto& [s, t] : spans) {
      if (begin >= s && begin < t) e.trained[k] = 1;
    }
  }
  e.ids = std::move(encoding.ids);
  return e;
}

bool is_message(const nlohmann::json& m) {
  return m.is_object() && m.contains("role") && m["role"].is_string();
}

}  // namespace

nlohmann::json template_variables(const TokenizerConfig& c) {
  // apply_chat_template passes tools and documents, None unless given.
  nlohmann::json v = {{"tools", nullptr}, {"documents", nullptr}};
  for (const auto& [name, value] : {std::pair{"bos_token", c.bos_token}, {"eos_token", c.eos_token},
                                    {"pad_token", c.pad_token}, {"unk_token", c.unk_token}}) {
    if (!value.empty()) v[name] = value;
  }
  return v;
}

absl::StatusOr<std::string> chat_turn_end(const ChatFormat& f) {
  const nlohmann::json probe = nlohmann::json::array(
      {{{"role", "user"}, {"content", "hello"}}, {{"role", "assistant"}, {"content", kMarker}}});
  absl::StatusOr<std::string> text = render(f, probe, false);
  if (!text.ok()) return text.status();
  const size_t at = text->find(kMarker);
  if (at == std::string::npos) {
    return absl::InvalidArgumentError("the chat template does not render an assistant's content");
  }
  const std::string after = text->substr(at + sizeof(kMarker) - 1);
  absl::StatusOr<Encoding> tokens = f.tokenizer->encode(after, /*add_special_tokens=*/false);
  if (!tokens.ok()) return tokens.status();
  for (size_t k = 0; k < tokens->ids.size(); ++k) {
    if (f.tokenizer->is_special(tokens->ids[k])) return after.substr(0, tokens->offsets[k].second);
  }
  return absl::InvalidArgumentError(
      "the chat template ends an assistant turn with no special token, so its turns cannot be "
      "located");
}

absl::StatusOr<Example> chat_example(const ChatFormat& f, const nlohmann::json& messages) {
  if (!messages.is_array() || messages.empty() ||
      !std::all_of(messages.begin(), messages.end(), is_message)) {
    return absl::InvalidArgumentError(
        "\"messages\" must be a non-empty list of objects with a \"role\" string");
  }
  absl::StatusOr<std::string> whole = render(f, messages, false);
  if (!whole.ok()) return whole.status();
  std::vector<std::pair<size_t, size_t>> spans;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i]["role"] != "assistant") continue;
    nlohmann::json before = nlohmann::json::array();
    for (size_t k = 0; k < i; ++k) before.push_back(messages[k]);
    absl::StatusOr<std::string> prefix = render(f, before, true);
    if (!prefix.ok()) return prefix.status();
    if (!whole->starts_with(*prefix)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", i, ": the chat template renders the conversation before this assistant "
                         "turn differently from the whole conversation, so the turn cannot be "
                         "located"));
    }
    const size_t end = whole->find(f.turn_end, prefix->size());
    if (end == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", i, ": the assistant turn does not end with '", f.turn_end, "'"));
    }
    spans.emplace_back(prefix->size(), end + f.turn_end.size());
  }
  absl::StatusOr<Encoding> tokens = f.tokenizer->encode(*whole, /*add_special_tokens=*/false);
  if (!tokens.ok()) return tokens.status();
  return mark(*std::move(tokens), spans);
}

absl::StatusOr<Example> prompt_completion_example(const Tokenizer& tokenizer,
                                                  std::string_view prompt,
                                                  std::string_view completion) {
  std::string text(prompt);
  text.append(completion);
  absl::StatusOr<Encoding> tokens = tokenizer.encode(text, /*add_special_tokens=*/true);
  if (!tokens.ok()) return tokens.status();
  // Up to the end: an EOS appended after the text starts there.
  return mark(*std::move(tokens), {{prompt.size(), text.size() + 1}});
}

Windows window_examples(const std::vector<Example>& examples, const WindowingOptions& o,
                        WindowingStats* stats) {
  const size_t T = static_cast<size_t>(o.T);
  std::vector<int32_t> inputs, targets;
  *stats = WindowingStats{};
  for (const Example& e : examples) {
    ++stats->examples;
    const bool longer = e.ids.size() > T + 1;
    if (longer && o.drop_long) {
      ++stats->dropped_long;
      continue;
    }
    std::vector<int32_t> in(T, o.pad_id), tg(T, kernels::kIgnoreTarget);
    const size_t n = std::min(e.ids.size(), T + 1);
    bool any = false;
    for (size_t j = 0; j + 1 < n; ++j) {
      in[j] = e.ids[j];
      if (e.trained[j + 1]) {
        tg[j] = e.ids[j + 1];
        any = true;
      }
    }
    if (n >= 1 && n <= T) in[n - 1] = e.ids[n - 1];
    if (!any) {
      ++stats->dropped_untrained;
      continue;
    }
    if (longer) ++stats->truncated;
    inputs.insert(inputs.end(), in.begin(), in.end());
    targets.insert(targets.end(), tg.begin(), tg.end());
  }
  return Windows::examples(std::move(inputs), std::move(targets), o.T);
}

namespace {

// One JSONL line's example.
absl::StatusOr<Example> line_example(const nlohmann::json& doc, ExampleFormat format,
                                     const ChatFormat& chat) {
  if (format == ExampleFormat::kChat) {
    if (!doc.is_object() || !doc.contains("messages")) {
      return absl::InvalidArgumentError("expected a JSON object with \"messages\"");
    }
    return chat_example(chat, doc["messages"]);
  }
  const bool ok = doc.is_object() && doc.contains("prompt") && doc["prompt"].is_string() &&
                  doc.contains("completion") && doc["completion"].is_string();
  if (!ok) {
    return absl::InvalidArgumentError(
        "expected a JSON object with \"prompt\" and \"completion\" strings");
  }
  return prompt_completion_example(*chat.tokenizer, doc["prompt"].get_ref<const std::string&>(),
                                   doc["completion"].get_ref<const std::string&>());
}

}  // namespace

absl::StatusOr<std::vector<Example>> read_examples(const std::string& path, const std::string& key,
                                                   ExampleFormat format, const ChatFormat& chat) {
  absl::StatusOr<std::vector<JsonLine>> lines = read_json_lines(path, key);
  if (!lines.ok()) return lines.status();
  std::vector<Example> examples(lines->size());
  std::mutex error_mu;
  absl::Status error;
  tbb::parallel_for(tbb::blocked_range<size_t>(0, lines->size(), 1),
                    [&](const tbb::blocked_range<size_t>& r) {
                      for (size_t i = r.begin(); i < r.end(); ++i) {
                        absl::StatusOr<Example> e = line_example((*lines)[i].value, format, chat);
                        if (e.ok()) {
                          examples[i] = *std::move(e);
                          continue;
                        }
                        std::lock_guard<std::mutex> lock(error_mu);
                        if (error.ok()) {
                          error = absl::InvalidArgumentError(absl::StrCat(
                              key, ": ", (*lines)[i].origin, ": ", e.status().message()));
                        }
                      }
                    });
  if (!error.ok()) return error;
  return examples;
}

}  // namespace dsinf::trainer
