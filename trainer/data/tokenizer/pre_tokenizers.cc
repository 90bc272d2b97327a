#include "trainer/data/tokenizer/pre_tokenizers.h"

#include <string>
#include <utility>
#include <vector>

#include "trainer/data/tokenizer/normalizers.h"
#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_internal {
namespace {

// GPT-2's pattern, the one ByteLevel splits with when use_regex is set.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Splits `piece` at the matches of `pattern`. The subject is taken again for
// each range: the sink may grow the arena.
absl::Status split_matches(Arena& arena, const Piece& piece, const Regex& pattern,
                           SplitBehavior behavior, bool invert, PieceSink sink) {
  Splitter splitter(piece, behavior, invert, sink);
  Regex::Cursor cursor(pattern, piece.size());
  MatchRange range;
  while (cursor.next(piece_text(arena, piece), range)) {
    if (absl::Status s = splitter.add(range); !s.ok()) return s;
  }
  if (!cursor.status().ok()) return cursor.status();
  return splitter.finish();
}

class Split final : public PreTokenizer {
 public:
  Split(std::unique_ptr<Regex> pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  absl::Status pre_tokenize(Arena& arena, Piece piece, PieceSink sink) const override {
    map_bytes(arena, piece);
    return split_matches(arena, piece, *pattern_, behavior_, invert_, sink);
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

  absl::Status pre_tokenize(Arena& arena, Piece piece, PieceSink sink) const override {
    map_bytes(arena, piece);
    if (add_prefix_space_ && !piece.empty() && piece_text(arena, piece)[0] != ' ') {
      prepend(arena, piece, " ");
    }
    // The model maps each byte to its character: nothing to copy here.
    auto byte_mapped = [&](const Piece& part) {
      Piece mapped = part;
      mapped.byte_mapped = true;
      return sink(mapped);
    };
    if (pattern_ == nullptr) return byte_mapped(piece);
    return split_matches(arena, piece, *pattern_, SplitBehavior::kIsolated, false, byte_mapped);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> pattern_;  // null: use_regex false
};

enum class PrependScheme { kFirst, kNever, kAlways };

// Passes to `add` each occurrence of the character `c` in `piece` as a match
// of its own and the text between as non-matches. The text is taken again
// after each range: `add` may grow the arena.
absl::Status char_ranges(const Arena& arena, const Piece& piece, std::string_view c,
                         absl::FunctionRef<absl::Status(const MatchRange&)> add) {
  if (piece.empty()) return add({0, 0, false});
  const uint32_t n = piece.size();
  uint32_t covered = 0;
  while (covered < n) {
    const size_t at = piece_text(arena, piece).find(c, covered);
    if (at == std::string_view::npos) break;
    if (covered != at) {
      if (absl::Status s = add({covered, uint32_t(at), false}); !s.ok()) return s;
    }
    covered = uint32_t(at + c.size());
    if (absl::Status s = add({uint32_t(at), covered, true}); !s.ok()) return s;
  }
  if (covered != n) return add({covered, n, false});
  return absl::OkStatus();
}

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

  absl::Status pre_tokenize(Arena& arena, Piece piece, PieceSink sink) const override {
    map_bytes(arena, piece);
    Replacer spaces(arena, piece, replacement_);
    if (absl::Status s = char_ranges(arena, piece, " ",
                                     [&](const MatchRange& range) {
                                       spaces.add(range);
                                       return absl::OkStatus();
                                     });
        !s.ok()) {
      return s;
    }
    piece = spaces.finish();
    const bool starts_with_replacement = piece_text(arena, piece).starts_with(replacement_);
    if (!starts_with_replacement && !piece.empty()) {
      if (scheme_ == PrependScheme::kAlways ||
          (scheme_ == PrependScheme::kFirst && arena.byte_span(piece.begin).begin == 0)) {
        prepend(arena, piece, replacement_);
      }
    }
    if (!split_) return piece.empty() ? absl::OkStatus() : sink(piece);
    Splitter splitter(piece, SplitBehavior::kMergedWithNext, false, sink);
    if (absl::Status s = char_ranges(arena, piece, replacement_,
                                     [&](const MatchRange& range) { return splitter.add(range); });
        !s.ok()) {
      return s;
    }
    return splitter.finish();
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class Digits final : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}

  absl::Status pre_tokenize(Arena& arena, Piece piece, PieceSink sink) const override {
    map_bytes(arena, piece);
    Splitter splitter(piece, individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous,
                      false, sink);
    const uint32_t n = piece.size();
    uint32_t covered = 0;
    for (uint32_t i = 0; i < n;) {
      size_t length;
      // Taken again for each character: the sink may grow the arena.
      const uint32_t cp = decode_utf8(piece_text(arena, piece), i, &length);
      if (is_numeric(cp)) {
        if (covered != i) {
          if (absl::Status s = splitter.add({covered, i, false}); !s.ok()) return s;
        }
        covered = i + uint32_t(length);
        if (absl::Status s = splitter.add({i, covered, true}); !s.ok()) return s;
      }
      i += uint32_t(length);
    }
    if (covered != n) {
      if (absl::Status s = splitter.add({covered, n, false}); !s.ok()) return s;
    }
    return splitter.finish();
  }

 private:
  bool individual_;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  // Depth first: each part of a step goes through the later steps at once.
  absl::Status pre_tokenize(Arena& arena, Piece piece, PieceSink sink) const override {
    return run(0, arena, piece, sink);
  }

 private:
  absl::Status run(size_t step, Arena& arena, const Piece& piece, PieceSink sink) const {
    if (step == steps_.size()) return sink(piece);
    return steps_[step]->pre_tokenize(
        arena, piece, [&](const Piece& part) { return run(step + 1, arena, part, sink); });
  }

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
