#include "trainer/data/tokenizer/pre_tokenizers.h"

#include <string>
#include <utility>

#include "trainer/data/tokenizer/normalizers.h"
#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_internal {
namespace {

// GPT-2's pattern, the one ByteLevel splits with when use_regex is set.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Runs `split_one` on each piece that is not an added token, in order, the
// pieces it appends replacing the piece.
template <typename SplitOne>
absl::Status split_each(std::vector<Piece>& pieces, SplitOne&& split_one) {
  std::vector<Piece> result;
  result.reserve(pieces.size() * 2);
  for (Piece& piece : pieces) {
    if (piece.added_id >= 0) {
      result.push_back(piece);
      continue;
    }
    if (absl::Status s = split_one(piece, result); !s.ok()) return s;
  }
  pieces.swap(result);
  return absl::OkStatus();
}

class Split final : public PreTokenizer {
 public:
  Split(std::unique_ptr<Regex> pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  absl::Status pre_tokenize(Arena& arena, std::vector<Piece>& pieces) const override {
    return split_each(pieces, [&](Piece& piece, std::vector<Piece>& out) -> absl::Status {
      thread_local std::vector<MatchRange> matches;
      map_bytes(arena, piece);
      if (absl::Status s = pattern_->find_matches(piece_text(arena, piece), matches); !s.ok()) {
        return s;
      }
      split_piece(piece, matches, behavior_, invert_, out);
      return absl::OkStatus();
    });
  }

 private:
  std::unique_ptr<Regex> pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, std::unique_ptr<Regex> pattern)
      : add_prefix_space_(add_prefix_space), pattern_(std::move(pattern)) {}

  absl::Status pre_tokenize(Arena& arena, std::vector<Piece>& pieces) const override {
    return split_each(pieces, [&](Piece& piece, std::vector<Piece>& out) -> absl::Status {
      thread_local std::vector<MatchRange> matches;
      map_bytes(arena, piece);
      if (add_prefix_space_ && !piece.empty() && arena.text[piece.begin] != ' ') {
        prepend(arena, piece, " ");
      }
      const size_t first = out.size();
      if (pattern_ == nullptr) {
        out.push_back(piece);
      } else {
        if (absl::Status s = pattern_->find_matches(piece_text(arena, piece), matches); !s.ok()) {
          return s;
        }
        split_piece(piece, matches, SplitBehavior::kIsolated, false, out);
      }
      // The model maps each byte to its character: nothing to copy here.
      for (size_t i = first; i < out.size(); ++i) out[i].byte_mapped = true;
      return absl::OkStatus();
    });
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> pattern_;  // null: use_regex false
};

enum class PrependScheme { kFirst, kNever, kAlways };

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

  absl::Status pre_tokenize(Arena& arena, std::vector<Piece>& pieces) const override {
    return split_each(pieces, [&](Piece& piece, std::vector<Piece>& out) -> absl::Status {
      thread_local std::vector<MatchRange> matches;
      map_bytes(arena, piece);
      char_matches(piece_text(arena, piece), " ", matches);
      replace_matches(arena, piece, matches, replacement_);
      const bool starts_with_replacement = piece_text(arena, piece).starts_with(replacement_);
      if (!starts_with_replacement && !piece.empty()) {
        if (scheme_ == PrependScheme::kAlways ||
            (scheme_ == PrependScheme::kFirst && arena.align[piece.begin].begin == 0)) {
          prepend(arena, piece, replacement_);
        }
      }
      if (!split_) {
        if (!piece.empty()) out.push_back(piece);
        return absl::OkStatus();
      }
      char_matches(piece_text(arena, piece), replacement_, matches);
      split_piece(piece, matches, SplitBehavior::kMergedWithNext, false, out);
      return absl::OkStatus();
    });
  }

 private:
  // Each occurrence of the character `c` is a match of its own.
  static void char_matches(std::string_view text, std::string_view c,
                           std::vector<MatchRange>& out) {
    out.clear();
    if (text.empty()) {
      out.push_back({0, 0, false});
      return;
    }
    size_t covered = 0;
    for (size_t at = text.find(c); at != std::string_view::npos; at = text.find(c, at + c.size())) {
      if (covered != at) out.push_back({uint32_t(covered), uint32_t(at), false});
      out.push_back({uint32_t(at), uint32_t(at + c.size()), true});
      covered = at + c.size();
    }
    if (covered != text.size()) out.push_back({uint32_t(covered), uint32_t(text.size()), false});
  }

  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class Digits final : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}

  absl::Status pre_tokenize(Arena& arena, std::vector<Piece>& pieces) const override {
    return split_each(pieces, [&](Piece& piece, std::vector<Piece>& out) -> absl::Status {
      thread_local std::vector<MatchRange> matches;
      map_bytes(arena, piece);
      const std::string_view text = piece_text(arena, piece);
      matches.clear();
      size_t covered = 0;
      for (size_t i = 0; i < text.size();) {
        size_t length;
        const uint32_t cp = decode_utf8(text, i, &length);
        if (is_numeric(cp)) {
          if (covered != i) matches.push_back({uint32_t(covered), uint32_t(i), false});
          matches.push_back({uint32_t(i), uint32_t(i + length), true});
          covered = i + length;
        }
        i += length;
      }
      if (covered != text.size()) {
        matches.push_back({uint32_t(covered), uint32_t(text.size()), false});
      }
      split_piece(piece, matches,
                  individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false, out);
      return absl::OkStatus();
    });
  }

