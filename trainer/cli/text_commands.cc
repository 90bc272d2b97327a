#include "trainer/cli/text_commands.h"

#include <tbb/global_control.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/util/args.h"
#include "memory/util/exit_code.h"
#include "memory/util/format.h"
#include "nlohmann/json.hpp"
#include "trainer/data/chat_template/chat_template.h"
#include "trainer/data/data.h"
#include "trainer/data/documents.h"
#include "trainer/data/sft.h"
#include "trainer/data/text_data.h"
#include "trainer/data/tokenizer/tokenizer.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using util::Args;

int usage_error(const std::string& message, const char* usage) {
  std::cerr << "dsinf: " << message << "\n" << usage;
  return util::kExitBadInput;
}

int failed(const absl::Status& status) {
  std::cerr << "dsinf: " << status.message() << "\n";
  return util::exit_code(status);
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A progress line on a terminal (stderr), at most ~10 times a second, from
// whichever encoding thread gets there: bytes, MB/s and the time left.
class ProgressLine {
 public:
  ProgressLine(uint64_t total_bytes, bool enabled)
      : total_(total_bytes), enabled_(enabled && ::isatty(STDERR_FILENO) == 1) {}
  void update(uint64_t bytes, uint64_t documents) {
    if (!enabled_) return;
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (!lock.owns_lock() || seconds_since(last_) < 0.1) return;
    last_ = Clock::now();
    const double s = seconds_since(start_);
    const double rate = s > 0 ? static_cast<double>(bytes) / s : 0;
    const double left = rate > 0 ? static_cast<double>(total_ - bytes) / rate : 0;
    std::cerr << absl::StrFormat("\rtokenize: %s of %s (%.0f%%), %d documents, %.1f MB/s, ETA %s   ",
                                 util::format_bytes(bytes), util::format_bytes(total_),
                                 total_ ? 100.0 * bytes / total_ : 100.0, documents, rate / 1e6,
                                 util::format_duration(left))
              << std::flush;
    shown_ = true;
  }
  void finish() {
    if (shown_) std::cerr << "\n";
  }

 private:
  uint64_t total_;
  bool enabled_;
  bool shown_ = false;
  std::mutex mu_;
  Clock::time_point start_ = Clock::now(), last_ = Clock::time_point{};
};

// The tokenizer and (when asked) its EOS id, from --tokenizer DIR|FILE.
absl::StatusOr<std::unique_ptr<Tokenizer>> open_tokenizer(const std::string& path) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::load(path);
  if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat("--tokenizer: ", t.status().message()));
  return t;
}

std::string config_dir(const std::string& tokenizer_path) {
  std::error_code ec;
  return fs::is_directory(tokenizer_path, ec) ? tokenizer_path
                                              : fs::path(tokenizer_path).parent_path().string();
}

absl::StatusOr<int32_t> tokenizer_eos(const Tokenizer& t, const std::string& tokenizer_path) {
  absl::StatusOr<TokenizerConfig> tc = read_tokenizer_config(config_dir(tokenizer_path));
  if (!tc.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--append-eos needs the EOS token of tokenizer_config.json: ", tc.status().message()));
  }
  absl::StatusOr<int32_t> id = eos_id(t, tc->eos_token);
  if (!id.ok()) return absl::InvalidArgumentError(absl::StrCat("--append-eos: ", id.status().message()));
  return id;
}

// Every --in path's documents, in order.
absl::StatusOr<std::vector<Document>> input_documents(const std::vector<std::string>& inputs) {
  std::vector<Document> all;
  for (const std::string& in : inputs) {
    absl::StatusOr<std::vector<Document>> docs = read_documents(in, "--in");
    if (!docs.ok()) return docs.status();
    for (Document& d : *docs) all.push_back(std::move(d));
  }
  return all;
}

// --in values: the option and every positional argument after the options.
std::vector<std::string> input_paths(const Args& parsed) {
  std::vector<std::string> inputs;
  if (std::optional<std::string> in = parsed.text("--in")) inputs.push_back(*in);
  for (const std::string& p : parsed.positional()) inputs.push_back(p);
  return inputs;
}

constexpr const char* kTokenizeUsage =
    R"(usage: dsinf tokenize --tokenizer DIR|FILE --in PATH... --out SHARD [--append-eos] [--json]

Encodes documents with a Hugging Face tokenizer.json exactly as
tokenizer(text)["input_ids"] does (the post-processor's special tokens
included) into one dsinf token shard (2 bytes a token when the vocabulary
fits, else 4), in document order. A text file is one document; a .jsonl file
one document per line (its "text"); a directory, its files in name order.
--append-eos adds tokenizer_config.json's EOS token after every document.
Parallel over documents; a progress line on a terminal. With --json the last
stdout line is {"documents":..,"tokens":..,"bytes":..,"seconds":..}.
)";

}  // namespace

