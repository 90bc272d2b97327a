// UTF-8 as Python's str sees it: code points, str.isspace(), case mapping.
// Bytes that are not UTF-8 decode to U+DC80..U+DCFF and encode back to
// themselves (Python's surrogateescape), so no input is lost or rejected.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsinf::trainer::jinja {

std::u32string utf8_decode(std::string_view s);
void utf8_append(char32_t cp, std::string& out);
std::string utf8_encode(std::u32string_view cps);
int64_t utf8_length(std::string_view s);  // in code points
bool is_ascii(std::string_view s);

bool is_space(char32_t cp);  // str.isspace()
bool is_alpha(char32_t cp);
bool is_digit(char32_t cp);      // str.isdigit(): decimal digits
bool is_printable(char32_t cp);  // str.isprintable(), for repr()
bool is_lower(char32_t cp);
bool is_upper(char32_t cp);
bool is_cased(char32_t cp);
char32_t to_upper(char32_t cp);
char32_t to_lower(char32_t cp);
char32_t to_title(char32_t cp);

// Python's full case mappings: 'ß'.upper() is "SS", 'ß'.title() is "Ss",
// 'İ'.lower() is "i̇" (SpecialCasing.txt, unconditional entries).
void append_upper(char32_t cp, std::u32string& out);
void append_lower(char32_t cp, std::u32string& out);
void append_title(char32_t cp, std::u32string& out);

std::string str_upper(std::string_view s);
std::string str_lower(std::string_view s);

}  // namespace dsinf::trainer::jinja
