// The text of one encode call as it moves through the pipeline: normalized
// bytes, each aligned to the range of the original input it came from (Hugging
// Face's NormalizedString), and the pieces the added tokens and the
// pre-tokenizers cut it into. Pieces are ranges of one growing arena, so that
// splitting copies nothing; a transformation appends the new text and points
// the piece at it.
//
// Memory stays a small multiple of the input: the input is viewed, not
// copied, and its bytes are aligned to their characters, which is computed
// when asked instead of stored (8 bytes a byte otherwise); only transformed
// copies store alignments. The pre-tokenizers pass each pre-token on as soon
// as it is cut (PieceSink), so a document's pre-tokens are never all held.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "trainer/data/tokenizer/regex.h"

namespace dsinf::trainer::tokenizer_internal {

// A byte range [begin, end) of the original input.
struct Span {
  uint32_t begin;
  uint32_t end;
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

// The input of one encode call, then the transformed copies of its pieces,
// addressed as one range of offsets: [0, input size) is the input, the copies
// follow. The input is viewed, not copied; it must outlive the arena.
class Arena {
 public:
  explicit Arena(std::string_view input);

  // The whole input.
  Piece input() const { return Piece{0, uint32_t(input_.size())}; }
  // The offset the next appended byte gets.
  uint32_t size() const { return uint32_t(input_.size() + copies_.size()); }
  // The bytes of a piece (a piece lies in the input or in one copy).
  std::string_view text(const Piece& piece) const {
    if (piece.begin < input_.size()) return input_.substr(piece.begin, piece.size());
    return std::string_view(copies_).substr(piece.begin - input_.size(), piece.size());
  }
  // Where byte `at` came from: for the input, its whole character.
  Span byte_span(uint32_t at) const {
    if (at >= input_.size()) return copies_align_[at - input_.size()];
    auto continuation = [&](uint32_t i) {
      return (static_cast<unsigned char>(input_[i]) & 0xC0) == 0x80;
    };
    uint32_t begin = at, end = at + 1;
    while (begin > 0 && continuation(begin)) --begin;
    while (end < input_.size() && continuation(end)) ++end;
    return {begin, end};
  }

  // Room for `bytes` more bytes of copies (a transformation about to copy a
  // whole piece: a document's copy then grows neither by doubling nor with
  // page faults a 4 KiB page at a time).
  void reserve_more(size_t bytes);
  // Appends `bytes`, every byte aligned to `span`.
  void append(std::string_view bytes, Span span);
  // Appends bytes [begin, end) (of one piece) with their own alignments.
  void copy(uint32_t begin, uint32_t end);
  // Drops the copies from offset `size` on.
  void truncate(uint32_t size);

 private:
  std::string_view input_;
  std::string copies_;
  std::vector<Span> copies_align_;  // (copies_.size()): where each copied byte came from
};

// Fresh memory costs a page fault per 4 KiB page when first written (about
// 13 us a page on our VMs: a third of the time of encoding a 23 MB document,
// where a small one reuses freed heap pages). A buffer of megabytes asks for
// transparent huge pages, a fault per 2 MiB; the kernel may ignore the hint.
void advise_huge_pages(const void* data, size_t bytes);

// Receives the pieces a step cuts, in order. It may append to the arena (and
// so move its copies): a step holds offsets, never views, across the call.
using PieceSink = absl::FunctionRef<absl::Status(const Piece&)>;

// How the delimiters of a Split survive (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

inline std::string_view piece_text(const Arena& arena, const Piece& piece) {
  return arena.text(piece);
}

// The original range of a non-empty piece (its first byte's start to its
// last byte's end).
inline Span original_span(const Arena& arena, uint32_t begin, uint32_t end) {
  return {arena.byte_span(begin).begin, arena.byte_span(end - 1).end};
}

// Builds a transformed copy of a piece at the end of the arena, of about
// `expected_bytes`.
class PieceBuilder {
 public:
  PieceBuilder(Arena& arena, size_t expected_bytes) : arena_(arena), begin_(arena.size()) {
    arena.reserve_more(expected_bytes);
  }
  void append(std::string_view bytes, Span span) { arena_.append(bytes, span); }
  void copy(uint32_t begin, uint32_t end) { arena_.copy(begin, end); }
  Piece finish(const Piece& like) const {
    Piece piece = like;
    piece.begin = begin_;
    piece.end = arena_.size();
    return piece;
  }

 private:
  Arena& arena_;
  uint32_t begin_;
};

// The transformations of Hugging Face's NormalizedString, each replacing the
// piece by its transformed copy (pieces must not be byte_mapped).
// prepend: the new text is aligned to the first character (nothing when empty).
void prepend(Arena& arena, Piece& piece, std::string_view text);
// Materializes a byte_mapped piece: each byte becomes its GPT-2 character.
void map_bytes(Arena& arena, Piece& piece);

// Replaces each matched range of a piece with `content`, aligned to the
// match's last byte. The ranges (covering the piece, in order) are added one
// at a time; the copy starts at the first match, so a piece without one is
// left as it is. Nothing else may append to the arena meanwhile.
class Replacer {
 public:
  Replacer(Arena& arena, const Piece& piece, std::string_view content)
      : arena_(arena), piece_(piece), content_(content), builder_(arena, 0) {}
  void add(const MatchRange& range);
  // The replaced piece.
  Piece finish() const { return started_ ? builder_.finish(piece_) : piece_; }

 private:
  Arena& arena_;
  Piece piece_;
  std::string_view content_;
  PieceBuilder builder_;
  bool started_ = false;
};

// Cuts a piece into the parts that its ranges (covering it, in order, added
// one at a time) and `behavior` give, passing each non-empty part to `sink`
// as soon as it is complete.
class Splitter {
 public:
  Splitter(const Piece& piece, SplitBehavior behavior, bool invert, PieceSink sink)
      : piece_(piece), behavior_(behavior), invert_(invert), sink_(sink) {}
  absl::Status add(const MatchRange& range);
  // Passes on the last part.
  absl::Status finish();

 private:
  absl::Status emit(uint32_t begin, uint32_t end);

  Piece piece_;
  SplitBehavior behavior_;
  bool invert_;
  PieceSink sink_;
  // The part still open to what follows (merging behaviors).
  bool pending_ = false;
  uint32_t pending_begin_ = 0, pending_end_ = 0;
  bool last_matched_ = false;  // whether the last range added was a match
};

}  // namespace dsinf::trainer::tokenizer_internal
