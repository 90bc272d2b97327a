#include "trainer/data/text_data.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "trainer/data/data.h"
#include "trainer/data/documents.h"
#include "trainer/models/hf_weights.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;

bool is_token_shard(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  char magic[8] = {};
  return in.read(magic, 8) && std::memcmp(magic, kShardMagic, 8) == 0;
}

// The tokenizer a config's data uses: data.tokenizer, else model.init_from's
// directory when it has a tokenizer.json; "" when neither.
std::string tokenizer_path(const Config& config, std::string* key) {
  if (!config.data.tokenizer.empty()) {
    *key = "data.tokenizer";
    return config.data.tokenizer;
  }
  std::error_code ec;
  if (config.model.init_from_directory &&
      fs::exists(fs::path(config.model.init_from) / "tokenizer.json", ec)) {
    *key = "model.init_from";
    return config.model.init_from;
  }
  return "";
}

// Whether every file of `path` is a token shard (unreadable paths: no, and
// the loading names them).
bool only_shards(const std::string& path) {
  absl::StatusOr<std::vector<std::string>> files = data_files(path, "data.path");
  return files.ok() && std::all_of(files->begin(), files->end(), is_token_shard);
}

// The directory holding a tokenizer.json path (or the directory itself).
std::string tokenizer_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) ? path : fs::path(path).parent_path().string();
}

}  // namespace

absl::StatusOr<TokenizerConfig> load_tokenizer_config(const std::string& dir) {
  absl::StatusOr<TokenizerConfig> tc = read_tokenizer_config(dir);
  if (!tc.ok() || !tc->chat_template.empty()) return tc;
  // Newer transformers save the template beside it, in chat_template.jinja.
  std::ifstream in(fs::path(dir) / "chat_template.jinja", std::ios::binary);
  if (in) {
    tc->chat_template.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return tc;
}

absl::Status DataLoader::fail(const std::string& key, const std::string& message) const {
  return absl::InvalidArgumentError(absl::StrCat(config_->source_path, ": ", key, ": ", message));
}

absl::StatusOr<DataLoader> DataLoader::open(const Config& config) {
  DataLoader d;
  d.config_ = &config;
  const std::string found = tokenizer_path(config, &d.tokenizer_key_);
  const bool sft = config.data.format != DataFormat::kText;
  // Token shards need no tokenizer: it is read only for text, SFT or EOS.
  const bool needed = sft || config.data.append_eos || !only_shards(config.data.path) ||
                      (!config.data.eval_path.empty() && !only_shards(config.data.eval_path));
  const std::string path = needed ? found : "";
  if (path.empty()) {
    if (found.empty() && config.model.init_from_directory && has_tokenizer(config.model.init_from)) {
      d.text_refusal_ = absl::StrCat("model.init_from '", config.model.init_from,
                                     "' has a tokenizer without tokenizer.json, which dsinf reads; "
                                     "give token shards of that tokenizer");
    }
    if (sft) {
      return d.fail("data.format", "chat and prompt_completion data need a tokenizer: set "
                                   "data.tokenizer, or model.init_from to a directory with one");
    }
    return d;
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::load(path);
  if (!tokenizer.ok()) return d.fail(d.tokenizer_key_, std::string(tokenizer.status().message()));
  d.tokenizer_ = *std::move(tokenizer);
  if (d.tokenizer_->vocab_size() > static_cast<size_t>(config.model.vocab_size)) {
    return d.fail(d.tokenizer_key_,
                  absl::StrCat("the tokenizer's ids reach ", d.tokenizer_->vocab_size() - 1,
                               ", beyond model.vocab_size ", config.model.vocab_size));
  }
  const std::string dir = tokenizer_dir(path);
  const bool need_config = config.data.format == DataFormat::kChat || config.data.append_eos;
  absl::StatusOr<TokenizerConfig> tc = load_tokenizer_config(dir);
  if (tc.ok()) {
    d.tokenizer_config_ = *std::move(tc);
  } else if (need_config || tc.status().code() != absl::StatusCode::kNotFound) {
    return d.fail(d.tokenizer_key_, std::string(tc.status().message()));
  }
  if (config.data.format == DataFormat::kChat) {
    if (absl::Status s = d.open_chat(dir); !s.ok()) return s;
  }
  return d;
}

std::optional<int32_t> DataLoader::id_of(const std::string& token) const {
  if (token.empty()) return std::nullopt;
  return tokenizer_->token_to_id(token);
}

absl::Status DataLoader::open_chat(const std::string& dir) {
  const TokenizerConfig& tc = tokenizer_config_;
  if (tc.chat_template.empty()) {
    return fail("data.format",
                absl::StrCat("chat data needs a chat template, and '", dir,
                             "' has none (tokenizer_config.json's chat_template)"));
  }
  absl::StatusOr<ChatTemplate> parsed = ChatTemplate::parse(tc.chat_template, tc.source);
  if (!parsed.ok()) return fail(tokenizer_key_, std::string(parsed.status().message()));
  chat_template_ = std::make_shared<ChatTemplate>(*std::move(parsed));
  chat_.tokenizer = tokenizer_.get();
  chat_.chat_template = chat_template_.get();
  chat_.variables = template_variables(tc);
  absl::StatusOr<std::string> turn_end = chat_turn_end(chat_);
  if (!turn_end.ok()) {
    return fail("data.format", absl::StrCat(tc.source, ": ", turn_end.status().message()));
  }
  chat_.turn_end = *std::move(turn_end);
  return absl::OkStatus();
}

absl::StatusOr<Windows> DataLoader::load(const std::string& path, const std::string& key,
                                         std::ostream& log) const {
  absl::StatusOr<Windows> windows = config_->data.format == DataFormat::kText
                                        ? load_stream(path, key)
                                        : load_examples(path, key, log);
  if (!windows.ok()) {
    return absl::Status(windows.status().code(),
                        absl::StrCat(config_->source_path, ": ", windows.status().message()));
  }
  return windows;
}

// Token shards as they are; text through the tokenizer, or as bytes without one.
absl::StatusOr<Windows> DataLoader::load_stream(const std::string& path,
                                                const std::string& key) const {
  const int T = config_->model.window();
  absl::StatusOr<std::vector<std::string>> files = data_files(path, key);
  if (!files.ok()) return files.status();
  const bool shards = std::all_of(files->begin(), files->end(), is_token_shard);
  absl::StatusOr<std::vector<int32_t>> tokens;
  if (shards || tokenizer_ == nullptr) {
    tokens = load_tokens(path, config_->model.vocab_size, key, text_refusal_);
  } else {
    absl::StatusOr<std::vector<Document>> docs = read_documents(path, key);
    if (!docs.ok()) return docs.status();
    TokenizeOptions options;
    options.append_eos = config_->data.append_eos;
    if (options.append_eos) {
      absl::StatusOr<int32_t> eos = eos_id(*tokenizer_, tokenizer_config_.eos_token);
      if (!eos.ok()) return absl::InvalidArgumentError(absl::StrCat("data.append_eos: ", eos.status().message()));
      options.eos_id = *eos;
    }
    tokens = tokenize_documents(*tokenizer_, *docs, options);
    if (!tokens.ok()) return absl::InvalidArgumentError(absl::StrCat(key, ": ", tokens.status().message()));
  }
  if (!tokens.ok()) return tokens.status();
  if (num_windows(tokens->size(), T) < 1) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": '", path, "' holds ", tokens->size(),
                                                   " tokens, fewer than a window (data.seq_len) + 1 = ",
                                                   T + 1));
  }
  return Windows::stream(*std::move(tokens), T);
}

