#include "trainer/data/chat_template/lexer.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "trainer/data/chat_template/error.h"
#include "trainer/data/chat_template/unicode.h"

namespace dsinf::trainer::jinja {

namespace {

[[noreturn]] void fail_at(int line, std::string message) {
  throw TemplateError{absl::StatusCode::kInvalidArgument, std::move(message), line};
}

// jinja2 reads \r\n, \r and \n alike as \n, and drops one trailing newline.
std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool is_digit_ascii(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z' ? true : c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit_ascii(c); }

// Python's str.rstrip(): trailing Unicode whitespace.
std::string rstrip_space(std::string_view text) {
  std::u32string cps = utf8_decode(text);
  size_t end = cps.size();
  while (end > 0 && is_space(cps[end - 1])) --end;
  cps.resize(end);
  return utf8_encode(cps);
}

// The decoding of a Python string literal's body (unicode-escape).
std::string decode_escapes(std::string_view raw, int line) {
  std::string out;
  out.reserve(raw.size());
  const auto hex_value = [&](size_t at, int count) -> uint32_t {
    if (at + count > raw.size()) fail_at(line, "truncated escape sequence in a string literal");
    uint32_t value = 0;
    for (int k = 0; k < count; ++k) {
      const char c = raw[at + k];
      int digit;
      if (c >= '0' && c <= '9')
        digit = c - '0';
      else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        digit = (c | 0x20) - 'a' + 10;
      else
        fail_at(line, "truncated escape sequence in a string literal");
      value = value * 16 + digit;
    }
    return value;
  };
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '\\' || i + 1 >= raw.size()) {
      out.push_back(raw[i]);
      continue;
    }
    const char e = raw[++i];
    switch (e) {
      case '\n':
        break;  // a line continuation
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
        utf8_append(hex_value(i + 1, 2), out);
        i += 2;
        break;
      case 'u':
        utf8_append(hex_value(i + 1, 4), out);
        i += 4;
        break;
      case 'U': {
        const uint32_t cp = hex_value(i + 1, 8);
        if (cp > 0x10FFFF) fail_at(line, "illegal Unicode character in a string literal");
        utf8_append(cp, out);
        i += 8;
        break;
      }
      case 'N':
        fail_at(line, "\\N{...} escapes in string literals are not supported");
      default:
        if (e >= '0' && e <= '7') {
          uint32_t value = e - '0';
          for (int k = 0; k < 2 && i + 1 < raw.size() && raw[i + 1] >= '0' && raw[i + 1] <= '7';
               ++k) {
            value = value * 8 + (raw[++i] - '0');
          }
          utf8_append(value, out);
        } else {  // Python keeps an unknown escape as it is
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(normalize_newlines(source)) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) lex_text();
    tokens_.push_back(Token{TokenType::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  bool at(size_t p, std::string_view s) const { return src_.compare(p, s.size(), s) == 0; }

  void advance_to(size_t to) {
    for (size_t p = pos_; p < to; ++p) line_ += src_[p] == '\n';
    pos_ = to;
  }

  size_t skip_space(size_t p) const {
    while (p < src_.size()) {
      const auto c = static_cast<unsigned char>(src_[p]);
      if (c < 0x80) {
        if (!is_space(c)) break;
        ++p;
        continue;
      }
      // Decode one code point: Unicode whitespace counts as \s too.
      size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
      len = std::min(len, src_.size() - p);
      const std::u32string cps = utf8_decode(std::string_view(src_).substr(p, len));
      if (cps.size() != 1 || !is_space(cps[0])) break;
      p += len;
    }
    return p;
  }

  void push(TokenType type, std::string value) {
    tokens_.push_back(Token{type, std::move(value), line_});
  }

  // Text, then the tag that ends it. `text` is whitespace-controlled as
  // jinja2's OptionalLStrip does: `-` strips all whitespace before the tag,
  // `+` none, else lstrip_blocks strips spaces and tabs back to the line start
  // before block and comment tags.
  void push_text(size_t end, char sign, bool lstrip_applies) {
    std::string text = src_.substr(pos_, end - pos_);
    if (sign == '-') {
      text = rstrip_space(text);
    } else if (sign != '+' && lstrip_applies) {
      const size_t newline = text.rfind('\n');
      const size_t line_start = newline == std::string::npos ? 0 : newline + 1;
      if (line_start > 0 || line_starting_) {
        // Only whitespace (Python's \s: Unicode's too) back to the line start.
        const std::u32string rest = utf8_decode(std::string_view(text).substr(line_start));
        if (std::all_of(rest.begin(), rest.end(), is_space)) text.resize(line_start);
      }
    }
    const int line = line_;
    advance_to(end);
    if (!text.empty()) tokens_.push_back(Token{TokenType::kText, std::move(text), line});
  }

  // The end of a block tag (or comment) at p: "+%}", "-%}" and whitespace, or
  // "%}" and one newline (trim_blocks). Returns its length, 0 when absent.
  size_t block_end_length(size_t p, char close) const {
    const std::string end = std::string(1, close) + "}";
    if (at(p, "+" + end)) return 3;
    if (at(p, "-" + end)) return skip_space(p + 3) - p;
    if (at(p, end)) return 2 + (p + 2 < src_.size() && src_[p + 2] == '\n');
    return 0;
  }

  void lex_text() {
    size_t open = pos_;
    while (true) {
      open = src_.find('{', open);
      if (open == std::string::npos || open + 1 >= src_.size()) {
        push_text(src_.size(), 0, false);
        return;
      }
      const char next = src_[open + 1];
      if (next == '{' || next == '%' || next == '#') break;
      ++open;
    }
    const char kind = src_[open + 1];
    size_t after = open + 2;
    char sign = 0;
    if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];

    if (kind == '%') {
      const size_t name = skip_space(after);
      if (at(name, "raw")) {
        const size_t close = skip_space(name + 3);
        size_t end_length = 0;
        if (at(close, "-%}"))
          end_length = skip_space(close + 3) - close;
        else if (at(close, "%}"))
          end_length = 2;
        if (end_length > 0) {
          push_text(open, sign, true);
          advance_to(close + end_length);
          line_starting_ = src_[pos_ - 1] == '\n';
          lex_raw();
          return;
        }
      }
    }
    push_text(open, sign, kind != '{');
    line_starting_ = false;
    if (kind == '#') {
      lex_comment(after);
      return;
    }
    push(kind == '{' ? TokenType::kVariableBegin : TokenType::kBlockBegin,
         kind == '{' ? "{{" : "{%");
    advance_to(after);
    lex_tag(kind == '{');
  }

  void lex_comment(size_t body) {
    const int line = line_;
    if (body >= src_.size()) {  // jinja2's lexer stops quietly at "{#" that ends the template
      advance_to(src_.size());
      return;
    }
    for (size_t p = body; p < src_.size(); ++p) {
      if (src_[p] != '#' && src_[p] != '+' && src_[p] != '-') continue;
      const size_t length = block_end_length(p, '#');
      if (length == 0) continue;
      advance_to(p + length);
      line_starting_ = src_[pos_ - 1] == '\n';
      return;
    }
    fail_at(line, "missing end of comment tag");
  }

  void lex_raw() {
    const int line = line_;
    for (size_t open = src_.find("{%", pos_); open != std::string::npos;
         open = src_.find("{%", open + 1)) {
      size_t p = open + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p = skip_space(p);
      if (!at(p, "endraw")) continue;
      p = skip_space(p + 6);
      const size_t length = block_end_length(p, '%');
      if (length == 0) continue;
      push_text(open, sign, true);
      advance_to(p + length);
      line_starting_ = src_[pos_ - 1] == '\n';
      return;
    }
    fail_at(line, "missing end of raw directive");
  }

  // (\d+_)*\d+ from p; npos when there is no digit at p.
  size_t digit_run(size_t p) const {
    if (p >= src_.size() || !is_digit_ascii(src_[p])) return std::string::npos;
    while (true) {
      while (p < src_.size() && is_digit_ascii(src_[p])) ++p;
      if (p + 1 < src_.size() && src_[p] == '_' && is_digit_ascii(src_[p + 1])) {
        ++p;
        continue;
      }
      return p;
    }
  }

  static std::string without_underscores(std::string_view s) {
    std::string out;
    for (char c : s) {
      if (c != '_') out.push_back(c);
    }
    return out;
  }

  bool lex_number() {
    const size_t start = pos_;
    if (start == 0 || src_[start - 1] != '.') {  // a float never follows a dot
      const size_t int_end = digit_run(start);
      if (int_end != std::string::npos) {
        size_t end = int_end;
        bool is_float = false;
        if (end < src_.size() && src_[end] == '.') {
          const size_t frac_end = digit_run(end + 1);
          if (frac_end != std::string::npos) end = frac_end, is_float = true;
        }
        if (end < src_.size() && (src_[end] | 0x20) == 'e') {
          size_t p = end + 1;
          if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
          const size_t exp_end = digit_run(p);
          if (exp_end != std::string::npos) end = exp_end, is_float = true;
        }
        if (is_float) {
          const std::string text =
              without_underscores(std::string_view(src_).substr(start, end - start));
          Token token{TokenType::kFloat, text, line_};
          token.number = std::strtod(text.c_str(), nullptr);
          tokens_.push_back(std::move(token));
          advance_to(end);
          return true;
        }
      }
    }
    // Integers: 0b.., 0o.., 0x.., [1-9](_?\d)*, 0(_?0)*.
    size_t p = start;
    int base = 10;
    const auto is_digit_of = [&](char c) {
      if (base == 2) return c == '0' || c == '1';
      if (base == 8) return c >= '0' && c <= '7';
      if (base == 16) return is_digit_ascii(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
      return is_digit_ascii(c);
    };
    if (src_[p] == '0' && p + 1 < src_.size() &&
        ((src_[p + 1] | 0x20) == 'b' || (src_[p + 1] | 0x20) == 'o' ||
         (src_[p + 1] | 0x20) == 'x')) {
      base = (src_[p + 1] | 0x20) == 'b' ? 2 : (src_[p + 1] | 0x20) == 'o' ? 8 : 16;
      size_t q = p + 2, digits_end = std::string::npos;
      while (true) {
        size_t r = q;
        if (r < src_.size() && src_[r] == '_') ++r;
        if (r < src_.size() && is_digit_of(src_[r])) {
          q = r + 1;
          digits_end = q;
        } else {
          break;
        }
      }
      if (digits_end != std::string::npos) {
        p = digits_end;
      } else {
        base = 10;
        p = start;
      }
    }
    if (base == 10) {
      const bool zero = src_[p] == '0';
      ++p;
      while (true) {
        size_t r = p;
        if (r < src_.size() && src_[r] == '_') ++r;
        if (r < src_.size() && is_digit_ascii(src_[r]) && (!zero || src_[r] == '0'))
          p = r + 1;
        else
          break;
      }
    }
    std::string digits = without_underscores(std::string_view(src_).substr(start, p - start));
    const std::string_view body =
        base == 10 ? std::string_view(digits) : std::string_view(digits).substr(2);
    Token token{TokenType::kInteger, digits, line_};
    const auto [ptr, ec] =
        std::from_chars(body.data(), body.data() + body.size(), token.integer, base);
    if (ec != std::errc()) fail_at(line_, "integer literal " + digits + " is beyond 64 bits");
    tokens_.push_back(std::move(token));
    advance_to(p);
    return true;
  }

  void lex_string() {
    const char quote = src_[pos_];
    size_t p = pos_ + 1;
    while (p < src_.size() && src_[p] != quote) p += src_[p] == '\\' ? 2 : 1;
    if (p >= src_.size()) fail_at(line_, "unterminated string literal");
    const int line = line_;
    std::string value = decode_escapes(std::string_view(src_).substr(pos_ + 1, p - pos_ - 1), line);
    tokens_.push_back(Token{TokenType::kString, std::move(value), line});
    advance_to(p + 1);
  }

  void lex_tag(bool variable) {
    std::vector<char> brackets;  // closers expected, innermost last
    while (true) {
      if (pos_ >= src_.size()) {
        fail_at(line_, variable ? "unexpected end of template: '}}' expected"
                                : "unexpected end of template: '%}' expected");
      }
      if (brackets.empty()) {
        size_t length = 0;
        if (variable) {
          if (at(pos_, "-}}"))
            length = skip_space(pos_ + 3) - pos_;
          else if (at(pos_, "}}"))
            length = 2;
        } else {
          length = block_end_length(pos_, '%');
        }
        if (length > 0) {
          push(variable ? TokenType::kVariableEnd : TokenType::kBlockEnd, variable ? "}}" : "%}");
          advance_to(pos_ + length);
          line_starting_ = src_[pos_ - 1] == '\n';
          return;
        }
      }
      const size_t after_space = skip_space(pos_);
      if (after_space > pos_) {
        advance_to(after_space);
        continue;
      }
      const char c = src_[pos_];
      if (is_digit_ascii(c)) {
        lex_number();
        continue;
      }
      if (is_name_start(c)) {
        size_t end = pos_;
        while (end < src_.size() && is_name_char(src_[end])) ++end;
        push(TokenType::kName, src_.substr(pos_, end - pos_));
        advance_to(end);
        continue;
      }
      if (c == '\'' || c == '"') {
        lex_string();
        continue;
      }
      static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
      std::string op;
      for (std::string_view two : kTwo) {
        if (at(pos_, two)) op = two;
      }
      if (op.empty() &&
          std::string_view("+-/*%~[](){}<>=.:|,;").find(c) != std::string_view::npos) {
        op = std::string(1, c);
      }
      if (op.empty()) {
        fail_at(line_, str_cat("unexpected character '", std::string(1, c), "'"));
      }
      if (op == "(" || op == "[" || op == "{") {
        brackets.push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
      } else if (op == ")" || op == "]" || op == "}") {
        if (brackets.empty()) fail_at(line_, "unexpected '" + op + "'");
        if (brackets.back() != op[0]) {
          fail_at(line_, str_cat("unexpected '", op, "', expected '",
                                 std::string(1, brackets.back()), "'"));
        }
        brackets.pop_back();
      }
      push(TokenType::kOperator, op);
      advance_to(pos_ + op.size());
    }
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) { return Lexer(source).run(); }

}  // namespace dsinf::trainer::jinja
