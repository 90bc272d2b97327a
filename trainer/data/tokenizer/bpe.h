// tokenizer.json "model" of type BPE, as Hugging Face's models::bpe runs it:
// each character of a pre-token looked up (byte_fallback to <0xAB> tokens,
// else unk_token, fused when fuse_unk), then merges applied lowest rank first,
// leftmost first among equal ranks. ignore_merges emits a pre-token found
// whole in the vocabulary as is. Results are cached per pre-token (sharded,
// mutex-protected, bounded), so encode is thread-safe. A long pre-token (a
// whole document when nothing splits the text) is merged in parts, cut
// between characters that no merge joins.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/data/tokenizer/json_util.h"
#include "trainer/data/tokenizer/normalized.h"
#include "trainer/data/tokenizer/tokenizer.h"
#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_internal {

class Bpe {
 public:
  // `value` is the "model" object at JSON path `path`.
  static absl::StatusOr<std::unique_ptr<Bpe>> load(const Json& value, std::string_view path);

  // Appends the ids of `piece` and, for each, the original byte range.
  absl::Status tokenize(const Arena& arena, const Piece& piece, Encoding& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The model's token for id, or nullptr.
  const std::string* id_to_token(int32_t id) const;
  // 1 + the largest id of the vocabulary (0 when empty).
  int64_t id_bound() const { return id_bound_; }
  size_t size() const { return vocab_.size(); }

 private:
  // One token of a word: its id and the word bytes [begin, end) it covers.
  struct WordToken {
    int32_t id;
    uint32_t begin;
    uint32_t end;
  };
  using WordTokens = absl::InlinedVector<WordToken, 4>;
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  struct CacheShard {
    std::mutex mutex;
    absl::flat_hash_map<std::string, WordTokens> words;
  };
  static constexpr size_t kCacheShards = 64;
  static constexpr size_t kCacheWordsPerShard = 4096;
  static constexpr size_t kCacheWordBytesMax = 256;

  Bpe() = default;
  // The tokens of one pre-token; `byte_mapped`: each byte stands for its
  // GPT-2 character. cached_word goes through the cache.
  absl::Status cached_word(std::string_view word, bool byte_mapped, WordTokens& out) const;
  absl::Status tokenize_word(std::string_view word, bool byte_mapped, WordTokens& out) const;
  // ignore_merges: the word as one token of the vocabulary, if it is one.
  bool whole_word(std::string_view word, bool byte_mapped, WordTokens& out) const;
  absl::Status merge_word(std::string_view word, bool byte_mapped, WordTokens& out) const;
  static uint64_t char_pair(uint32_t left, uint32_t right) {
    return (uint64_t(left) << 32) | right;
  }
  // Whether some merge joins a token ending with character `left` to one
  // starting with `right`; if none does, no token ever spans the two.
  bool joinable(uint32_t left, uint32_t right) const {
    return joinable_.contains(char_pair(left, right));
  }
  // Whether character c (a GPT-2 character when byte_mapped) starts as a
  // token of its own, rather than byte fallbacks or unk.
  bool is_char_token(uint32_t c, bool byte_mapped) const {
    if (byte_mapped) return byte_char_ids_[byte_level_byte(c)] >= 0;
    return char_ids_.contains(c);
  }
  const Merge* find_merge(int32_t left, int32_t right) const {
    auto it = merges_.find((uint64_t(uint32_t(left)) << 32) | uint32_t(right));
    return it == merges_.end() ? nullptr : &it->second;
  }

  absl::flat_hash_map<std::string, int32_t> vocab_;
  absl::flat_hash_map<int32_t, std::string> tokens_;
  absl::flat_hash_map<uint64_t, Merge> merges_;      // (left id << 32 | right id)
  absl::flat_hash_map<uint32_t, int32_t> char_ids_;  // single-character tokens
  absl::flat_hash_set<uint64_t> joinable_;           // char_pair(last of left, first of right)
  std::array<int32_t, 256> byte_char_ids_{};         // GPT-2 character of each byte
  std::array<int32_t, 256> byte_fallback_ids_{};     // <0xAB> tokens
  std::optional<std::string> unk_token_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int64_t id_bound_ = 0;
  mutable std::array<std::array<CacheShard, kCacheShards>, 2> cache_;  // [byte_mapped]
};

}  // namespace dsinf::trainer::tokenizer_internal
