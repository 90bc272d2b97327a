// Chat templates rendered natively, as transformers renders them: jinja2's
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with
// the loopcontrols extension and {% generation %}, the globals
// raise_exception and strftime_now, and tojson as json.dumps(ensure_ascii=
// False). The layers:
//   lexer.cc       tokens and whitespace control
//   parser.cc      the grammar; unsupported tags, filters and tests refused
//   scoping.cc     which frame holds each variable (jinja2's idtracking)
//   renderer.cc    statements and expressions, frames, limits
//   operators.cc   Python's operators and printf-style formatting
//   methods.cc     attribute/item access, calls, globals, dict/list methods
//   strings.cc     str methods; filters.cc and predicates.cc: filters, tests
//   value.cc       values: truth, equality, str(), repr(), json.dumps
#include "trainer/data/chat_template/chat_template.h"

#include <filesystem>
#include <fstream>
#include <new>
#include <sstream>

#include "absl/status/status.h"
#include "trainer/data/chat_template/error.h"
#include "trainer/data/chat_template/parser.h"
#include "trainer/data/chat_template/program.h"

namespace dsinf::trainer {

namespace {

using jinja::str_cat;

absl::Status to_status(const jinja::TemplateError& e, const std::string& origin) {
  std::string where = origin + ": chat_template";
  if (e.line > 0) where += " line " + std::to_string(e.line);
  return absl::Status(e.code, str_cat(where, ": ", e.message));
}

// Runs `body`, turning whatever it throws into a status for `origin`.
template <typename F>
auto guarded(const std::string& origin, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const jinja::TemplateError& e) {
    return to_status(e, origin);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(origin + ": chat_template: out of memory");
  } catch (const std::exception& e) {
    return absl::InternalError(str_cat(origin, ": chat_template: ", e.what()));
  } catch (...) {
    return absl::InternalError(origin + ": chat_template: unknown failure");
  }
}

absl::StatusOr<std::string> token_content(const nlohmann::json& config, const std::string& key,
                                          const std::string& source) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    const auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  return absl::InvalidArgumentError(
      str_cat(source, ": \"", key, "\" must be a string or an added token {\"content\": ...}"));
}

absl::StatusOr<std::string> default_template(const nlohmann::json& value,
                                             const std::string& source) {
  if (value.is_null()) return std::string();
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    for (const auto& entry : value) {
      const bool valid = entry.is_object() && entry.contains("name") && entry["name"].is_string() &&
                         entry.contains("template") && entry["template"].is_string();
      if (!valid) {
        return absl::InvalidArgumentError(
            source +
            ": \"chat_template\" lists an entry that is not {\"name\": ..., \"template\": ...}");
      }
      if (entry["name"] == "default") return entry["template"].get<std::string>();
    }
    return std::string();
  }
  return absl::InvalidArgumentError(
      source + ": \"chat_template\" must be a string or a list of {\"name\", \"template\"}");
}

absl::StatusOr<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(path.string() + ": cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(path.string() + ": read failed");
  return text.str();
}

}  // namespace

absl::StatusOr<TokenizerConfig> read_tokenizer_config(const std::string& path) {
  try {
    std::error_code ec;
    std::filesystem::path file(path);
    if (std::filesystem::is_directory(file, ec)) file /= "tokenizer_config.json";
    if (!std::filesystem::exists(file, ec))
      return absl::NotFoundError(file.string() + ": not found");
    absl::StatusOr<std::string> text = read_file(file);
    if (!text.ok()) return text.status();
    const nlohmann::json config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded())
      return absl::InvalidArgumentError(file.string() + ": not valid JSON");
    if (!config.is_object())
      return absl::InvalidArgumentError(file.string() + ": not a JSON object");

    TokenizerConfig out;
    out.source = file.string();
    const auto chat_template = config.find("chat_template");
    absl::StatusOr<std::string> source = default_template(
        chat_template == config.end() ? nlohmann::json() : *chat_template, out.source);
    if (!source.ok()) return source.status();
    out.chat_template = std::move(*source);
    if (out.chat_template.empty()) {
      // transformers >= 4.43 saves the template beside the config instead.
      const std::filesystem::path beside = file.parent_path() / "chat_template.jinja";
      if (std::filesystem::exists(beside, ec)) {
        absl::StatusOr<std::string> jinja = read_file(beside);
        if (!jinja.ok()) return jinja.status();
        out.chat_template = std::move(*jinja);
      }
    }
    for (auto [key, field] : {std::pair{"bos_token", &out.bos_token},
                              {"eos_token", &out.eos_token},
                              {"pad_token", &out.pad_token},
                              {"unk_token", &out.unk_token}}) {
      absl::StatusOr<std::string> token = token_content(config, key, out.source);
      if (!token.ok()) return token.status();
      *field = std::move(*token);
    }
    return out;
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(path + ": out of memory");
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(str_cat(path, ": ", e.what()));
  }
}

namespace jinja {

absl::StatusOr<std::shared_ptr<const ChatTemplate::Program>> compile(std::string_view source,
                                                                     std::string origin) {
  return guarded(origin, [&]() -> absl::StatusOr<std::shared_ptr<const ChatTemplate::Program>> {
    auto program = std::make_shared<ChatTemplate::Program>();
    program->origin = origin;
    program->tmpl = parse_template(source);
    return std::shared_ptr<const ChatTemplate::Program>(std::move(program));
  });
}

namespace {

template <typename Json>
absl::StatusOr<std::string> render_json(const ChatTemplate::Program& program, const Json& context,
                                        const RenderOptions& options) {
  return guarded(program.origin, [&]() -> absl::StatusOr<std::string> {
    Renderer renderer(options, context);
    return renderer.render(program.tmpl);
  });
}

}  // namespace

absl::StatusOr<std::string> render_program(const ChatTemplate::Program& program,
                                           const nlohmann::json& context,
                                           const RenderOptions& options) {
  return render_json(program, context, options);
}

absl::StatusOr<std::string> render_program_ordered(const ChatTemplate::Program& program,
                                                   const nlohmann::ordered_json& context,
                                                   const RenderOptions& options) {
  return render_json(program, context, options);
}

}  // namespace jinja

ChatTemplate::ChatTemplate(std::shared_ptr<const Program> program) : program_(std::move(program)) {}
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

absl::StatusOr<ChatTemplate> ChatTemplate::parse(std::string_view source, std::string origin) {
  absl::StatusOr<std::shared_ptr<const Program>> program =
      jinja::compile(source, std::move(origin));
  if (!program.ok()) return program.status();
  return ChatTemplate(std::move(*program));
}

absl::StatusOr<std::string> ChatTemplate::render(const nlohmann::json& context) const {
  if (!program_)
    return absl::FailedPreconditionError("chat_template: rendering a moved-from template");
  return jinja::render_program(*program_, context, jinja::RenderOptions{});
}

}  // namespace dsinf::trainer
