// Text documents and their tokens: a text file is one document, a .jsonl file
// one document per line (its "text"), and a directory the files in it in
// sorted name order. Encoded with a Tokenizer exactly as Hugging Face's
// tokenizer(text)["input_ids"] (the post-processor's special tokens
// included), in parallel over documents, concatenated in document order.
// Shared by training on text and `dsinf tokenize`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "trainer/data/tokenizer/tokenizer.h"

namespace dsinf::trainer {

struct Document {
  std::string text;
  std::string origin;  // "'file'" or "'file' line N", for messages
};

struct JsonLine {
  nlohmann::json value;
  std::string origin;  // "'file' line N"
};

// The files of `path`: itself, or a directory's regular files in sorted
// name order. kInvalidArgument naming `key` when it cannot be listed or a
// directory holds none.
absl::StatusOr<std::vector<std::string>> data_files(const std::string& path,
                                                    const std::string& key);

// Every non-blank line of every file of `path`, parsed as JSON.
// kInvalidArgument naming `key`, the file and the line for one that is not.
absl::StatusOr<std::vector<JsonLine>> read_json_lines(const std::string& path,
                                                      const std::string& key);

// The documents of `path` (a file or directory). kInvalidArgument naming
// `key`, the file and the line for an unreadable file, a JSONL line that is
// not an object with a "text" string, or a file that is a token shard.
absl::StatusOr<std::vector<Document>> read_documents(const std::string& path,
                                                     const std::string& key);

struct TokenizeOptions {
  bool append_eos = false;   // the tokenizer's EOS id after every document
  int32_t eos_id = -1;       // required with append_eos
  // Called from the encoding threads as documents finish: bytes and
  // documents done so far (for a progress bar); may be empty.
  std::function<void(uint64_t bytes, uint64_t documents)> progress;
};

// Every document's ids in order. kInvalidArgument naming the document when
// it is not valid UTF-8.
absl::StatusOr<std::vector<int32_t>> tokenize_documents(const Tokenizer& tokenizer,
                                                        const std::vector<Document>& documents,
                                                        const TokenizeOptions& options);

// The id of `eos_token` (tokenizer_config.json's); kInvalidArgument naming the
// tokenizer when it is empty or not in the vocabulary.
absl::StatusOr<int32_t> eos_id(const Tokenizer& tokenizer, const std::string& eos_token);

}  // namespace dsinf::trainer
