#include "trainer/data/tokenizer/normalized.h"

#include <algorithm>
#include <cstring>

#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_internal {

Piece append_original(Arena& arena, std::string_view input) {
  if (arena.text.size() + input.size() > kArenaBytesMax) throw ArenaFull();
  const auto base = static_cast<uint32_t>(arena.text.size());
  arena.text.append(input);
  arena.align.resize(arena.text.size());
  Span* align = arena.align.data() + base;
  const size_t n = input.size();
  for (size_t i = 0; i < n;) {
    size_t length = 1;
    if (static_cast<unsigned char>(input[i]) >= 0x80) decode_utf8(input, i, &length);
    const Span span{uint32_t(i), uint32_t(i + length)};
    for (size_t k = 0; k < length; ++k) align[i + k] = span;
    i += length;
  }
  return Piece{base, uint32_t(arena.text.size())};
}

void PieceBuilder::append(std::string_view bytes, Span span) {
  if (arena_.text.size() + bytes.size() > kArenaBytesMax) throw ArenaFull();
  arena_.text.append(bytes);
  arena_.align.resize(arena_.text.size(), span);
}

void PieceBuilder::copy(uint32_t begin, uint32_t end) {
  const size_t at = arena_.text.size(), length = end - begin;
  if (at + length > kArenaBytesMax) throw ArenaFull();
  arena_.text.resize(at + length);
  std::memmove(arena_.text.data() + at, arena_.text.data() + begin, length);
  arena_.align.resize(at + length);
  std::memmove(arena_.align.data() + at, arena_.align.data() + begin, length * sizeof(Span));
}

Piece PieceBuilder::finish(const Piece& like) const {
  Piece piece = like;
  piece.begin = begin_;
  piece.end = static_cast<uint32_t>(arena_.text.size());
  return piece;
}

void prepend(Arena& arena, Piece& piece, std::string_view text) {
  if (piece.empty() || text.empty()) return;
  PieceBuilder builder(arena);
  builder.append(text, arena.align[piece.begin]);
  builder.copy(piece.begin, piece.end);
  piece = builder.finish(piece);
}

void replace_matches(Arena& arena, Piece& piece, const std::vector<MatchRange>& matches,
                     std::string_view content) {
  bool any = false;
  for (const MatchRange& m : matches) any |= m.is_match;
  if (!any) return;
  PieceBuilder builder(arena);
  const uint32_t base = piece.begin;
  for (const MatchRange& m : matches) {
    if (!m.is_match) {
      builder.copy(base + m.begin, base + m.end);
      continue;
    }
    // Hugging Face aligns inserted text with the byte before the insertion
    // point: the match's last byte (for an empty match, the byte before it).
    Span span;
    if (m.end > 0) {
      span = arena.align[base + m.end - 1];
    } else {
      span = {arena.align[base].begin, arena.align[base].begin};
    }
    builder.append(content, span);
  }
  piece = builder.finish(piece);
}

void map_bytes(Arena& arena, Piece& piece) {
  if (!piece.byte_mapped) return;
  PieceBuilder builder(arena);
  std::string character;
  for (uint32_t i = piece.begin; i < piece.end; ++i) {
    character.clear();
    append_utf8(character, byte_level_char(static_cast<uint8_t>(arena.text[i])));
    builder.append(character, arena.align[i]);
  }
  piece = builder.finish(piece);
  piece.byte_mapped = false;
}

void split_piece(const Piece& piece, const std::vector<MatchRange>& matches, SplitBehavior behavior,
                 bool invert, std::vector<Piece>& out) {
  struct Part {
    uint32_t begin, end;
    bool remove;
  };
  thread_local std::vector<Part> parts;
  parts.clear();
  auto is_match = [&](const MatchRange& m) { return m.is_match != invert; };
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const MatchRange& m : matches) parts.push_back({m.begin, m.end, false});
      break;
    case SplitBehavior::kRemoved:
      for (const MatchRange& m : matches) parts.push_back({m.begin, m.end, is_match(m)});
      break;
    case SplitBehavior::kContiguous: {
      bool previous = false;
      for (const MatchRange& m : matches) {
        const bool matched = is_match(m);
        if (matched == previous && !parts.empty()) {
          parts.back().end = m.end;
        } else {
          parts.push_back({m.begin, m.end, false});
        }
        previous = matched;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous = false;
      for (const MatchRange& m : matches) {
        const bool matched = is_match(m);
        if (matched && !previous && !parts.empty()) {
          parts.back().end = m.end;
        } else {
          parts.push_back({m.begin, m.end, false});
        }
        previous = matched;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        const bool matched = is_match(*it);
        if (matched && !previous && !parts.empty()) {
          parts.back().begin = it->begin;
        } else {
          parts.push_back({it->begin, it->end, false});
        }
        previous = matched;
      }
      std::reverse(parts.begin(), parts.end());
      break;
    }
  }
  for (const Part& part : parts) {
    if (part.remove || part.begin == part.end) continue;
    Piece sub = piece;
    sub.begin = piece.begin + part.begin;
    sub.end = piece.begin + part.end;
    out.push_back(sub);
  }
}

}  // namespace dsinf::trainer::tokenizer_internal
