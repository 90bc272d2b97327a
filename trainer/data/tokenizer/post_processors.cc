#include "trainer/data/tokenizer/post_processors.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "trainer/data/tokenizer/unicode.h"

namespace dsinf::trainer::tokenizer_internal {
namespace {

// Hugging Face's byte_level::process_offsets: offsets stop short of the
// spaces ('Ġ' or whitespace) a token starts or ends with, except the one
// space add_prefix_space put before the first token.
void trim_offsets(Encoding& encoding, bool add_prefix_space, const TokenString& token_string) {
  constexpr uint32_t kSpaceChar = 0x120;  // 'Ġ'
  for (size_t i = 0; i < encoding.ids.size(); ++i) {
    const std::string* token = token_string(encoding.ids[i]);
    if (token == nullptr || token->empty()) continue;
    auto is_space = [](uint32_t cp) { return cp == kSpaceChar || is_whitespace(cp); };
    std::vector<uint32_t> chars;
    for (size_t at = 0; at < token->size();) {
      size_t length;
      chars.push_back(decode_utf8(*token, at, &length));
      at += length;
    }
    uint32_t leading = 0, trailing = 0;
    while (leading < chars.size() && is_space(chars[leading])) ++leading;
    while (trailing < chars.size() && is_space(chars[chars.size() - 1 - trailing])) ++trailing;
    auto& [begin, end] = encoding.offsets[i];
    if (leading > 0) {
      const bool is_first = i == 0 || begin == 0;
      if (is_first && add_prefix_space && leading == 1) leading = 0;
      begin = std::min(begin + leading, end);
    }
    if (trailing > 0 && end >= trailing) end = std::max(end - trailing, begin);
  }
}

// Inserts `ids` before (at_start) or after the sequence, with empty offsets
// where they sit.
void add_tokens(Encoding& encoding, const std::vector<int32_t>& ids, bool at_start,
                uint32_t text_bytes) {
  const uint32_t at = at_start ? 0 : text_bytes;
  const auto where = at_start ? 0 : encoding.ids.size();
  encoding.ids.insert(encoding.ids.begin() + where, ids.begin(), ids.end());
  encoding.offsets.insert(encoding.offsets.begin() + where, ids.size(), {at, at});
}

class ByteLevel final : public PostProcessor {
 public:
  ByteLevel(bool trim, bool add_prefix_space) : trim_(trim), add_prefix_space_(add_prefix_space) {}
  void process(Encoding& encoding, bool, uint32_t, const TokenString& token_string) const override {
    if (trim_) trim_offsets(encoding, add_prefix_space_, token_string);
  }

 private:
  bool trim_, add_prefix_space_;
};

// The single-sequence template: special tokens around $A.
class Template final : public PostProcessor {
 public:
  Template(std::vector<int32_t> before, std::vector<int32_t> after)
      : before_(std::move(before)), after_(std::move(after)) {}
  void process(Encoding& encoding, bool add_special_tokens, uint32_t text_bytes,
               const TokenString&) const override {
    if (!add_special_tokens) return;
    add_tokens(encoding, before_, true, text_bytes);
    add_tokens(encoding, after_, false, text_bytes);
  }
  std::vector<int32_t> added_ids() const override {
    std::vector<int32_t> ids = before_;
    ids.insert(ids.end(), after_.begin(), after_.end());
    return ids;
  }

 private:
  std::vector<int32_t> before_, after_;
};

// RobertaProcessing (trim_offsets) and BertProcessing: cls $A sep.
class ClsSep final : public PostProcessor {
 public:
  ClsSep(int32_t cls, int32_t sep, bool trim, bool add_prefix_space)
      : cls_(cls), sep_(sep), trim_(trim), add_prefix_space_(add_prefix_space) {}
  void process(Encoding& encoding, bool add_special_tokens, uint32_t text_bytes,
               const TokenString& token_string) const override {
    if (trim_) trim_offsets(encoding, add_prefix_space_, token_string);
    if (!add_special_tokens) return;
    add_tokens(encoding, {cls_}, true, text_bytes);
    add_tokens(encoding, {sep_}, false, text_bytes);
  }
  std::vector<int32_t> added_ids() const override { return {cls_, sep_}; }

