#include "trainer/data/tokenizer/normalizers.h"

#include <string>
#include <utility>
#include <vector>

#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_internal {
namespace {

bool is_ascii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// A character before which normalization never reaches back: an ASCII
// character or a starter that does not compose with what precedes it (the
// Hangul vowel and trailing jamo do). Used to keep per-character offsets where
// normalization leaves text alone; the result is checked against normalizing
// the whole piece, so a starter that does compose costs only offset precision.
bool is_normalization_boundary(uint32_t cp) {
  if (cp < 0x80) return true;
  if ((cp >= 0x1161 && cp <= 0x1175) || (cp >= 0x11A8 && cp <= 0x11C2)) return false;
  return combining_class(cp) == 0;
}

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalForm form) : form_(form) {}

  absl::Status normalize(Arena& arena, Piece& piece) const override {
    const std::string text(piece_text(arena, piece));
    if (is_ascii(text)) return absl::OkStatus();  // ASCII is in every normal form
    std::string whole;
    if (!append_normalized(text, form_, whole)) {
      return absl::InternalError("utf8proc could not normalize a valid UTF-8 piece");
    }
    if (whole == text) return absl::OkStatus();
    // Normalize chunk by chunk so that unchanged characters keep their offsets.
    const uint32_t start = arena.size();
    PieceBuilder builder(arena, whole.size());
    std::string chunk_out;
    const size_t n = text.size();
    for (size_t i = 0; i < n;) {
      size_t length;
      decode_utf8(text, i, &length);
      size_t j = i + length;
      while (j < n) {
        const uint32_t cp = decode_utf8(text, j, &length);
        if (is_normalization_boundary(cp)) break;
        j += length;
      }
      const std::string_view chunk = std::string_view(text).substr(i, j - i);
      chunk_out.clear();
      if (!append_normalized(chunk, form_, chunk_out)) {
        return absl::InternalError("utf8proc could not normalize a valid UTF-8 piece");
      }
      if (chunk_out == chunk) {
        builder.copy(piece.begin + i, piece.begin + j);
      } else {
        builder.append(chunk_out, original_span(arena, piece.begin + i, piece.begin + j));
      }
      i = j;
    }
    if (piece_text(arena, builder.finish(piece)) != whole) {
      arena.truncate(start);
      builder.append(whole, original_span(arena, piece.begin, piece.end));
    }
    piece = builder.finish(piece);
    return absl::OkStatus();
  }

 private:
  NormalForm form_;
};

class Lowercase final : public Normalizer {
 public:
  absl::Status normalize(Arena& arena, Piece& piece) const override {
    PieceBuilder builder(arena, piece.size());
    std::string lower;
    for (uint32_t i = 0; i < piece.size();) {
      // Taken again for each character: appending may move the piece's copy.
      const std::string_view text = piece_text(arena, piece);
      size_t length;
      const uint32_t cp = decode_utf8(text, i, &length);
      lower.clear();
      append_lowercase(lower, cp);
      const uint32_t at = piece.begin + i;
      if (lower == text.substr(i, length)) {
        builder.copy(at, at + uint32_t(length));
      } else {
        builder.append(lower, arena.byte_span(at));
      }
      i += uint32_t(length);
    }
    piece = builder.finish(piece);
    return absl::OkStatus();
  }
};

class StripAccents final : public Normalizer {
 public:
  absl::Status normalize(Arena& arena, Piece& piece) const override {
    PieceBuilder builder(arena, piece.size());
    for (uint32_t i = 0; i < piece.size();) {
      // Taken again for each character: appending may move the piece's copy.
      size_t length;
      const uint32_t cp = decode_utf8(piece_text(arena, piece), i, &length);
      if (!is_combining_mark(cp)) builder.copy(piece.begin + i, piece.begin + i + uint32_t(length));
      i += uint32_t(length);
    }
    piece = builder.finish(piece);
    return absl::OkStatus();
  }
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}

  absl::Status normalize(Arena& arena, Piece& piece) const override {
    if (left_) {
      while (!piece.empty()) {
        size_t length;
        if (!is_whitespace(decode_utf8(piece_text(arena, piece), 0, &length))) break;
        piece.begin += uint32_t(length);
      }
    }
    if (right_) {
      while (!piece.empty()) {
        const std::string_view text = piece_text(arena, piece);
        size_t last = text.size() - 1;
        while (last > 0 && (static_cast<unsigned char>(text[last]) & 0xC0) == 0x80) --last;
        size_t length;
        if (!is_whitespace(decode_utf8(text, last, &length))) break;
        piece.end = piece.begin + uint32_t(last);
      }
    }
    return absl::OkStatus();
  }

 private:
  bool left_, right_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string text) : text_(std::move(text)) {}
  absl::Status normalize(Arena& arena, Piece& piece) const override {
    prepend(arena, piece, text_);
    return absl::OkStatus();
  }

 private:
  std::string text_;
};

