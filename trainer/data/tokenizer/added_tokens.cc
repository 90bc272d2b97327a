#include "trainer/data/tokenizer/added_tokens.h"

#include <algorithm>
#include <utility>

#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_internal {
namespace {

// The code point ending at text[end) (text valid UTF-8, end > 0).
uint32_t code_point_before(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  size_t length;
  return decode_utf8(text, start, &length);
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view text, int32_t id) {
  if (terminal.empty()) terminal.push_back(-1);
  int32_t node = 0;
  for (char c : text) {
    const uint64_t key = (uint64_t(uint32_t(node)) << 8) | static_cast<uint8_t>(c);
    auto [it, inserted] = edges.try_emplace(key, int32_t(terminal.size()));
    if (inserted) terminal.push_back(-1);
    node = it->second;
  }
  terminal[node] = id;
  first_byte[static_cast<uint8_t>(text[0])] = true;
}

bool AddedVocabulary::Trie::longest_at(std::string_view text, size_t at, int32_t* id,
                                       size_t* length) const {
  int32_t node = 0;
  bool found = false;
  for (size_t i = at; i < text.size(); ++i) {
    auto it = edges.find((uint64_t(uint32_t(node)) << 8) | static_cast<uint8_t>(text[i]));
    if (it == edges.end()) break;
    node = it->second;
    if (terminal[node] >= 0) {
      *id = terminal[node];
      *length = i + 1 - at;
      found = true;
    }
  }
  return found;
}

absl::StatusOr<std::unique_ptr<AddedVocabulary>> AddedVocabulary::load(
    const Json* value, std::string_view path, const Bpe& model, const Normalizer* normalizer) {
  std::unique_ptr<AddedVocabulary> vocab(new AddedVocabulary());
  vocab->id_bound_ = model.id_bound();
  if (value == nullptr) return vocab;
  if (!value->is_array()) {
    return json_error(path, absl::StrCat("expected an array, got ", json_type_name(*value)));
  }
  // Hugging Face numbers tokens the model lacks from the model's size on.
  int64_t next_id = static_cast<int64_t>(model.size());
  for (size_t i = 0; i < value->size(); ++i) {
    const Json& entry = (*value)[i];
    const std::string entry_path = json_index(path, i);
    if (!entry.is_object()) {
      return json_error(entry_path,
                        absl::StrCat("expected an object, got ", json_type_name(entry)));
    }
    AddedToken token;
    auto content = member_string(entry, entry_path, "content");
    if (!content.ok()) return content.status();
    token.content = *std::move(content);
    if (find_invalid_utf8(token.content) != kValidUtf8) {
      return json_error(json_child(entry_path, "content"), "not valid UTF-8");
    }
    if (auto id = member_uint(entry, entry_path, "id", kMaxTokenId); !id.ok()) return id.status();
    for (auto [key, flag, fallback] :
         {std::tuple{"single_word", &token.single_word, false},
          std::tuple{"lstrip", &token.lstrip, false}, std::tuple{"rstrip", &token.rstrip, false},
          std::tuple{"normalized", &token.normalized, true},
          std::tuple{"special", &token.special, false}}) {
      auto v = member_bool(entry, entry_path, key, fallback);
      if (!v.ok()) return v.status();
      *flag = *v;
    }
    if (token.content.empty()) continue;
    int64_t id;
    if (auto it = vocab->ids_.find(token.content); it != vocab->ids_.end()) {
      id = it->second;
    } else if (auto model_id = model.token_to_id(token.content)) {
      id = *model_id;
    } else {
      id = next_id++;
      if (id > kMaxTokenId) return json_error(entry_path, "too many added tokens");
    }
    if (token.normalized && normalizer != nullptr) {
      Arena arena(token.content);
      Piece piece = arena.input();
      if (absl::Status s = normalizer->normalize(arena, piece); !s.ok()) {
        return json_error(entry_path, sv(s.message()));
      }
      token.normalized_content = std::string(piece_text(arena, piece));
    } else {
      token.normalized_content = token.content;
    }
    vocab->ids_[token.content] = static_cast<int32_t>(id);
    vocab->tokens_.insert_or_assign(static_cast<int32_t>(id), std::move(token));
    vocab->id_bound_ = std::max(vocab->id_bound_, id + 1);
  }
  for (const auto& [id, token] : vocab->tokens_) {
    if (!token.normalized) {
      vocab->raw_trie_.insert(token.content, id);
    } else if (!token.normalized_content.empty()) {
      vocab->normalized_trie_.insert(token.normalized_content, id);
    }
  }
  return vocab;
}

void AddedVocabulary::split(const Arena& arena, const Piece& piece, bool normalized_set,
                            std::vector<Piece>& out) const {
  const Trie& trie = normalized_set ? normalized_trie_ : raw_trie_;
  const std::string_view text = piece_text(arena, piece);
  auto push = [&](size_t begin, size_t end, int32_t added_id) {
    if (begin >= end) return;
    Piece part = piece;
    part.begin = piece.begin + uint32_t(begin);
    part.end = piece.begin + uint32_t(end);
    part.added_id = added_id;
    out.push_back(part);
  };
  if (trie.empty()) {
    push(0, text.size(), -1);
    return;
  }
  size_t covered = 0;  // Hugging Face's start_offset
  for (size_t at = 0; at < text.size();) {
    int32_t id;
    size_t length;
    if (!trie.first_byte[static_cast<uint8_t>(text[at])] ||
        !trie.longest_at(text, at, &id, &length)) {
      ++at;
      continue;
    }
    size_t start = at, stop = at + length;
    at = stop;  // matches never overlap, whether kept or not
    const AddedToken& token = tokens_.at(id);
    if (token.single_word) {
      const bool word_before = start > 0 && is_word_char(code_point_before(text, start));
      size_t next_length;
      const bool word_after =
          stop < text.size() && is_word_char(decode_utf8(text, stop, &next_length));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      size_t new_start = start;
      while (new_start > 0) {
        const uint32_t cp = code_point_before(text, new_start);
        if (!is_whitespace(cp)) break;
        size_t cp_length = 1;
        while ((static_cast<unsigned char>(text[new_start - cp_length]) & 0xC0) == 0x80) {
          ++cp_length;
        }
        new_start -= cp_length;
      }
      start = std::max(new_start, covered);
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        size_t cp_length;
        if (!is_whitespace(decode_utf8(text, stop, &cp_length))) break;
        stop += cp_length;
      }
    }
    // A match inside what the previous one took (its rstrip) is dropped.
    start = std::max(start, covered);
    if (start >= stop) continue;
    push(covered, start, -1);
    push(start, stop, id);
    covered = stop;
    at = std::max(at, stop);
  }
  push(covered, text.size(), -1);
}

std::optional<int32_t> AddedVocabulary::token_to_id(std::string_view content) const {
  auto it = ids_.find(av(content));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

const AddedToken* AddedVocabulary::token(int32_t id) const {
  auto it = tokens_.find(id);
  return it == tokens_.end() ? nullptr : &it->second;
}

const std::string* AddedVocabulary::decode_form(int32_t id) const {
  const AddedToken* t = token(id);
  return t == nullptr ? nullptr : &t->normalized_content;
}

}  // namespace dsinf::trainer::tokenizer_internal
