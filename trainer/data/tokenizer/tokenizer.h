// A Hugging Face tokenizer read from its tokenizer.json and run natively: the
// ids `tokenizer(text)["input_ids"]` gives in the `tokenizers` library, for
// the components real models ship (BPE with merges and byte_fallback; the
// normalizers, pre-tokenizers, post-processors and decoders listed in
// tokenizer.cc). Anything else is refused at load, naming the component and
// the file -- never approximated.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace dsinf::trainer {

// One encoded text: the ids, and for each the byte range [begin, end) of the
// input text it stands for (through normalization); an id the post-processor
// adds (BOS, EOS) has begin == end, at the position it was added.
struct Encoding {
  std::vector<int32_t> ids;
  std::vector<std::pair<uint32_t, uint32_t>> offsets;
};

class Tokenizer {
 public:
  // `path`: a tokenizer.json, or a directory holding one. kNotFound when
  // missing; kInvalidArgument naming the file and the component (its JSON
  // path, e.g. "pre_tokenizer.pretokenizers[1]: type \"Whitespace\" is not
  // supported") when malformed or unsupported.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> load(const std::string& path);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Thread-safe. With add_special_tokens the post-processor's tokens are
  // added, as Hugging Face does by default. kInvalidArgument when `text` is
  // not valid UTF-8 (naming the byte offset).
  absl::StatusOr<Encoding> encode(std::string_view text, bool add_special_tokens = true) const;
  // Thread-safe; ids out of range are skipped.
  std::string decode(absl::Span<const int32_t> ids, bool skip_special_tokens = false) const;

  // 1 + the largest id, model vocabulary and added tokens together.
  size_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;
  // Whether id is an added token marked special.
  bool is_special(int32_t id) const;
  // The tokenizer.json this came from.
  const std::string& source() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsinf::trainer