class Replace final : public Normalizer {
 public:
  Replace(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status normalize(Arena& arena, Piece& piece) const override {
    Replacer replacer(arena, piece, content_);
    Regex::Cursor cursor(*pattern_, piece.size());
    MatchRange range;
    // The subject is taken again for each range: the replacer grows the arena.
    while (cursor.next(piece_text(arena, piece), range)) replacer.add(range);
    if (!cursor.status().ok()) return cursor.status();
    piece = replacer.finish();
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  absl::Status normalize(Arena& arena, Piece& piece) const override {
    for (const auto& step : steps_) {
      if (absl::Status s = step->normalize(arena, piece); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

// The "pattern" of Replace and Split: {"String": s} or {"Regex": r}.
absl::StatusOr<std::unique_ptr<Regex>> load_pattern(const Json& object, std::string_view path) {
  const std::string pattern_path = json_child(path, "pattern");
  auto pattern = member_object(object, path, "pattern");
  if (!pattern.ok()) return pattern.status();
  const Json* string = json_member(**pattern, "String");
  const Json* regex = json_member(**pattern, "Regex");
  if ((string == nullptr) == (regex == nullptr)) {
    return json_error(pattern_path, "expected exactly one of \"String\" and \"Regex\"");
  }
  if (string != nullptr) {
    auto text = json_string(*string, json_child(pattern_path, "String"));
    if (!text.ok()) return text.status();
    auto compiled = Regex::literal(*text);
    if (!compiled.ok()) return json_error(pattern_path, sv(compiled.status().message()));
    return compiled;
  }
  auto text = json_string(*regex, json_child(pattern_path, "Regex"));
  if (!text.ok()) return text.status();
  auto compiled = Regex::compile(*text);
  if (!compiled.ok())
    return json_error(json_child(pattern_path, "Regex"), sv(compiled.status().message()));
  return compiled;
}

absl::StatusOr<std::unique_ptr<Normalizer>> load_normalizer(const Json& value,
                                                            std::string_view path) {
  auto type = component_type(value, path);
  if (!type.ok()) return type.status();
  if (*type == "NFC") return std::make_unique<UnicodeNormalizer>(NormalForm::kNFC);
  if (*type == "NFD") return std::make_unique<UnicodeNormalizer>(NormalForm::kNFD);
  if (*type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormalForm::kNFKC);
  if (*type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormalForm::kNFKD);
  if (*type == "Lowercase") return std::make_unique<Lowercase>();
  if (*type == "StripAccents") return std::make_unique<StripAccents>();
  if (*type == "Strip") {
    auto left = member_bool(value, path, "strip_left", true);
    if (!left.ok()) return left.status();
    auto right = member_bool(value, path, "strip_right", true);
    if (!right.ok()) return right.status();
    return std::make_unique<Strip>(*left, *right);
  }
  if (*type == "Prepend") {
    auto text = member_string(value, path, "prepend");
    if (!text.ok()) return text.status();
    return std::make_unique<Prepend>(*std::move(text));
  }
  if (*type == "Replace") {
    auto pattern = load_pattern(value, path);
    if (!pattern.ok()) return pattern.status();
    auto content = member_string(value, path, "content");
    if (!content.ok()) return content.status();
    return std::make_unique<Replace>(*std::move(pattern), *std::move(content));
  }
  if (*type == "Sequence") {
    auto list = member_array(value, path, "normalizers");
    if (!list.ok()) return list.status();
    std::vector<std::unique_ptr<Normalizer>> steps;
    const std::string list_path = json_child(path, "normalizers");
    for (size_t i = 0; i < (*list)->size(); ++i) {
      auto step = load_normalizer((**list)[i], json_index(list_path, i));
      if (!step.ok()) return step.status();
      steps.push_back(*std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  return unsupported_type(path, *type);
}

}  // namespace dsinf::trainer::tokenizer_internal
