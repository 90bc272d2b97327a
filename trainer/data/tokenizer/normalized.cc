#include "trainer/data/tokenizer/normalized.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_internal {

Arena::Arena(std::string_view input) : input_(input) {
  if (input.size() > kArenaBytesMax) throw ArenaFull();
}

void advise_huge_pages(const void* data, size_t bytes) {
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kPageBytes = 4096, kHugePageBytes = uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (begin + kPageBytes - 1) & ~(kPageBytes - 1);
  const uintptr_t last = (begin + bytes) & ~(kPageBytes - 1);
  if (last < first + 4 * kHugePageBytes) return;
  madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

void Arena::reserve_more(size_t bytes) {
  const size_t needed = copies_.size() + bytes;
  if (needed <= copies_align_.capacity()) return;
  // Geometric, so that many small pieces do not reallocate each time; a
  // quarter more than asked, as a replacement may lengthen the text.
  const size_t capacity = std::max(needed + needed / 4, 2 * copies_align_.capacity());
  copies_.reserve(capacity);
  copies_align_.reserve(capacity);
  advise_huge_pages(copies_.data(), copies_.capacity());
  advise_huge_pages(copies_align_.data(), copies_align_.capacity() * sizeof(Span));
}

void Arena::append(std::string_view bytes, Span span) {
  if (size_t{size()} + bytes.size() > kArenaBytesMax) throw ArenaFull();
  copies_.append(bytes);
  copies_align_.resize(copies_.size(), span);
}

void Arena::copy(uint32_t begin, uint32_t end) {
  const size_t length = end - begin;
  if (size_t{size()} + length > kArenaBytesMax) throw ArenaFull();
  const size_t at = copies_.size();
  if (begin >= input_.size()) {
    // From an earlier copy: by offset, as growing may move it.
    const size_t from = begin - input_.size();
    copies_.resize(at + length);
    std::memmove(copies_.data() + at, copies_.data() + from, length);
    copies_align_.resize(at + length);
    std::memmove(copies_align_.data() + at, copies_align_.data() + from, length * sizeof(Span));
    return;
  }
  copies_.append(input_.substr(begin, length));
  copies_align_.resize(at + length);
  Span* out = copies_align_.data() + at;
  for (uint32_t i = begin; i < end;) {  // one span a character
    const Span span = byte_span(i);
    const uint32_t stop = std::min(span.end, end);
    for (; i < stop; ++i) *out++ = span;
  }
}

void Arena::truncate(uint32_t size) {
  copies_.resize(size - input_.size());
  copies_align_.resize(size - input_.size());
}

void prepend(Arena& arena, Piece& piece, std::string_view text) {
  if (piece.empty() || text.empty()) return;
  PieceBuilder builder(arena, text.size() + piece.size());
  builder.append(text, arena.byte_span(piece.begin));
  builder.copy(piece.begin, piece.end);
  piece = builder.finish(piece);
}

void map_bytes(Arena& arena, Piece& piece) {
  if (!piece.byte_mapped) return;
  PieceBuilder builder(arena, 2 * size_t{piece.size()});  // GPT-2 characters take 1 or 2 bytes
  std::string character;
  for (uint32_t i = 0; i < piece.size(); ++i) {
    // Taken again for each byte: appending may move the piece's copy.
    const auto byte = static_cast<uint8_t>(piece_text(arena, piece)[i]);
    character.clear();
    append_utf8(character, byte_level_char(byte));
    builder.append(character, arena.byte_span(piece.begin + i));
  }
  piece = builder.finish(piece);
  piece.byte_mapped = false;
}

void Replacer::add(const MatchRange& range) {
  if (!range.is_match) {
    if (started_) builder_.copy(piece_.begin + range.begin, piece_.begin + range.end);
    return;
  }
  if (!started_) {
    arena_.reserve_more(piece_.size());
    builder_.copy(piece_.begin, piece_.begin + range.begin);
    started_ = true;
  }
  // Hugging Face aligns inserted text with the byte before the insertion
  // point: the match's last byte (for an empty match, the byte before it).
  Span span;
  if (range.end > 0) {
    span = arena_.byte_span(piece_.begin + range.end - 1);
  } else {
    const uint32_t first = arena_.byte_span(piece_.begin).begin;
    span = {first, first};
  }
  builder_.append(content_, span);
}

absl::Status Splitter::add(const MatchRange& range) {
  const bool matched = range.is_match != invert_;
  bool join = false;  // whether the range extends the pending part
  switch (behavior_) {
    case SplitBehavior::kIsolated:
      return emit(range.begin, range.end);
    case SplitBehavior::kRemoved:
      return matched ? absl::OkStatus() : emit(range.begin, range.end);
    case SplitBehavior::kContiguous:
      join = matched == last_matched_;
      break;
    case SplitBehavior::kMergedWithPrevious:
      join = matched && !last_matched_;
      break;
    case SplitBehavior::kMergedWithNext:
      // A match takes the text that follows it (Hugging Face walks the ranges
      // backwards: a match is joined to the part after it when that part
      // starts with a non-match).
      join = last_matched_ && !matched;
      break;
  }
  last_matched_ = matched;
  if (pending_ && join) {
    pending_end_ = range.end;
    return absl::OkStatus();
  }
  absl::Status status = pending_ ? emit(pending_begin_, pending_end_) : absl::OkStatus();
  pending_ = true;
  pending_begin_ = range.begin;
  pending_end_ = range.end;
  return status;
}

absl::Status Splitter::finish() {
  if (!pending_) return absl::OkStatus();
  pending_ = false;
  return emit(pending_begin_, pending_end_);
}

absl::Status Splitter::emit(uint32_t begin, uint32_t end) {
  if (begin == end) return absl::OkStatus();
  Piece part = piece_;
  part.begin = piece_.begin + begin;
  part.end = piece_.begin + end;
  return sink_(part);
}

}  // namespace dsinf::trainer::tokenizer_internal
