#include "trainer/data/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_internal {
namespace {

// Oniguruma's \s (Unicode White_Space); PCRE2's also takes U+180E.
constexpr char kSpaceSet[] =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";
// Oniguruma's \w: Letter, Mark, Number, Connector_Punctuation (PCRE2's
// leaves out the marks).
constexpr char kWordSet[] = "\\p{L}\\p{M}\\p{N}\\p{Pc}";
constexpr char kHexSet[] = "0-9a-fA-F";

// What each engine's thread needs to run a match: the match data (only the
// whole match is read) and a JIT stack larger than the 32 KiB default.
struct MatchState {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  MatchState() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, nullptr);
    if (context && jit_stack) pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchState() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

std::string pcre2_error_text(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) return absl::StrCat(code);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

absl::StatusOr<std::string> oniguruma_to_pcre2(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  bool class_start = false;  // just after '[' or "[^": a ']' here is literal
  const size_t n = pattern.size();
  for (size_t i = 0; i < n;) {
    const char c = pattern[i];
    if (c == '\\') {
      if (i + 1 >= n) return absl::InvalidArgumentError("regex ends with a lone backslash");
      const char d = pattern[i + 1];
      auto refuse = [&](std::string_view what) {
        return absl::InvalidArgumentError(absl::StrCat("regex construct \\", std::string(1, d), " ",
                                                       absl::string_view(what.data(), what.size()),
                                                       " is not supported"));
      };
      switch (d) {
        case 's':
          absl::StrAppend(&out, in_class ? "" : "[", kSpaceSet, in_class ? "" : "]");
          break;
        case 'S':
          if (in_class) return refuse("inside a character class");
          absl::StrAppend(&out, "[^", kSpaceSet, "]");
          break;
        case 'w':
          absl::StrAppend(&out, in_class ? "" : "[", kWordSet, in_class ? "" : "]");
          break;
        case 'W':
          if (in_class) return refuse("inside a character class");
          absl::StrAppend(&out, "[^", kWordSet, "]");
          break;
        case 'h':
          absl::StrAppend(&out, in_class ? "" : "[", kHexSet, in_class ? "" : "]");
          break;
        case 'H':
          if (in_class) return refuse("inside a character class");
          absl::StrAppend(&out, "[^", kHexSet, "]");
          break;
        case 'b':
        case 'B':
          return refuse("(word boundary: the engines define words differently)");
        case 'R':
          return refuse("(the engines define newlines differently)");
        case 'Q':
        case 'E':
          return refuse("(quoting)");
        default:
          out.push_back('\\');
          out.push_back(d);
          break;
      }
      i += 2;
      class_start = false;
      continue;
    }
    if (in_class) {
      if (c == '[') {
        return absl::InvalidArgumentError(
            "regex nested character classes and POSIX brackets are not supported");
      }
      if (c == '&' && i + 1 < n && pattern[i + 1] == '&') {
        return absl::InvalidArgumentError("regex class intersection && is not supported");
      }
      if (c == ']' && !class_start) in_class = false;
      class_start = false;
      out.push_back(c);
      ++i;
      continue;
    }
    if (c == '[') {
      in_class = true;
      class_start = true;
      out.push_back(c);
      ++i;
      if (i < n && pattern[i] == '^') {
        out.push_back('^');
        ++i;
      }
      continue;
    }
    if (c == '(' && i + 1 < n && pattern[i + 1] == '?') {
      // Inline options: Oniguruma's (Ruby's) m is PCRE2's s (dot matches newline).
      size_t j = i + 2;
      while (j < n &&
             (pattern[j] == 'i' || pattern[j] == 'm' || pattern[j] == 'x' || pattern[j] == '-')) {
        ++j;
      }
      if (j > i + 2 && j < n && (pattern[j] == ':' || pattern[j] == ')')) {
        out += "(?";
        for (size_t k = i + 2; k < j; ++k) out.push_back(pattern[k] == 'm' ? 's' : pattern[k]);
        i = j;
        continue;
      }
    }
    out.push_back(c);
    ++i;
  }
  if (in_class) return absl::InvalidArgumentError("regex character class is not closed");
  return out;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::compile(std::string_view pattern) {
  auto translated = oniguruma_to_pcre2(pattern);
  if (!translated.ok()) return translated.status();
  if (find_invalid_utf8(*translated) != kValidUtf8) {
    return absl::InvalidArgumentError("regex is not valid UTF-8");
  }
  std::unique_ptr<Regex> regex(new Regex());
  regex->pcre2_pattern_ = *std::move(translated);
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_compile_context* context = pcre2_compile_context_create(nullptr);
  if (context == nullptr) return absl::ResourceExhaustedError("regex: out of memory");
  pcre2_set_newline(context, PCRE2_NEWLINE_LF);
  pcre2_code* code = pcre2_compile(
      reinterpret_cast<PCRE2_SPTR>(regex->pcre2_pattern_.data()), regex->pcre2_pattern_.size(),
      PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &error, &error_offset, context);
  pcre2_compile_context_free(context);
  if (code == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "regex does not compile (", pcre2_error_text(error), " at offset ", error_offset, ")"));
  }
  regex->code_ = code;
  regex->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return regex;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::literal(std::string_view literal) {
  std::string pattern;
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    const bool plain =
        u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (plain) {
      pattern.push_back(c);
    } else if (u < 0x20 || u == 0x7F) {
      absl::StrAppend(&pattern, "\\x{", absl::Hex(u), "}");
    } else {
      pattern.push_back('\\');
      pattern.push_back(c);
    }
  }
  return compile(pattern);
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

absl::Status Regex::find_matches(std::string_view subject, std::vector<MatchRange>& out) const {
  out.clear();
  Cursor cursor(*this, subject.size());
  MatchRange range;
  while (cursor.next(subject, range)) out.push_back(range);
  return cursor.status();
}

bool Regex::Cursor::next(std::string_view subject, MatchRange& range) {
  if (pending_) {
    pending_ = false;
    range = pending_match_;
    return true;
  }
  if (done_) return false;
  const size_t n = subject_bytes_;
  if (subject.size() != n) {
    status_ = absl::InternalError("regex: the subject changed between ranges");
    done_ = true;
    return false;
  }
  if (n == 0) {
    done_ = true;
    range = {0, 0, false};
    return true;
  }
  MatchState& state = match_state();
  if (state.data == nullptr || state.context == nullptr) {
    status_ = absl::ResourceExhaustedError("regex: out of memory");
    done_ = true;
    return false;
  }
  auto* code = static_cast<pcre2_code*>(regex_.code_);
  const auto* bytes = reinterpret_cast<PCRE2_SPTR>(subject.data());
  while (search_from_ <= n) {
    int rc = regex_.jit_
                 ? pcre2_jit_match(code, bytes, n, search_from_, 0, state.data, state.context)
                 : PCRE2_ERROR_JIT_STACKLIMIT;
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code, bytes, n, search_from_, PCRE2_NO_UTF_CHECK, state.data, state.context);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      status_ = absl::ResourceExhaustedError(absl::StrCat("regex gave up at byte ", search_from_,
                                                          " of a ", n,
                                                          "-byte piece: ", pcre2_error_text(rc)));
      done_ = true;
      return false;
    }
    // Read before returning: a nested cursor reuses this thread's match data.
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
    const size_t begin = ovector[0], end = ovector[1];
    if (end < begin || end > n || begin < search_from_) {
      status_ = absl::InvalidArgumentError("regex reported a match outside the searched text");
      done_ = true;
      return false;
    }
    if (begin == end && have_match_ && last_match_end_ == end) {
      // Oniguruma's find_iter: no empty match right after the previous match.
      if (search_from_ >= n) break;
      search_from_ += utf8_sequence_length(static_cast<unsigned char>(subject[search_from_]));
      continue;
    }
    search_from_ = end;
    have_match_ = true;
    last_match_end_ = end;
    const MatchRange match{uint32_t(begin), uint32_t(end), true};
    const size_t gap_begin = covered_;
    covered_ = end;
    if (gap_begin != begin) {
      range = {uint32_t(gap_begin), uint32_t(begin), false};
      pending_ = true;
      pending_match_ = match;
    } else {
      range = match;
    }
    return true;
  }
  done_ = true;
  if (covered_ == n) return false;
  range = {uint32_t(covered_), uint32_t(n), false};
  covered_ = n;
  return true;
}

}  // namespace dsinf::trainer::tokenizer_internal