int tokenize_main(const std::vector<std::string>& args) {
  absl::StatusOr<Args> parsed = Args::parse(
      args, {{"--tokenizer", "--in", "--out"}, {"--append-eos", "--json", "--help"}, 100000});
  if (!parsed.ok()) return usage_error("tokenize: " + std::string(parsed.status().message()), kTokenizeUsage);
  if (parsed->flag("--help")) {
    std::cout << kTokenizeUsage;
    return util::kExitOk;
  }
  const std::vector<std::string> inputs = input_paths(*parsed);
  if (!parsed->has("--tokenizer") || !parsed->has("--out") || inputs.empty()) {
    return usage_error("tokenize needs --tokenizer, --in and --out", kTokenizeUsage);
  }
  const std::string tokenizer_path = *parsed->text("--tokenizer");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = open_tokenizer(tokenizer_path);
  if (!tokenizer.ok()) return failed(tokenizer.status());
  TokenizeOptions options;
  options.append_eos = parsed->flag("--append-eos");
  if (options.append_eos) {
    absl::StatusOr<int32_t> eos = tokenizer_eos(**tokenizer, tokenizer_path);
    if (!eos.ok()) return failed(eos.status());
    options.eos_id = *eos;
  }
  absl::StatusOr<std::vector<Document>> docs = input_documents(inputs);
  if (!docs.ok()) return failed(docs.status());
  uint64_t bytes = 0;
  for (const Document& d : *docs) bytes += d.text.size();
  const bool json = parsed->flag("--json");
  ProgressLine progress(bytes, true);
  options.progress = [&](uint64_t b, uint64_t d) { progress.update(b, d); };
  const auto start = Clock::now();
  absl::StatusOr<std::vector<int32_t>> tokens = tokenize_documents(**tokenizer, *docs, options);
  progress.finish();
  if (!tokens.ok()) return failed(absl::InvalidArgumentError(absl::StrCat("--in: ", tokens.status().message())));
  const double seconds = seconds_since(start);
  const std::string out = *parsed->text("--out");
  const int width = (*tokenizer)->vocab_size() <= 65536 ? 2 : 4;
  if (absl::Status s = write_token_shard(out, *tokens, width); !s.ok()) {
    return failed(absl::InvalidArgumentError(absl::StrCat("--out: ", s.message())));
  }
  (json ? std::cerr : std::cout) << absl::StrFormat(
      "tokenize: %d documents, %s, %d tokens in %.3f s (%.1f MB/s) -> %s (%d bytes a token)\n",
      docs->size(), util::format_bytes(bytes), tokens->size(), seconds,
      seconds > 0 ? static_cast<double>(bytes) / seconds / 1e6 : 0.0, out, width);
  if (json) {
    std::cout << nlohmann::json{{"documents", docs->size()},
                                {"tokens", tokens->size()},
                                {"bytes", bytes},
                                {"seconds", seconds},
                                {"out", out}}
                     .dump()
              << std::endl;
  }
  return util::kExitOk;
}

namespace {

constexpr const char* kTemplateUsage =
    R"(usage: dsinf template --tokenizer DIR --in CONVERSATION.json [--add-generation-prompt] [--json]

Prints a conversation rendered with the chat template of DIR's
tokenizer_config.json (or chat_template.jinja), as transformers'
apply_chat_template(messages, tokenize=False) renders it. CONVERSATION.json
is a list of {"role", "content"} messages, or an object with "messages" and
any other template variables (e.g. "tools"). With --json stdout is one object
{"text", "ids", "trained"}: the ids as chat training tokenizes the text, and
which of them carry loss (the assistant turns).
)";

absl::StatusOr<nlohmann::json> read_conversation(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--in: cannot read '", path, "'"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat("--in: '", path, "' is not JSON"));
  if (j.is_array()) j = nlohmann::json{{"messages", j}};
  if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--in: '", path, "' holds neither a list of messages nor {\"messages\": [...]}"));
  }
  return j;
}

