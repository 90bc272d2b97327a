#include "trainer/data/tokenizer/bpe.h"

#include <algorithm>
#include <queue>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_format.h"
#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_internal {
namespace {

struct Symbol {
  int32_t id;
  int32_t prev;  // index of the previous live symbol, -1 for none
  int32_t next;  // index of the next live symbol, -1 for none
  uint32_t begin, end;
  bool alive;
};

// A possible merge at symbol `pos`; the queue pops the lowest rank, then the
// leftmost position (Hugging Face's Word::merge_all).
struct QueuedMerge {
  int32_t rank;
  uint32_t pos;
  int32_t new_id;
  bool operator>(const QueuedMerge& other) const {
    return rank != other.rank ? rank > other.rank : pos > other.pos;
  }
};

// The first and last characters of a (valid UTF-8, non-empty) token.
uint32_t first_char(std::string_view token) {
  size_t length;
  return decode_utf8(token, 0, &length);
}
uint32_t last_char(std::string_view token) {
  size_t start = token.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(token[start]) & 0xC0) == 0x80) --start;
  size_t length;
  return decode_utf8(token, start, &length);
}

std::string byte_fallback_token(uint8_t byte) { return absl::StrFormat("<0x%02X>", byte); }

absl::StatusOr<std::pair<std::string, std::string>> merge_pair(const Json& entry,
                                                               std::string_view path) {
  if (entry.is_string()) {
    const std::string& line = entry.get_ref<const std::string&>();
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      return json_error(path, "expected \"left right\" (two tokens and one space)");
    }
    return std::make_pair(line.substr(0, space), line.substr(space + 1));
  }
  if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
    return std::make_pair(entry[0].get<std::string>(), entry[1].get<std::string>());
  }
  return json_error(
      path, absl::StrCat("expected \"left right\" or [left, right], got ", json_type_name(entry)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Bpe>> Bpe::load(const Json& value, std::string_view path) {
  auto type = component_type(value, path);
  if (!type.ok()) return type.status();
  if (*type != "BPE") return unsupported_type(path, *type);
  std::unique_ptr<Bpe> bpe(new Bpe());

  if (const Json* dropout = json_member(value, "dropout")) {
    if (!dropout->is_number()) {
      return json_error(json_child(path, "dropout"),
                        absl::StrCat("expected a number, got ", json_type_name(*dropout)));
    }
    if (dropout->get<double>() != 0.0) {
      return json_error(json_child(path, "dropout"),
                        "dropout is not supported (it makes encoding random)");
    }
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto affix = member_string(value, path, key, "");
    if (!affix.ok()) return affix.status();
    if (!affix->empty()) {
      return json_error(json_child(path, key), absl::StrCat("\"", *affix, "\" is not supported"));
    }
  }
  if (const Json* unk = json_member(value, "unk_token")) {
    auto text = json_string(*unk, json_child(path, "unk_token"));
    if (!text.ok()) return text.status();
    bpe->unk_token_ = *std::move(text);
  }
  for (auto [key, flag] :
       {std::pair{"fuse_unk", &bpe->fuse_unk_}, std::pair{"byte_fallback", &bpe->byte_fallback_},
        std::pair{"ignore_merges", &bpe->ignore_merges_}}) {
    auto v = member_bool(value, path, key, false);
    if (!v.ok()) return v.status();
    *flag = *v;
  }

  auto vocab = member_object(value, path, "vocab");
  if (!vocab.ok()) return vocab.status();
  const std::string vocab_path = json_child(path, "vocab");
  bpe->vocab_.reserve((*vocab)->size());
  bpe->tokens_.reserve((*vocab)->size());
  for (auto it = (*vocab)->begin(); it != (*vocab)->end(); ++it) {
    auto id = json_uint(it.value(), json_child(vocab_path, it.key()), kMaxTokenId);
    if (!id.ok()) return id.status();
    const auto id32 = static_cast<int32_t>(*id);
    bpe->vocab_[it.key()] = id32;
    bpe->tokens_.try_emplace(id32, it.key());
    bpe->id_bound_ = std::max(bpe->id_bound_, *id + 1);
  }
  for (const auto& [token, id] : bpe->vocab_) {
    size_t length = 0;
    if (!token.empty() && find_invalid_utf8(token) == kValidUtf8) {
      const uint32_t cp = decode_utf8(token, 0, &length);
      if (length == token.size()) bpe->char_ids_[cp] = id;
    }
  }
  for (int b = 0; b < 256; ++b) {
    std::string character;
    append_utf8(character, byte_level_char(uint8_t(b)));
    auto it = bpe->vocab_.find(character);
    bpe->byte_char_ids_[b] = it == bpe->vocab_.end() ? -1 : it->second;
    auto fallback = bpe->vocab_.find(byte_fallback_token(uint8_t(b)));
    bpe->byte_fallback_ids_[b] = fallback == bpe->vocab_.end() ? -1 : fallback->second;
  }

  auto merges = member_array(value, path, "merges");
  if (!merges.ok()) return merges.status();
  const std::string merges_path = json_child(path, "merges");
  bpe->merges_.reserve((*merges)->size());
  int32_t rank = 0;
  std::string joined;
  for (size_t i = 0; i < (*merges)->size(); ++i) {
    const Json& entry = (**merges)[i];
    const std::string entry_path = json_index(merges_path, i);
    if (entry.is_string() && entry.get_ref<const std::string&>().starts_with("#version")) continue;
    auto pair = merge_pair(entry, entry_path);
    if (!pair.ok()) return pair.status();
    auto left = bpe->vocab_.find(pair->first);
    auto right = bpe->vocab_.find(pair->second);
    joined = pair->first + pair->second;
    auto merged = bpe->vocab_.find(joined);
    for (auto [it, text] : {std::pair{left, &pair->first}, std::pair{right, &pair->second},
                            std::pair{merged, &joined}}) {
      if (it == bpe->vocab_.end()) {
        return json_error(entry_path, absl::StrCat("token \"", *text, "\" is not in model.vocab"));
      }
    }
    if (!pair->first.empty() && !pair->second.empty()) {  // an empty side never merges
      bpe->joinable_.insert(char_pair(last_char(pair->first), first_char(pair->second)));
    }
    // A repeated pair takes the later rank, as Hugging Face's map does.
    bpe->merges_.insert_or_assign(
        (uint64_t(uint32_t(left->second)) << 32) | uint32_t(right->second),
        Merge{rank, merged->second});
    ++rank;
  }
  return bpe;
}

std::optional<int32_t> Bpe::token_to_id(std::string_view token) const {
  auto it = vocab_.find(av(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::id_to_token(int32_t id) const {
  auto it = tokens_.find(id);
  return it == tokens_.end() ? nullptr : &it->second;
}

absl::Status Bpe::tokenize(const Arena& arena, const Piece& piece, Encoding& out) const {
  const std::string_view word = piece_text(arena, piece);
  if (word.empty()) return absl::OkStatus();
  thread_local WordTokens tokens;
  // Appends `tokens`, found in word[at, ...).
  auto append = [&](uint32_t at) {
    for (const WordToken& t : tokens) {
      const uint32_t begin = piece.begin + at + t.begin, end = piece.begin + at + t.end;
      const Span span = original_span(arena, begin, end);
      out.ids.push_back(t.id);
      out.offsets.emplace_back(span.begin, span.end);
    }
  };
  tokens.clear();
  if (word.size() < kCacheWordBytesMax) {
    if (absl::Status s = cached_word(word, piece.byte_mapped, tokens); !s.ok()) return s;
    append(0);
    return absl::OkStatus();
  }
  if (ignore_merges_ && whole_word(word, piece.byte_mapped, tokens)) {
    append(0);
    return absl::OkStatus();
  }
  // A long word -- a whole document when no pre-tokenizer splits the text:
  // merged part by part, cut between characters that no merge joins, so that
  // time and memory are those of the parts (merges in one part never reach
  // another). Parts go through the cache unless ignore_merges would look them
  // up whole.
  uint32_t part_begin = 0;
  auto merge_part = [&](uint32_t part_end) -> absl::Status {
    const std::string_view part = word.substr(part_begin, part_end - part_begin);
    tokens.clear();
    absl::Status s = ignore_merges_ || part.size() >= kCacheWordBytesMax
                         ? merge_word(part, piece.byte_mapped, tokens)
                         : cached_word(part, piece.byte_mapped, tokens);
    if (!s.ok()) return s;
    append(part_begin);
    part_begin = part_end;
    return absl::OkStatus();
  };
  uint32_t previous = 0;  // the previous character (its GPT-2 character when byte_mapped)
  for (uint32_t i = 0; i < word.size();) {
    size_t length = 1;
    const uint32_t c = piece.byte_mapped ? byte_level_char(static_cast<uint8_t>(word[i]))
                                         : decode_utf8(word, i, &length);
    if (i > 0 && !joinable(previous, c) && is_char_token(previous, piece.byte_mapped) &&
        is_char_token(c, piece.byte_mapped)) {
      if (absl::Status s = merge_part(i); !s.ok()) return s;
    }
    previous = c;
    i += uint32_t(length);
  }
  absl::Status status = merge_part(uint32_t(word.size()));
  if (tokens.capacity() > kCacheWordBytesMax) {
    tokens.clear();
    tokens.shrink_to_fit();
  }
  return status;
}

absl::Status Bpe::cached_word(std::string_view word, bool byte_mapped, WordTokens& out) const {
  CacheShard& shard =
      cache_[byte_mapped ? 1 : 0][absl::Hash<absl::string_view>{}(av(word)) % kCacheShards];
  {
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.words.find(av(word));
    if (it != shard.words.end()) {
      out = it->second;
      return absl::OkStatus();
    }
  }
  if (absl::Status s = tokenize_word(word, byte_mapped, out); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(shard.mutex);
  if (shard.words.size() < kCacheWordsPerShard) shard.words.try_emplace(std::string(word), out);
  return absl::OkStatus();
}

bool Bpe::whole_word(std::string_view word, bool byte_mapped, WordTokens& out) const {
  std::string mapped;
  if (byte_mapped) {
    mapped.reserve(word.size() * 2);
    for (char c : word) append_utf8(mapped, byte_level_char(static_cast<uint8_t>(c)));
  }
  auto it = vocab_.find(av(byte_mapped ? std::string_view(mapped) : word));
  if (it == vocab_.end()) return false;
  out.push_back({it->second, 0, uint32_t(word.size())});
  return true;
}

absl::Status Bpe::tokenize_word(std::string_view word, bool byte_mapped, WordTokens& out) const {
  if (ignore_merges_ && whole_word(word, byte_mapped, out)) return absl::OkStatus();
  return merge_word(word, byte_mapped, out);
}

absl::Status Bpe::merge_word(std::string_view word, bool byte_mapped, WordTokens& out) const {
  thread_local std::vector<Symbol> symbols;
  symbols.clear();
  auto add = [&](int32_t id, uint32_t begin, uint32_t end) {
    const auto index = static_cast<int32_t>(symbols.size());
    if (index > 0) symbols.back().next = index;
    symbols.push_back({id, index - 1, -1, begin, end, true});
  };
  // A run of unknown characters waiting to become one unk token (or several,
  // without fuse_unk): Hugging Face pushes it only when a known character or
  // the end follows.
  bool unk_pending = false;
  uint32_t unk_begin = 0, unk_end = 0;
  int32_t unk_id = -1;
  std::string character;
  for (uint32_t i = 0; i < word.size();) {
    size_t length = 1;
    int32_t id = -1;
    if (byte_mapped) {
      id = byte_char_ids_[static_cast<uint8_t>(word[i])];
    } else {
      const uint32_t cp = decode_utf8(word, i, &length);
      auto it = char_ids_.find(cp);
      if (it != char_ids_.end()) id = it->second;
    }
    const uint32_t begin = i, end = i + uint32_t(length);
    i = end;
    if (id >= 0) {
      if (unk_pending) add(unk_id, unk_begin, unk_end);
      unk_pending = false;
      add(id, begin, end);
      continue;
    }
    if (byte_fallback_) {
      character.clear();
      if (byte_mapped) {
        append_utf8(character, byte_level_char(static_cast<uint8_t>(word[begin])));
      } else {
        character.assign(word.substr(begin, end - begin));
      }
      bool all = true;
      for (char c : character) all &= byte_fallback_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (char c : character) add(byte_fallback_ids_[static_cast<uint8_t>(c)], begin, end);
        continue;
      }
    }
    if (!unk_token_) continue;  // no unk token: the character is dropped
    if (unk_id < 0) {
      auto it = vocab_.find(*unk_token_);
      if (it == vocab_.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("model.unk_token \"", *unk_token_,
                         "\" is not in model.vocab (needed for a character "
                         "the vocabulary lacks)"));
      }
      unk_id = it->second;
    }
    if (unk_pending && fuse_unk_) {
      unk_end = end;
    } else {
      if (unk_pending) add(unk_id, unk_begin, unk_end);
      unk_pending = true;
      unk_begin = begin;
      unk_end = end;
    }
  }
  if (unk_pending) add(unk_id, unk_begin, unk_end);

  std::priority_queue<QueuedMerge, std::vector<QueuedMerge>, std::greater<QueuedMerge>> queue;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const Merge* m = find_merge(symbols[i].id, symbols[i + 1].id)) {
      queue.push({m->rank, uint32_t(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const QueuedMerge top = queue.top();
    queue.pop();
    Symbol& current = symbols[top.pos];
    if (!current.alive || current.next < 0) continue;
    Symbol& right = symbols[current.next];
    // A stale entry: the pair at pos is no longer the one queued.
    const Merge* m = find_merge(current.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;
    current.id = top.new_id;
    current.end = right.end;
    right.alive = false;
    current.next = right.next;
    if (current.next >= 0) symbols[current.next].prev = int32_t(top.pos);
    if (current.prev >= 0) {
      if (const Merge* before = find_merge(symbols[current.prev].id, current.id)) {
        queue.push({before->rank, uint32_t(current.prev), before->new_id});
      }
    }
    if (current.next >= 0) {
      if (const Merge* after = find_merge(current.id, symbols[current.next].id)) {
        queue.push({after->rank, top.pos, after->new_id});
      }
    }
  }
  for (const Symbol& s : symbols) {
    if (s.alive) out.push_back({s.id, s.begin, s.end});
  }
  if (symbols.capacity() > kCacheWordBytesMax * 64) {  // a long word's: not kept
    symbols.clear();
    symbols.shrink_to_fit();
  }
  return absl::OkStatus();
}

}  // namespace dsinf::trainer::tokenizer_internal
