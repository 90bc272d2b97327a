// The patterns of tokenizer.json (Oniguruma syntax, as Hugging Face compiles
// them) run on PCRE2 with UTF, UCP and JIT. The few constructs whose meaning
// differs between the two engines are rewritten to Oniguruma's meaning
// (\s: Unicode White_Space; \h: a hex digit; ^ and $: line anchors);
// constructs PCRE2 lacks (class intersection, nested classes) are refused.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dsinf::trainer::tokenizer_internal {

// A byte range [begin, end) of a subject, and whether the pattern matched it.
struct MatchRange {
  uint32_t begin;
  uint32_t end;
  bool is_match;
};

class Regex {
 public:
  // `pattern` in Oniguruma syntax; kInvalidArgument naming the construct.
  static absl::StatusOr<std::unique_ptr<Regex>> compile(std::string_view pattern);
  // A pattern matching `literal` exactly.
  static absl::StatusOr<std::unique_ptr<Regex>> literal(std::string_view literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Replaces `out` with the ranges covering `subject` (valid UTF-8), matches
  // and the text between them, in order -- Hugging Face's Pattern::find_matches
  // over Oniguruma's find_iter (an empty match right after the previous match
  // is skipped). An empty subject gives one non-matching empty range.
  // Thread-safe. kResourceExhausted when the engine gives up (its stack or
  // backtracking limits) on a pathological subject.
  absl::Status find_matches(std::string_view subject, std::vector<MatchRange>& out) const;

  // The ranges of find_matches one at a time, so that a whole document's
  // pieces need not be held at once. The subject is passed to every call
  // rather than kept: the caller may move it in between (pieces live in a
  // growing arena), never change it. Cursors may nest on one thread.
  class Cursor {
   public:
    Cursor(const Regex& regex, size_t subject_bytes)
        : regex_(regex), subject_bytes_(subject_bytes) {}
    // The next range of `subject`; false after the last one or on an error.
    bool next(std::string_view subject, MatchRange& range);
    // kResourceExhausted as in find_matches once next has failed, else OK.
    const absl::Status& status() const { return status_; }

   private:
    const Regex& regex_;
    size_t subject_bytes_;
    size_t search_from_ = 0;
    size_t covered_ = 0;  // ranges returned so far end here
    bool have_match_ = false;
    size_t last_match_end_ = 0;
    bool pending_ = false;  // a match found after a gap, returned after the gap
    MatchRange pending_match_{};
    bool done_ = false;
    absl::Status status_;
  };

  const std::string& pcre2_pattern() const { return pcre2_pattern_; }

 private:
  Regex() = default;
  void* code_ = nullptr;  // pcre2_code_8
  bool jit_ = false;
  std::string pcre2_pattern_;
};

// The PCRE2 spelling of an Oniguruma pattern (exposed for tests).
absl::StatusOr<std::string> oniguruma_to_pcre2(std::string_view pattern);

}  // namespace dsinf::trainer::tokenizer_internal