// The template, its variables and (with a tokenizer) the turn marks.
int render_conversation(const std::string& dir, const nlohmann::json& conversation,
                        bool generation_prompt, bool json) {
  absl::StatusOr<TokenizerConfig> tc = load_tokenizer_config(dir);
  if (!tc.ok()) return failed(absl::InvalidArgumentError(absl::StrCat("--tokenizer: ", tc.status().message())));
  if (tc->chat_template.empty()) {
    return failed(absl::InvalidArgumentError(absl::StrCat("--tokenizer: '", dir, "' has no chat template")));
  }
  absl::StatusOr<ChatTemplate> tmpl = ChatTemplate::parse(tc->chat_template, tc->source);
  if (!tmpl.ok()) return failed(tmpl.status());
  nlohmann::json context = template_variables(*tc);
  for (const auto& [k, v] : conversation.items()) context[k] = v;
  context["add_generation_prompt"] = generation_prompt;
  absl::StatusOr<std::string> text = tmpl->render(context);
  if (!text.ok()) return failed(absl::InvalidArgumentError(absl::StrCat(tc->source, ": ", text.status().message())));
  if (!json) {
    std::cout << *text << std::flush;
    return util::kExitOk;
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = open_tokenizer(dir);
  if (!tokenizer.ok()) return failed(tokenizer.status());
  ChatFormat format{tokenizer->get(), &*tmpl, template_variables(*tc), ""};
  absl::StatusOr<std::string> turn_end = chat_turn_end(format);
  if (!turn_end.ok()) return failed(absl::InvalidArgumentError(absl::StrCat(tc->source, ": ", turn_end.status().message())));
  format.turn_end = *turn_end;
  absl::StatusOr<Example> example = chat_example(format, conversation["messages"]);
  if (!example.ok()) return failed(absl::InvalidArgumentError(absl::StrCat("--in: ", example.status().message())));
  std::cout << nlohmann::json{{"text", *text}, {"ids", example->ids}, {"trained", example->trained}}.dump()
            << std::endl;
  return util::kExitOk;
}

}  // namespace

int template_main(const std::vector<std::string>& args) {
  absl::StatusOr<Args> parsed =
      Args::parse(args, {{"--tokenizer", "--in"}, {"--add-generation-prompt", "--json", "--help"}, 0});
  if (!parsed.ok()) return usage_error("template: " + std::string(parsed.status().message()), kTemplateUsage);
  if (parsed->flag("--help")) {
    std::cout << kTemplateUsage;
    return util::kExitOk;
  }
  if (!parsed->has("--tokenizer") || !parsed->has("--in")) {
    return usage_error("template needs --tokenizer and --in", kTemplateUsage);
  }
  absl::StatusOr<nlohmann::json> conversation = read_conversation(*parsed->text("--in"));
  if (!conversation.ok()) return failed(conversation.status());
  return render_conversation(config_dir(*parsed->text("--tokenizer")), *conversation,
                             parsed->flag("--add-generation-prompt"), parsed->flag("--json"));
}

namespace {

constexpr const char* kBenchTokenizeUsage =
    R"(usage: dsinf bench tokenize --tokenizer DIR --in PATH... [--reference MODULES] [--json]

Encoding speed of dsinf's tokenizer on the --in documents (as dsinf tokenize
reads them), with every core and with one, against transformers.js's
tokenizer (@lenml/tokenizers under node, from MODULES, default the source
tree's .fixtures/node_modules from scripts/fixtures.sh) on the same documents
in the same run. Each side is timed after one warm-up pass. Prints MB/s of
each and dsinf's ratio to the reference; with --json the last stdout line is
{"bytes":..,"documents":..,"dsinf":{..},"dsinf_one_thread":{..},"reference":{..}|null,"ratio":..}.
)";

struct Timed {
  double seconds = 0;
  uint64_t tokens = 0;
};

absl::StatusOr<Timed> time_native(const Tokenizer& t, const std::vector<Document>& docs, int threads) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
  Timed timed;
  for (int pass = 0; pass < 2; ++pass) {  // the first warms the merge cache
    const auto start = Clock::now();
    absl::StatusOr<std::vector<int32_t>> ids = tokenize_documents(t, docs, {});
    if (!ids.ok()) return ids.status();
    timed = {seconds_since(start), ids->size()};
  }
  return timed;
}

