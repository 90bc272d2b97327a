#include "trainer/data/documents.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "trainer/data/data.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> read_all(const std::string& path, const std::string& key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": cannot read '", path, "': ", std::strerror(errno)));
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(key, ": error reading '", path, "'"));
  return bytes;
}

// One file's lines as JSON (blank lines skipped).
absl::Status append_json_lines(const std::string& path, const std::string& bytes,
                               const std::string& key, std::vector<JsonLine>* out) {
  size_t line_no = 0;
  for (size_t begin = 0; begin < bytes.size();) {
    size_t end = bytes.find('\n', begin);
    if (end == std::string::npos) end = bytes.size();
    ++line_no;
    const std::string_view line(bytes.data() + begin, end - begin);
    begin = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": '", path, "' line ", line_no, ": not valid JSON"));
    }
    out->push_back({std::move(value), absl::StrCat("'", path, "' line ", line_no)});
  }
  return absl::OkStatus();
}

absl::Status append_jsonl(const std::string& path, const std::string& bytes,
                          const std::string& key, std::vector<Document>* out) {
  std::vector<JsonLine> lines;
  if (absl::Status s = append_json_lines(path, bytes, key, &lines); !s.ok()) return s;
  for (JsonLine& line : lines) {
    if (!line.value.is_object() || !line.value.contains("text") || !line.value["text"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": ", line.origin, ": expected a JSON object with a \"text\" string"));
    }
    out->push_back({line.value["text"].get<std::string>(), std::move(line.origin)});
  }
  return absl::OkStatus();
}

absl::Status append_file(const std::string& path, const std::string& key,
                         std::vector<Document>* out) {
  absl::StatusOr<std::string> bytes = read_all(path, key);
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() >= 8 && std::memcmp(bytes->data(), kShardMagic, 8) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": '", path, "' is a token shard, not text"));
  }
  if (path.ends_with(".jsonl")) return append_jsonl(path, *bytes, key, out);
  out->push_back({*std::move(bytes), absl::StrCat("'", path, "'")});
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> data_files(const std::string& path,
                                                    const std::string& key) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return std::vector<std::string>{path};
  std::vector<std::string> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
    if (entry.is_regular_file()) files.push_back(entry.path().string());
  }
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": cannot list '", path, "': ", ec.message()));
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": directory '", path, "' holds no regular files"));
  }
  std::sort(files.begin(), files.end());
  return files;
}

absl::StatusOr<std::vector<Document>> read_documents(const std::string& path,
                                                     const std::string& key) {
  absl::StatusOr<std::vector<std::string>> files = data_files(path, key);
  if (!files.ok()) return files.status();
  std::vector<Document> docs;
  for (const std::string& file : *files) {
    if (absl::Status s = append_file(file, key, &docs); !s.ok()) return s;
  }
  return docs;
}

absl::StatusOr<std::vector<JsonLine>> read_json_lines(const std::string& path,
                                                      const std::string& key) {
  absl::StatusOr<std::vector<std::string>> files = data_files(path, key);
  if (!files.ok()) return files.status();
  std::vector<JsonLine> lines;
  for (const std::string& file : *files) {
    absl::StatusOr<std::string> bytes = read_all(file, key);
    if (!bytes.ok()) return bytes.status();
    if (absl::Status s = append_json_lines(file, *bytes, key, &lines); !s.ok()) return s;
  }
  return lines;
}

absl::StatusOr<std::vector<int32_t>> tokenize_documents(const Tokenizer& tokenizer,
                                                        const std::vector<Document>& documents,
                                                        const TokenizeOptions& options) {
  if (options.append_eos && options.eos_id < 0) {
    return absl::InvalidArgumentError("append_eos without an EOS token id");
  }
  std::vector<std::vector<int32_t>> ids(documents.size());
  std::mutex error_mu;
  absl::Status error;
  std::atomic<uint64_t> bytes_done{0}, docs_done{0};
  tbb::parallel_for(tbb::blocked_range<size_t>(0, documents.size(), 1),
                    [&](const tbb::blocked_range<size_t>& r) {
                      for (size_t i = r.begin(); i < r.end(); ++i) {
                        absl::StatusOr<Encoding> e = tokenizer.encode(documents[i].text);
                        if (!e.ok()) {
                          std::lock_guard<std::mutex> lock(error_mu);
                          if (error.ok()) {
                            error = absl::InvalidArgumentError(absl::StrCat(
                                documents[i].origin, ": ", e.status().message()));
                          }
                          return;
                        }
                        ids[i] = std::move(e->ids);
                        if (options.append_eos) ids[i].push_back(options.eos_id);
                        const uint64_t b = bytes_done += documents[i].text.size();
                        const uint64_t d = ++docs_done;
                        if (options.progress) options.progress(b, d);
                      }
                    });
  if (!error.ok()) return error;
  size_t total = 0;
  for (const std::vector<int32_t>& v : ids) total += v.size();
  std::vector<int32_t> out;
  out.reserve(total);
  for (std::vector<int32_t>& v : ids) {
    out.insert(out.end(), v.begin(), v.end());
    std::vector<int32_t>().swap(v);
  }
  return out;
}

absl::StatusOr<int32_t> eos_id(const Tokenizer& tokenizer, const std::string& eos_token) {
  if (eos_token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        tokenizer.source(), ": no EOS token is known (tokenizer_config.json names none)"));
  }
  if (std::optional<int32_t> id = tokenizer.token_to_id(eos_token)) return *id;
  return absl::InvalidArgumentError(absl::StrCat(tokenizer.source(), ": the EOS token '",
                                                 eos_token, "' is not in the vocabulary"));
}

}  // namespace dsinf::trainer
