#include "trainer/data/data.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "memory/util/atomic_file.h"
#include "nlohmann/json.hpp"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;

absl::Status read_file(const std::string& path, const std::string& key, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": cannot read '", path, "': ", std::strerror(errno)));
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": error reading '", path, "'"));
  }
  *out = std::move(bytes);
  return absl::OkStatus();
}

uint64_t load_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

absl::Status parse_shard(const std::string& path, const std::string& bytes, int vocab_size,
                         const std::string& key, std::vector<int32_t>* tokens) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": '", path, "' is not a valid dsinf token shard: ", what));
  };
  if (bytes.size() < 32) return bad("header truncated");
  const uint64_t version = load_le(bytes.data() + 8, 4);
  const uint64_t width = load_le(bytes.data() + 12, 4);
  const uint64_t count = load_le(bytes.data() + 16, 8);
  if (version != 1) return bad(absl::StrCat("unsupported version ", version));
  if (width != 2 && width != 4) return bad(absl::StrCat("bytes per token ", width));
  if (count > (bytes.size() - 32) / width || 32 + count * width != bytes.size()) {
    return bad(absl::StrCat("header says ", count, " tokens of ", width, " bytes but the file has ",
                            bytes.size() - 32, " data bytes"));
  }
  tokens->reserve(tokens->size() + count);
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t id = load_le(bytes.data() + 32 + i * width, static_cast<int>(width));
    if (id >= static_cast<uint64_t>(vocab_size)) {
      return bad(
          absl::StrCat("token ", i, " is ", id, ", not below model.vocab_size ", vocab_size));
    }
    tokens->push_back(static_cast<int32_t>(id));
  }
  return absl::OkStatus();
}

// JSON Lines: one object per line whose "text" is a document; the
// documents' bytes, concatenated, are the tokens. Blank lines are skipped.
absl::Status parse_jsonl(const std::string& path, const std::string& bytes, const std::string& key,
                         std::vector<int32_t>* tokens) {
  size_t line_no = 0;
  for (size_t begin = 0; begin < bytes.size();) {
    size_t end = bytes.find('\n', begin);
    if (end == std::string::npos) end = bytes.size();
    ++line_no;
    const std::string_view line(bytes.data() + begin, end - begin);
    begin = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const nlohmann::json doc = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool ok =
        !doc.is_discarded() && doc.is_object() && doc.contains("text") && doc["text"].is_string();
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          key, ": '", path, "' line ", line_no, ": expected a JSON object with a \"text\" string"));
    }
    for (char c : doc["text"].get_ref<const std::string&>()) {
      tokens->push_back(static_cast<unsigned char>(c));
    }
  }
  return absl::OkStatus();
}

absl::Status append_file(const std::string& path, int vocab_size, const std::string& key,
                         const std::string& text_refusal, std::vector<int32_t>* tokens) {
  std::string bytes;
  if (absl::Status s = read_file(path, key, &bytes); !s.ok()) return s;
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kShardMagic, 8) == 0) {
    return parse_shard(path, bytes, vocab_size, key, tokens);
  }
  if (!text_refusal.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": '", path, "' is text, not a dsinf token shard: ", text_refusal));
  }
  if (path.ends_with(".jsonl")) return parse_jsonl(path, bytes, key, tokens);
  tokens->reserve(tokens->size() + bytes.size());
  for (char c : bytes) tokens->push_back(static_cast<unsigned char>(c));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> load_tokens(const std::string& path, int vocab_size,
                                                 const std::string& key,
                                                 const std::string& text_refusal) {
  std::error_code ec;
  std::vector<int32_t> tokens;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
      if (entry.is_regular_file()) files.push_back(entry.path().string());
    }
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": cannot list '", path, "': ", ec.message()));
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": directory '", path, "' holds no regular files"));
    }
    for (const std::string& file : files) {
      if (absl::Status s = append_file(file, vocab_size, key, text_refusal, &tokens); !s.ok())
        return s;
    }
  } else if (absl::Status s = append_file(path, vocab_size, key, text_refusal, &tokens); !s.ok()) {
    return s;
  }
  return tokens;
}

absl::Status write_token_shard(const std::string& path, const std::vector<int32_t>& tokens,
                               int bytes_per_token) {
  const bool wide = std::any_of(tokens.begin(), tokens.end(), [](int32_t t) { return t > 65535; });
  const uint32_t width = bytes_per_token != 0 ? static_cast<uint32_t>(bytes_per_token) : wide ? 4 : 2;
  if ((width != 2 && width != 4) || (width == 2 && wide)) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "': ", width, " bytes a token cannot hold these ids"));
  }
  std::string bytes(kShardMagic, 8);
  auto put = [&](uint64_t v, int n) {
    for (int i = 0; i < n; ++i) bytes.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put(1, 4);
  put(width, 4);
  put(tokens.size(), 8);
  put(0, 8);
  bytes.reserve(bytes.size() + tokens.size() * width);
  for (int32_t t : tokens) put(static_cast<uint32_t>(t), static_cast<int>(width));
  absl::StatusOr<util::AtomicFileWriter> out = util::AtomicFileWriter::open(path);
  if (!out.ok()) return out.status();
  if (absl::Status s = out->write(bytes); !s.ok()) return s;
  return out->commit();
}

}  // namespace dsinf::trainer