 private:
  int32_t cls_, sep_;
  bool trim_, add_prefix_space_;
};

class Sequence final : public PostProcessor {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PostProcessor>> steps) : steps_(std::move(steps)) {}
  void process(Encoding& encoding, bool add_special_tokens, uint32_t text_bytes,
               const TokenString& token_string) const override {
    for (const auto& step : steps_) {
      step->process(encoding, add_special_tokens, text_bytes, token_string);
    }
  }
  std::vector<int32_t> added_ids() const override {
    std::vector<int32_t> ids;
    for (const auto& step : steps_) {
      const std::vector<int32_t> more = step->added_ids();
      ids.insert(ids.end(), more.begin(), more.end());
    }
    return ids;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

// One item of a template: a special token's name or a sequence ("A"/"B").
struct TemplateItem {
  bool is_sequence;
  std::string name;
};

absl::StatusOr<TemplateItem> template_item(const Json& item, std::string_view path) {
  if (item.is_string()) {
    // The string form: "$A", "$B", "$", "$A:1", or "[CLS]", "[CLS]:0".
    std::string text = item.get<std::string>();
    if (text.starts_with("$")) {
      std::string_view id = std::string_view(text).substr(1);
      id = id.substr(0, id.find(':'));
      if (id.empty() || id == "A" || id == "0") return TemplateItem{true, "A"};
      if (id == "B" || id == "1") return TemplateItem{true, "B"};
      return json_error(path, absl::StrCat("unknown sequence \"", text, "\""));
    }
    const size_t colon = text.rfind(':');
    uint32_t type_id;
    if (colon != std::string::npos && absl::SimpleAtoi(text.substr(colon + 1), &type_id)) {
      text.resize(colon);
    }
    return TemplateItem{false, text};
  }
  if (const Json* special = json_member(item, "SpecialToken")) {
    auto id = member_string(*special, json_child(path, "SpecialToken"), "id");
    if (!id.ok()) return id.status();
    return TemplateItem{false, *id};
  }
  if (const Json* sequence = json_member(item, "Sequence")) {
    auto id = member_string(*sequence, json_child(path, "Sequence"), "id");
    if (!id.ok()) return id.status();
    if (*id != "A" && *id != "B") {
      return json_error(json_child(path, "Sequence.id"), "expected \"A\" or \"B\"");
    }
    return TemplateItem{true, *id};
  }
  return json_error(path, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
}

absl::StatusOr<std::unique_ptr<PostProcessor>> load_template(const Json& value,
                                                             std::string_view path) {
  const std::string single_path = json_child(path, "single");
  const Json* single = json_member(value, "single");
  if (single == nullptr) return json_error(single_path, "missing");
  std::vector<TemplateItem> items;
  if (single->is_string()) {
    for (absl::string_view part :
         absl::StrSplit(single->get_ref<const std::string&>(), ' ', absl::SkipEmpty())) {
      auto item = template_item(Json(std::string(part)), single_path);
      if (!item.ok()) return item.status();
      items.push_back(*std::move(item));
    }
  } else if (single->is_array()) {
    for (size_t i = 0; i < single->size(); ++i) {
      auto item = template_item((*single)[i], json_index(single_path, i));
      if (!item.ok()) return item.status();
      items.push_back(*std::move(item));
    }
  } else {
    return json_error(single_path,
                      absl::StrCat("expected an array or a string, got ", json_type_name(*single)));
  }
  const Json* specials = json_member(value, "special_tokens");
  const std::string specials_path = json_child(path, "special_tokens");
  if (specials != nullptr && !specials->is_object()) {
    return json_error(specials_path,
                      absl::StrCat("expected an object, got ", json_type_name(*specials)));
  }
  std::vector<int32_t> before, after;
  int sequences = 0;
  for (const TemplateItem& item : items) {
    if (item.is_sequence) {
      if (item.name != "A") {
        return json_error(single_path, "the single-sequence template uses sequence B");
      }
      ++sequences;
      continue;
    }
    const Json* special = specials == nullptr ? nullptr : json_member(*specials, item.name);
    const std::string special_path = json_child(specials_path, item.name);
    if (special == nullptr) {
      return json_error(special_path, "missing (the template names it)");
    }
    auto ids = member_array(*special, special_path, "ids");
    if (!ids.ok()) return ids.status();
    for (size_t i = 0; i < (*ids)->size(); ++i) {
      auto id = json_uint((**ids)[i], json_index(json_child(special_path, "ids"), i), kMaxTokenId);
      if (!id.ok()) return id.status();
      (sequences == 0 ? before : after).push_back(static_cast<int32_t>(*id));
    }
  }
  if (sequences != 1) {
    return json_error(single_path, "the single-sequence template must name $A exactly once");
  }
  return std::make_unique<Template>(std::move(before), std::move(after));
}

// Roberta's and Bert's "cls"/"sep": ["<s>", 0].
absl::StatusOr<int32_t> cls_sep_id(const Json& value, std::string_view path, std::string_view key) {
  const Json* pair = json_member(value, key);
  const std::string pair_path = json_child(path, key);
  if (pair == nullptr) return json_error(pair_path, "missing");
  if (!pair->is_array() || pair->size() != 2 || !(*pair)[0].is_string()) {
    return json_error(pair_path, "expected [token, id]");
  }
  auto id = json_uint((*pair)[1], json_index(pair_path, 1), kMaxTokenId);
  if (!id.ok()) return id.status();
  return static_cast<int32_t>(*id);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> load_post_processor(const Json& value,
                                                                   std::string_view path) {
  auto type = component_type(value, path);
  if (!type.ok()) return type.status();
  if (*type == "TemplateProcessing") return load_template(value, path);
  if (*type == "ByteLevel" || *type == "RobertaProcessing" || *type == "BertProcessing") {
    const bool roberta = *type == "RobertaProcessing";
    auto trim = member_bool(value, path, "trim_offsets", *type != "BertProcessing");
    if (!trim.ok()) return trim.status();
    auto add_prefix_space = member_bool(value, path, "add_prefix_space", true);
    if (!add_prefix_space.ok()) return add_prefix_space.status();
    if (*type == "ByteLevel") return std::make_unique<ByteLevel>(*trim, *add_prefix_space);
    auto cls = cls_sep_id(value, path, "cls");
    if (!cls.ok()) return cls.status();
    auto sep = cls_sep_id(value, path, "sep");
    if (!sep.ok()) return sep.status();
    return std::make_unique<ClsSep>(*cls, *sep, roberta && *trim, *add_prefix_space);
  }
  if (*type == "Sequence") {
    auto list = member_array(value, path, "processors");
    if (!list.ok()) return list.status();
    std::vector<std::unique_ptr<PostProcessor>> steps;
    const std::string list_path = json_child(path, "processors");
    for (size_t i = 0; i < (*list)->size(); ++i) {
      auto step = load_post_processor((**list)[i], json_index(list_path, i));
      if (!step.ok()) return step.status();
      steps.push_back(*std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  return unsupported_type(path, *type);
}

}  // namespace dsinf::trainer::tokenizer_internal