 private:
  bool individual_;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  absl::Status pre_tokenize(Arena& arena, std::vector<Piece>& pieces) const override {
    for (const auto& step : steps_) {
      if (absl::Status s = step->pre_tokenize(arena, pieces); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

absl::StatusOr<SplitBehavior> load_behavior(const Json& value, std::string_view path) {
  auto name = member_string(value, path, "behavior");
  if (!name.ok()) return name.status();
  if (*name == "Removed") return SplitBehavior::kRemoved;
  if (*name == "Isolated") return SplitBehavior::kIsolated;
  if (*name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (*name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (*name == "Contiguous") return SplitBehavior::kContiguous;
  return json_error(json_child(path, "behavior"),
                    absl::StrCat("behavior \"", *name, "\" is not supported"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> load_pre_tokenizer(const Json& value,
                                                                 std::string_view path) {
  auto type = component_type(value, path);
  if (!type.ok()) return type.status();
  if (*type == "Split") {
    auto pattern = load_pattern(value, path);
    if (!pattern.ok()) return pattern.status();
    auto behavior = load_behavior(value, path);
    if (!behavior.ok()) return behavior.status();
    auto invert = member_bool(value, path, "invert", false);
    if (!invert.ok()) return invert.status();
    return std::make_unique<Split>(*std::move(pattern), *behavior, *invert);
  }
  if (*type == "ByteLevel") {
    auto add_prefix_space = member_bool(value, path, "add_prefix_space", true);
    if (!add_prefix_space.ok()) return add_prefix_space.status();
    auto use_regex = member_bool(value, path, "use_regex", true);
    if (!use_regex.ok()) return use_regex.status();
    // trim_offsets acts in the ByteLevel post-processor, not here.
    if (auto trim = member_bool(value, path, "trim_offsets", true); !trim.ok()) {
      return trim.status();
    }
    std::unique_ptr<Regex> pattern;
    if (*use_regex) {
      auto compiled = Regex::compile(kGpt2Pattern);
      if (!compiled.ok()) return json_error(path, sv(compiled.status().message()));
      pattern = *std::move(compiled);
    }
    return std::make_unique<ByteLevel>(*add_prefix_space, std::move(pattern));
  }
  if (*type == "Metaspace") {
    auto replacement = member_string(value, path, "replacement");
    if (!replacement.ok()) return replacement.status();
    size_t length = 0;
    if (replacement->empty() || find_invalid_utf8(*replacement) != kValidUtf8 ||
        (decode_utf8(*replacement, 0, &length), length != replacement->size())) {
      return json_error(json_child(path, "replacement"), "expected a single character");
    }
    auto scheme_name = member_string(value, path, "prepend_scheme", "always");
    if (!scheme_name.ok()) return scheme_name.status();
    PrependScheme scheme;
    if (*scheme_name == "always") {
      scheme = PrependScheme::kAlways;
    } else if (*scheme_name == "first") {
      scheme = PrependScheme::kFirst;
    } else if (*scheme_name == "never") {
      scheme = PrependScheme::kNever;
    } else {
      return json_error(json_child(path, "prepend_scheme"),
                        absl::StrCat("\"", *scheme_name, "\" is not one of first, always, never"));
    }
    // Files from before prepend_scheme: add_prefix_space false means never.
    if (const Json* add = json_member(value, "add_prefix_space")) {
      auto flag = json_bool(*add, json_child(path, "add_prefix_space"));
      if (!flag.ok()) return flag.status();
      if (!*flag) {
        if (scheme != PrependScheme::kNever && json_member(value, "prepend_scheme") != nullptr) {
          return json_error(path, "add_prefix_space does not match declared prepend_scheme");
        }
        scheme = PrependScheme::kNever;
      }
    }
    auto split = member_bool(value, path, "split", true);
    if (!split.ok()) return split.status();
    return std::make_unique<Metaspace>(*std::move(replacement), scheme, *split);
  }
  if (*type == "Digits") {
    auto individual = member_bool(value, path, "individual_digits", false);
    if (!individual.ok()) return individual.status();
    return std::make_unique<Digits>(*individual);
  }
  if (*type == "Sequence") {
    auto list = member_array(value, path, "pretokenizers");
    if (!list.ok()) return list.status();
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    const std::string list_path = json_child(path, "pretokenizers");
    for (size_t i = 0; i < (*list)->size(); ++i) {
      auto step = load_pre_tokenizer((**list)[i], json_index(list_path, i));
      if (!step.ok()) return step.status();
      steps.push_back(*std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  return unsupported_type(path, *type);
}

}  // namespace dsinf::trainer::tokenizer_internal
