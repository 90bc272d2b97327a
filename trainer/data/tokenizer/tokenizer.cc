// The pipeline of Hugging Face's TokenizerImpl::encode for one sequence:
// added tokens split the raw text; the rest is normalized, split again by the
// normalized added tokens, pre-tokenized and run through the model; the
// post-processor adds its tokens. Components live in files of their own.
#include "trainer/data/tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <new>
#include <sstream>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "trainer/data/tokenizer/added_tokens.h"
#include "trainer/data/tokenizer/bpe.h"
#include "trainer/data/tokenizer/decoders.h"
#include "trainer/data/tokenizer/json_util.h"
#include "trainer/data/tokenizer/normalized.h"
#include "trainer/data/tokenizer/normalizers.h"
#include "trainer/data/tokenizer/post_processors.h"
#include "trainer/data/tokenizer/pre_tokenizers.h"
#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer {

using namespace tokenizer_internal;  // NOLINT: this file assembles them

struct Tokenizer::Impl {
  std::string source;
  std::unique_ptr<Normalizer> normalizer;       // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // may be null
  std::unique_ptr<Bpe> model;
  std::unique_ptr<PostProcessor> post_processor;  // may be null
  std::unique_ptr<Decoder> decoder;               // may be null
  std::unique_ptr<AddedVocabulary> added;

  absl::Status load(const Json& root);
  absl::StatusOr<Encoding> encode(std::string_view text, bool add_special_tokens) const;
  const std::string* token_string(int32_t id) const {
    if (const AddedToken* t = added->token(id)) return &t->content;
    return model->id_to_token(id);
  }
};

namespace {

absl::StatusOr<std::string> read_file(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot be opened"));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(path, ": read failed"));
  return std::move(contents).str();
}

}  // namespace

