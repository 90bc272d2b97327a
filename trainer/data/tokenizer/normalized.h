// The text of one encode call as it moves through the pipeline: normalized
// bytes, each aligned to the range of the original input it came from (Hugging
// Face's NormalizedString), and the pieces the added tokens and the
// pre-tokenizers cut it into. Pieces are ranges of one growing arena, so that
// splitting copies nothing; a transformation appends the new text and points
// the piece at it.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "trainer/data/tokenizer/regex.h"

namespace dsinf::trainer::tokenizer_internal {

// A byte range [begin, end) of the original input.
struct Span {
  uint32_t begin;
  uint32_t end;
};

struct Arena {
  std::string text;
  std::vector<Span> align;  // (text.size()): where each byte came from
};

// Offsets into the arena are 32-bit: a text whose transformations would grow
// it past that throws this (Tokenizer::encode turns it into a status).
struct ArenaFull : std::length_error {
  ArenaFull() : std::length_error("the text grew past 4 GiB in the pipeline") {}
};
inline constexpr size_t kArenaBytesMax = 0xFFFFFFF0u;

struct Piece {
  uint32_t begin = 0;  // [begin, end) of Arena::text
  uint32_t end = 0;
  int32_t added_id = -1;     // >= 0: an added token, done
  bool byte_mapped = false;  // byte-level: each byte stands for its GPT-2 character
  uint32_t size() const { return end - begin; }
  bool empty() const { return begin == end; }
};

// How the delimiters of a Split survive (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

inline std::string_view piece_text(const Arena& arena, const Piece& piece) {
  return std::string_view(arena.text).substr(piece.begin, piece.size());
}

// The original range of a non-empty piece (its first byte's start to its
// last byte's end).
inline Span original_span(const Arena& arena, uint32_t begin, uint32_t end) {
  return {arena.align[begin].begin, arena.align[end - 1].end};
}

// Appends the input with each byte aligned to its whole character.
Piece append_original(Arena& arena, std::string_view input);

// Builds a transformed copy of a piece at the end of the arena.
class PieceBuilder {
 public:
  explicit PieceBuilder(Arena& arena) : arena_(arena), begin_(uint32_t(arena.text.size())) {}
  // Appends `bytes`, every byte aligned to `span`.
  void append(std::string_view bytes, Span span);
  // Appends arena bytes [begin, end) with their own alignments.
  void copy(uint32_t begin, uint32_t end);
  Piece finish(const Piece& like) const;

 private:
  Arena& arena_;
  uint32_t begin_;
};

// The transformations of Hugging Face's NormalizedString, each replacing the
// piece by its transformed copy (pieces must not be byte_mapped).
// prepend: the new text is aligned to the first character (nothing when empty).
void prepend(Arena& arena, Piece& piece, std::string_view text);
// Replaces each matched range with `content`, aligned to the match's last byte.
void replace_matches(Arena& arena, Piece& piece, const std::vector<MatchRange>& matches,
                     std::string_view content);
// Materializes a byte_mapped piece: each byte becomes its GPT-2 character.
void map_bytes(Arena& arena, Piece& piece);

// Appends the non-empty parts of `piece` that `matches` and `behavior` give.
void split_piece(const Piece& piece, const std::vector<MatchRange>& matches, SplitBehavior behavior,
                 bool invert, std::vector<Piece>& out);

}  // namespace dsinf::trainer::tokenizer_internal
