// Token data: byte-level text (token id = byte value), directories of text
// files read in sorted name order, and dsinf token shards (cut into windows
// by trainer/data/windows.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dsinf::trainer {

// A dsinf token shard: a 32-byte header -- the magic "DSINFTOK", uint32 version (1),
// uint32 bytes per token (2 or 4), uint64 token count, uint64 zero -- then the
// tokens, little-endian.
inline constexpr char kShardMagic[8] = {'D', 'S', 'I', 'N', 'F', 'T', 'O', 'K'};

// Reads `path` (file or directory): token shards, JSON Lines files (*.jsonl,
// each line's "text" as bytes) and any other file as bytes (byte-level
// tokens; with a non-empty `text_refusal` text is refused, the message ending
// with it). kInvalidArgument naming the file (and line) for an
// unreadable file, a malformed shard, or a token id >= vocab_size; `key` (e.g.
// "data.path") is named in messages.
absl::StatusOr<std::vector<int32_t>> load_tokens(const std::string& path, int vocab_size,
                                                 const std::string& key,
                                                 const std::string& text_refusal = "");

// Written atomically (a reader sees the old file or the whole new one), with
// `bytes_per_token` 2 or 4; 0: 2 when every id fits 16 bits.
absl::Status write_token_shard(const std::string& path, const std::vector<int32_t>& tokens,
                               int bytes_per_token = 0);

}  // namespace dsinf::trainer
