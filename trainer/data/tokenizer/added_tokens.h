// tokenizer.json "added_tokens", matched as Hugging Face's AddedVocabulary
// does: tokens with normalized=false on the raw text first, then those with
// normalized=true on each normalized remaining piece; leftmost-longest,
// non-overlapping; single_word drops a match inside a word, lstrip/rstrip
// take the whitespace beside a match into it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/data/tokenizer/bpe.h"
#include "trainer/data/tokenizer/json_util.h"
#include "trainer/data/tokenizer/normalized.h"
#include "trainer/data/tokenizer/normalizers.h"

namespace dsinf::trainer::tokenizer_internal {

struct AddedToken {
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
  // content through the normalizer, for normalized tokens (what they match
  // and what decoding gives).
  std::string normalized_content;
};

class AddedVocabulary {
 public:
  // `value`: the "added_tokens" array (or null) at JSON path `path`. Ids come
  // from the model's vocabulary when the content is there, else follow it, as
  // Hugging Face assigns them.
  static absl::StatusOr<std::unique_ptr<AddedVocabulary>> load(const Json* value,
                                                               std::string_view path,
                                                               const Bpe& model,
                                                               const Normalizer* normalizer);

  // Appends the parts of `piece`: added tokens of the raw (normalized ==
  // false) or the normalized set, and the text between them.
  void split(const Arena& arena, const Piece& piece, bool normalized_set,
             std::vector<Piece>& out) const;

  std::optional<int32_t> token_to_id(std::string_view content) const;
  const AddedToken* token(int32_t id) const;
  // The string decoding gives for id (the normalized form of a normalized token).
  const std::string* decode_form(int32_t id) const;
  int64_t id_bound() const { return id_bound_; }

 private:
  // A byte trie of token contents.
  struct Trie {
    absl::flat_hash_map<uint64_t, int32_t> edges;  // (node << 8 | byte) -> node
    std::vector<int32_t> terminal;                 // node -> token id or -1
    bool first_byte[256] = {};
    bool empty() const { return terminal.size() <= 1; }
    void insert(std::string_view text, int32_t id);
    // The id and length of the longest token starting at text[at], if any.
    bool longest_at(std::string_view text, size_t at, int32_t* id, size_t* length) const;
  };

  absl::flat_hash_map<std::string, int32_t> ids_;
  absl::flat_hash_map<int32_t, AddedToken> tokens_;
  Trie raw_trie_;
  Trie normalized_trie_;
  int64_t id_bound_ = 0;
};

}  // namespace dsinf::trainer::tokenizer_internal
