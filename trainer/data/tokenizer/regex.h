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