// The reference under node; nullopt (with the reason) when it cannot run.
std::optional<Timed> time_reference(const std::string& modules, const std::string& dir,
                                    const std::vector<Document>& docs, std::string* why) {
  const std::string script = std::string(DSINF_SOURCE_DIR) + "/bench/tokenize_reference.mjs";
  if (!fs::exists(fs::path(modules) / "@lenml/tokenizers")) {
    *why = absl::StrCat("no @lenml/tokenizers in ", modules, " (run scripts/fixtures.sh)");
    return std::nullopt;
  }
  const std::string docs_file = (fs::temp_directory_path() / absl::StrCat("dsinf-bench-docs-", ::getpid(), ".json")).string();
  {
    nlohmann::json list = nlohmann::json::array();
    for (const Document& d : docs) list.push_back(d.text);
    std::ofstream(docs_file) << list.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  const std::string command = absl::StrCat("node '", script, "' '", modules, "' '", dir, "' '", docs_file, "' 2>&1");
  std::string out;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
    const int rc = ::pclose(pipe);
    if (rc != 0) *why = absl::StrCat("node failed (status ", rc, "): ", out.substr(0, 400));
  } else {
    *why = "cannot start node";
  }
  std::error_code ec;
  fs::remove(docs_file, ec);
  if (!why->empty()) return std::nullopt;
  const nlohmann::json j = nlohmann::json::parse(out.substr(out.find('{')), nullptr, false);
  if (j.is_discarded() || !j.contains("seconds")) {
    *why = "unreadable reference output: " + out.substr(0, 200);
    return std::nullopt;
  }
  return Timed{j["seconds"].get<double>(), j["tokens"].get<uint64_t>()};
}

nlohmann::json timed_json(const Timed& t, uint64_t bytes, int threads) {
  return {{"seconds", t.seconds}, {"tokens", t.tokens}, {"threads", threads},
          {"mb_per_s", t.seconds > 0 ? static_cast<double>(bytes) / t.seconds / 1e6 : 0.0}};
}

}  // namespace

int bench_tokenize_main(const std::vector<std::string>& args) {
  absl::StatusOr<Args> parsed =
      Args::parse(args, {{"--tokenizer", "--in", "--reference"}, {"--json", "--help"}, 100000});
  if (!parsed.ok()) return usage_error("bench tokenize: " + std::string(parsed.status().message()), kBenchTokenizeUsage);
  if (parsed->flag("--help")) {
    std::cout << kBenchTokenizeUsage;
    return util::kExitOk;
  }
  const std::vector<std::string> inputs = input_paths(*parsed);
  if (!parsed->has("--tokenizer") || inputs.empty()) {
    return usage_error("bench tokenize needs --tokenizer and --in", kBenchTokenizeUsage);
  }
  const std::string dir = config_dir(*parsed->text("--tokenizer"));
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = open_tokenizer(dir);
  if (!tokenizer.ok()) return failed(tokenizer.status());
  absl::StatusOr<std::vector<Document>> docs = input_documents(inputs);
  if (!docs.ok()) return failed(docs.status());
  uint64_t bytes = 0;
  for (const Document& d : *docs) bytes += d.text.size();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  absl::StatusOr<Timed> all = time_native(**tokenizer, *docs, cores);
  if (!all.ok()) return failed(all.status());
  absl::StatusOr<Timed> one = time_native(**tokenizer, *docs, 1);
  if (!one.ok()) return failed(one.status());
  std::string why;
  const std::string modules = parsed->text("--reference").value_or(std::string(DSINF_SOURCE_DIR) + "/.fixtures/node_modules");
  const std::optional<Timed> ref = time_reference(modules, dir, *docs, &why);
  const double mb = static_cast<double>(bytes) / 1e6;
  const bool json = parsed->flag("--json");
  std::ostream& out = json ? std::cerr : std::cout;
  out << absl::StrFormat("bench tokenize: %d documents, %s, tokenizer %s\n", docs->size(), util::format_bytes(bytes), dir)
      << absl::StrFormat("  dsinf (%d threads)  %8.2f MB/s  %d tokens\n", cores, mb / all->seconds, all->tokens)
      << absl::StrFormat("  dsinf (1 thread)    %8.2f MB/s\n", mb / one->seconds);
  nlohmann::json result = {{"bytes", bytes},
                           {"documents", docs->size()},
                           {"dsinf", timed_json(*all, bytes, cores)},
                           {"dsinf_one_thread", timed_json(*one, bytes, 1)},
                           {"reference", nullptr},
                           {"ratio", nullptr}};
  if (ref) {
    result["reference"] = timed_json(*ref, bytes, 1);
    result["reference"]["name"] = "@lenml/tokenizers (transformers.js) under node";
    result["ratio"] = ref->seconds / all->seconds;
    result["tokens_agree"] = ref->tokens == all->tokens;
    out << absl::StrFormat("  transformers.js     %8.2f MB/s  %d tokens%s\n", mb / ref->seconds, ref->tokens,
                           ref->tokens == all->tokens ? "" : " (token counts differ!)")
        << absl::StrFormat("  ratio               %8.1fx (dsinf, all threads, / transformers.js)\n",
                           ref->seconds / all->seconds);
  } else {
    result["reference_unavailable"] = why;
    out << "  reference: not run: " << why << "\n";
  }
  if (json) std::cout << result.dump() << std::endl;
  return util::kExitOk;
}

}  // namespace dsinf::trainer