absl::StatusOr<Windows> DataLoader::load_examples(const std::string& path, const std::string& key,
                                                  std::ostream& log) const {
  const ExampleFormat format = config_->data.format == DataFormat::kChat
                                   ? ExampleFormat::kChat
                                   : ExampleFormat::kPromptCompletion;
  ChatFormat chat = chat_;
  chat.tokenizer = tokenizer_.get();
  absl::StatusOr<std::vector<Example>> examples = read_examples(path, key, format, chat);
  if (!examples.ok()) return examples.status();
  WindowingOptions options;
  options.T = config_->model.window();
  options.drop_long = config_->data.truncation == Truncation::kDrop;
  const TokenizerConfig& tc = tokenizer_config_;
  options.pad_id = id_of(tc.pad_token).value_or(id_of(tc.eos_token).value_or(0));
  WindowingStats stats;
  Windows windows = window_examples(*examples, options, &stats);
  if (stats.truncated > 0) {
    log << "warning: " << key << ": " << stats.truncated << " of " << stats.examples
        << " examples are longer than data.seq_len + 1 = " << options.T + 1
        << " tokens and were cut to it (data.truncation \"right\")\n";
  }
  if (stats.dropped_long > 0) {
    log << "warning: " << key << ": " << stats.dropped_long << " of " << stats.examples
        << " examples are longer than data.seq_len + 1 = " << options.T + 1
        << " tokens and were left out (data.truncation \"drop\")\n";
  }
  if (stats.dropped_untrained > 0) {
    log << "warning: " << key << ": " << stats.dropped_untrained << " of " << stats.examples
        << " examples have no trained token within the window and were left out\n";
  }
  if (windows.count() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": '", path, "' holds no example with a "
                                                   "trained token (", stats.examples, " read)"));
  }
  return windows;
}

}  // namespace dsinf::trainer