absl::Status Tokenizer::Impl::load(const Json& root) {
  if (!root.is_object()) {
    return json_error("(root)", absl::StrCat("expected an object, got ", json_type_name(root)));
  }
  if (const Json* version = json_member(root, "version")) {
    if (!version->is_string() || version->get_ref<const std::string&>() != "1.0") {
      return json_error("version", "expected \"1.0\"");
    }
  }
  // Truncation and fixed padding would change what encode returns; padding
  // to the longest of a batch leaves a single sequence alone.
  if (json_member(root, "truncation") != nullptr) {
    return json_error("truncation", "is set; truncation is not supported (leave it null)");
  }
  if (const Json* padding = json_member(root, "padding")) {
    const Json* strategy = json_member(*padding, "strategy");
    if (strategy == nullptr || !strategy->is_string() ||
        strategy->get_ref<const std::string&>() != "BatchLongest") {
      return json_error("padding", "only the BatchLongest strategy is supported (or null)");
    }
  }
  if (const Json* value = json_member(root, "normalizer")) {
    auto loaded = load_normalizer(*value, "normalizer");
    if (!loaded.ok()) return loaded.status();
    normalizer = *std::move(loaded);
  }
  if (const Json* value = json_member(root, "pre_tokenizer")) {
    auto loaded = load_pre_tokenizer(*value, "pre_tokenizer");
    if (!loaded.ok()) return loaded.status();
    pre_tokenizer = *std::move(loaded);
  }
  const Json* model_json = json_member(root, "model");
  if (model_json == nullptr) return json_error("model", "missing");
  auto loaded_model = Bpe::load(*model_json, "model");
  if (!loaded_model.ok()) return loaded_model.status();
  model = *std::move(loaded_model);
  if (const Json* value = json_member(root, "post_processor")) {
    auto loaded = load_post_processor(*value, "post_processor");
    if (!loaded.ok()) return loaded.status();
    post_processor = *std::move(loaded);
  }
  if (const Json* value = json_member(root, "decoder")) {
    auto loaded = load_decoder(*value, "decoder");
    if (!loaded.ok()) return loaded.status();
    decoder = *std::move(loaded);
  }
  auto loaded_added = AddedVocabulary::load(json_member(root, "added_tokens"), "added_tokens",
                                            *model, normalizer.get());
  if (!loaded_added.ok()) return loaded_added.status();
  added = *std::move(loaded_added);
  // An id the post-processor adds must be a token: callers index tables by id.
  if (post_processor != nullptr) {
    for (int32_t id : post_processor->added_ids()) {
      if (token_string(id) == nullptr) {
        return json_error("post_processor",
                          absl::StrCat("adds id ", id, ", which is no token of the vocabulary"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Encoding> Tokenizer::Impl::encode(std::string_view text,
                                                 bool add_special_tokens) const {
  if (const size_t bad = find_invalid_utf8(text); bad != kValidUtf8) {
    return absl::InvalidArgumentError(absl::StrCat("text is not valid UTF-8 at byte offset ", bad));
  }
  if (text.size() >= (size_t{1} << 31)) {
    return absl::InvalidArgumentError(
        absl::StrCat("text of ", text.size(), " bytes is too long (at most 2^31 - 1)"));
  }
  Arena arena(text);
  Encoding encoding;
  // About 4 bytes a token in English with large vocabularies, 3 in code;
  // more tokens just grow the vectors.
  encoding.ids.reserve(text.size() / 3 + 4);
  encoding.offsets.reserve(text.size() / 3 + 4);
  advise_huge_pages(encoding.ids.data(), encoding.ids.capacity() * sizeof(encoding.ids[0]));
  advise_huge_pages(encoding.offsets.data(),
                    encoding.offsets.capacity() * sizeof(encoding.offsets[0]));
  auto to_model = [&](const Piece& piece) -> absl::Status {
    if (piece.empty()) return absl::OkStatus();
    return model->tokenize(arena, piece, encoding);
  };
  // Each piece goes through the rest of the pipeline at once, so that a
  // document's pre-tokens are never all held.
  auto to_encoding = [&](const Piece& piece) -> absl::Status {
    if (piece.added_id >= 0) {
      const Span span = original_span(arena, piece.begin, piece.end);
      encoding.ids.push_back(piece.added_id);
      encoding.offsets.emplace_back(span.begin, span.end);
      return absl::OkStatus();
    }
    if (pre_tokenizer == nullptr) return to_model(piece);
    return pre_tokenizer->pre_tokenize(arena, piece, to_model);
  };

  // The raw added tokens, then the normalized remainder's normalized ones.
  std::vector<Piece> raw_parts, parts;
  added->split(arena, arena.input(), /*normalized_set=*/false, raw_parts);
  for (Piece& part : raw_parts) {
    if (part.added_id >= 0) {
      if (absl::Status s = to_encoding(part); !s.ok()) return s;
      continue;
    }
    if (normalizer != nullptr) {
      if (absl::Status s = normalizer->normalize(arena, part); !s.ok()) return s;
    }
    if (part.empty()) continue;
    parts.clear();
    added->split(arena, part, /*normalized_set=*/true, parts);
    for (const Piece& piece : parts) {
      if (absl::Status s = to_encoding(piece); !s.ok()) return s;
    }
  }
  if (post_processor != nullptr) {
    post_processor->process(encoding, add_special_tokens, static_cast<uint32_t>(text.size()),
                            [this](int32_t id) { return token_string(id); });
  }
  return encoding;
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::string& path) {
  std::string file = path;
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    file = (std::filesystem::path(path) / "tokenizer.json").string();
  }
  if (!std::filesystem::exists(file, error)) {
    return absl::NotFoundError(absl::StrCat(file, ": no such file"));
  }
  try {
    auto contents = read_file(file);
    if (!contents.ok()) return contents.status();
    Json root;
    try {
      root = Json::parse(*contents);
    } catch (const Json::parse_error& e) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": malformed JSON: ", e.what()));
    }
    contents->clear();
    auto impl = std::make_unique<Impl>();
    impl->source = file;
    if (absl::Status s = impl->load(root); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(file, ": ", s.message()));
    }
    return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(file, ": out of memory while loading"));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", e.what()));
  }
}

absl::StatusOr<Encoding> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  try {
    return impl_->encode(text, add_special_tokens);
  } catch (const ArenaFull& e) {
    return absl::ResourceExhaustedError(absl::StrCat("encode: ", e.what()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of memory encoding ", text.size(), " bytes"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("encode: ", e.what()));
  }
}

std::string Tokenizer::decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  try {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      const AddedToken* added = impl_->added->token(id);
      if (added != nullptr) {
        if (skip_special_tokens && added->special) continue;
        tokens.push_back(added->normalized_content);
      } else if (const std::string* token = impl_->model->id_to_token(id)) {
        tokens.push_back(*token);
      }
    }
    if (impl_->decoder == nullptr) {
      std::string out;
      for (size_t i = 0; i < tokens.size(); ++i) {
        if (i > 0) out.push_back(' ');
        out += tokens[i];
      }
      return out;
    }
    impl_->decoder->decode_chain(tokens);
    std::string out;
    for (const std::string& t : tokens) out += t;
    return out;
  } catch (const std::exception&) {
    return std::string();  // only allocation can fail here
  }
}

size_t Tokenizer::vocab_size() const {
  return static_cast<size_t>(std::max(impl_->model->id_bound(), impl_->added->id_bound()));
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto id = impl_->added->token_to_id(token)) return id;
  return impl_->model->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (const std::string* token = impl_->token_string(id)) return *token;
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
  const AddedToken* token = impl_->added->token(id);
  return token != nullptr && token->special;
}

const std::string& Tokenizer::source() const { return impl_->source; }

}  // namespace dsinf::trainer
