#include "trainer/data/tokenizer/decoders.h"

#include <utility>

#include "absl/strings/str_join.h"
#include "trainer/data/tokenizer/normalizers.h"
#include "trainer/data/tokenizer/regex.h"
#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_internal {
namespace {

std::vector<uint32_t> code_points(std::string_view text) {
  std::vector<uint32_t> out;
  for (size_t at = 0; at < text.size();) {
    size_t length;
    out.push_back(decode_utf8(text, at, &length));
    at += length;
  }
  return out;
}

std::string from_code_points(const std::vector<uint32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i) append_utf8(out, cps[i]);
  return out;
}

// A single character of a decoder's config.
absl::StatusOr<uint32_t> single_char(const Json& value, std::string_view path,
                                     std::string_view key) {
  auto text = member_string(value, path, key);
  if (!text.ok()) return text.status();
  size_t length = 0;
  if (text->empty() || find_invalid_utf8(*text) != kValidUtf8) {
    return json_error(json_child(path, key), "expected a single character");
  }
  const uint32_t cp = decode_utf8(*text, 0, &length);
  if (length != text->size())
    return json_error(json_child(path, key), "expected a single character");
  return cp;
}

class ByteLevel final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& token : tokens) {
      const size_t mark = bytes.size();
      bool all = true;
      for (size_t at = 0; at < token.size();) {
        size_t length;
        const int b = byte_level_byte(decode_utf8(token, at, &length));
        if (b < 0) {
          all = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
        at += length;
      }
      if (!all) {  // not a byte-level token: its own bytes
        bytes.resize(mark);
        bytes += token;
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class ByteFallback final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (find_invalid_utf8(pending) == kValidUtf8) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending.size(); ++i) out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (std::string& token : tokens) {
      int byte = -1;
      if (token.size() == 6 && token.starts_with("<0x") && token.back() == '>') {
        byte = hex_byte(token[3], token[4]);
      }
      if (byte >= 0) {
        pending.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static int hex_byte(char high, char low) {
    const int h = hex_digit(high), l = hex_digit(low);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

class Fuse final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    tokens.assign(1, absl::StrJoin(tokens, ""));
  }
};

class Strip final : public Decoder {
 public:
  Strip(uint32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) {
      const std::vector<uint32_t> cps = code_points(token);
      size_t start_cut = 0;
      for (size_t i = 0; i < start_ && i < cps.size() && cps[i] == content_; ++i) start_cut = i + 1;
      size_t stop_cut = cps.size();
      for (size_t i = 0; i < stop_ && i < cps.size(); ++i) {
        const size_t index = cps.size() - i - 1;
        if (cps[index] != content_) break;
        stop_cut = index;
      }
      token = start_cut < stop_cut ? from_code_points(cps, start_cut, stop_cut) : std::string();
    }
  }

 private:
  uint32_t content_;
  size_t start_, stop_;
};

class Replace final : public Decoder {
 public:
  Replace(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<MatchRange> matches;
    for (std::string& token : tokens) {
      // Decoding never fails: a token the engine gives up on stays as is.
      if (find_invalid_utf8(token) != kValidUtf8 || !pattern_->find_matches(token, matches).ok()) {
        continue;
      }
      std::string out;
      for (const MatchRange& m : matches) {
        if (m.is_match) {
          out += content_;
        } else {
          out.append(token, m.begin, m.end - m.begin);
        }
      }
      token = std::move(out);
    }
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class Metaspace final : public Decoder {
 public:
  Metaspace(uint32_t replacement, bool prepend) : replacement_(replacement), prepend_(prepend) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::vector<uint32_t> cps = code_points(tokens[i]);
      for (uint32_t cp : cps) {
        if (cp != replacement_) {
          append_utf8(out, cp);
        } else if (!(i == 0 && prepend_)) {
          out.push_back(' ');
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  uint32_t replacement_;
  bool prepend_;  // prepend_scheme is not "never": the first token drops its replacements
};

class Sequence final : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) step->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> load_decoder(const Json& value, std::string_view path) {
  auto type = component_type(value, path);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (*type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (*type == "Fuse") return std::make_unique<Fuse>();
  if (*type == "Strip") {
    auto content = single_char(value, path, "content");
    if (!content.ok()) return content.status();
    auto start = member_uint(value, path, "start", int64_t{1} << 20);
    if (!start.ok()) return start.status();
    auto stop = member_uint(value, path, "stop", int64_t{1} << 20);
    if (!stop.ok()) return stop.status();
    return std::make_unique<Strip>(*content, size_t(*start), size_t(*stop));
  }
  if (*type == "Replace") {
    auto pattern = load_pattern(value, path);
    if (!pattern.ok()) return pattern.status();
    auto content = member_string(value, path, "content");
    if (!content.ok()) return content.status();
    return std::make_unique<Replace>(*std::move(pattern), *std::move(content));
  }
  if (*type == "Metaspace") {
    auto replacement = single_char(value, path, "replacement");
    if (!replacement.ok()) return replacement.status();
    auto scheme = member_string(value, path, "prepend_scheme", "always");
    if (!scheme.ok()) return scheme.status();
    if (*scheme != "always" && *scheme != "first" && *scheme != "never") {
      return json_error(json_child(path, "prepend_scheme"),
                        absl::StrCat("\"", *scheme, "\" is not one of first, always, never"));
    }
    bool prepend = *scheme != "never";
    if (auto add = member_bool(value, path, "add_prefix_space", true); !add.ok()) {
      return add.status();
    } else if (!*add) {
      prepend = false;
    }
    return std::make_unique<Metaspace>(*replacement, prepend);
  }
  if (*type == "Sequence") {
    auto list = member_array(value, path, "decoders");
    if (!list.ok()) return list.status();
    std::vector<std::unique_ptr<Decoder>> steps;
    const std::string list_path = json_child(path, "decoders");
    for (size_t i = 0; i < (*list)->size(); ++i) {
      auto step = load_decoder((**list)[i], json_index(list_path, i));
      if (!step.ok()) return step.status();
      steps.push_back(*std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  return unsupported_type(path, *type);
}

}  // namespace dsinf::trainer::tokenizer_internal
