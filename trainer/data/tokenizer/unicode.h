// UTF-8 and Unicode character classes for the tokenizer, each with the
// definition Hugging Face's Rust `tokenizers` uses (Rust's char methods, the
// regex crate's \w, Oniguruma's \s), so that pre-tokenization splits where it
// does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsinf::trainer::tokenizer_internal {

inline constexpr size_t kValidUtf8 = static_cast<size_t>(-1);

// The byte offset of the first byte that does not start a valid UTF-8
// sequence (overlong forms, surrogates and code points past U+10FFFF are
// invalid), or kValidUtf8.
size_t find_invalid_utf8(std::string_view text);

// The length of the UTF-8 sequence whose first byte is `lead` (1 for a stray
// continuation byte, so that loops over any bytes make progress).
inline size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  if (lead >= 0xC0) return 2;
  return 1;
}

// The code point at text[i] (text valid UTF-8 there); *length gets its bytes.
inline uint32_t decode_utf8(std::string_view text, size_t i, size_t* length) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data()) + i;
  const size_t n = utf8_sequence_length(s[0]);
  const size_t left = text.size() - i;
  *length = n <= left ? n : left;
  if (*length != n || n == 1) {
    *length = 1;
    return s[0];
  }
  if (n == 2) return ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu);
  if (n == 3) return ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
  return ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
}

void append_utf8(std::string& out, uint32_t cp);

// Unicode White_Space: Rust's char::is_whitespace and Oniguruma's \s
// (PCRE2's \s also takes U+180E, hence the explicit set).
bool is_whitespace(uint32_t cp);
// General categories Nd, Nl and No: Rust's char::is_numeric.
bool is_numeric(uint32_t cp);
// The regex crate's Unicode \w: letters, marks, Nd, Pc, Nl and the joiners.
bool is_word_char(uint32_t cp);
// General categories Mn, Mc and Me.
bool is_combining_mark(uint32_t cp);
// Canonical combining class (0 for starters).
int combining_class(uint32_t cp);

// Appends Rust's char::to_lowercase of cp (one or more code points).
void append_lowercase(std::string& out, uint32_t cp);

enum class NormalForm { kNFC, kNFD, kNFKC, kNFKD };
// Appends the normal form of `text` (valid UTF-8) to `out`; false when
// utf8proc refuses it (it should not for valid UTF-8).
bool append_normalized(std::string_view text, NormalForm form, std::string& out);

// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes
// U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// GPT-2's byte-level alphabet: the printable character standing for each byte.
uint32_t byte_level_char(uint8_t byte);
// The byte a byte-level character stands for, or -1.
int byte_level_byte(uint32_t cp);

}  // namespace dsinf::trainer::tokenizer_internal
