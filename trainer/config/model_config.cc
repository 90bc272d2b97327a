// The model families the config knows, their shape keys with Hugging Face's
// names and defaults, and the reading of the model section (with a checkpoint
// directory's config.json).
#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "trainer/config/model_reader.h"

namespace dsinf::trainer {
namespace {

using config_internal::Diagnostics;
using config_internal::Json;
using config_internal::kNoMax;
using config_internal::kPositive;
using config_internal::ObjectReader;

constexpr int64_t kMaxModelDim = int64_t{1} << 20;
constexpr double kMaxModelParams = 1099511627776.0;  // 2^40
constexpr int64_t kMinVocabSize = 256;               // every byte is a token
constexpr size_t kMaxHfConfigBytes = size_t{4} << 20;

ModelConfig decoder_defaults(int vocab, int hidden, int inter, int kv, int positions) {
  ModelConfig m;
  m.vocab_size = vocab;
  m.n_embd = hidden;
  m.intermediate_size = inter;
  m.n_layer = 32;
  m.n_head = 32;
  m.n_kv_head = kv;
  m.n_positions = positions;
  return m;
}

std::vector<FamilyTraits> make_families() {
  std::vector<FamilyTraits> f;
  f.push_back({"gpt2",
               "GPT2LMHeadModel",
               false,
               {"activation_function", "layer_norm_epsilon", "n_inner"},
               ModelConfig{}});
  f.push_back({"llama",
               "LlamaForCausalLM",
               true,
               {"attention_bias", "mlp_bias"},
               decoder_defaults(32000, 4096, 11008, 0, 2048)});
  f.push_back({"mistral",
               "MistralForCausalLM",
               true,
               {"sliding_window"},
               decoder_defaults(32000, 4096, 14336, 8, 131072)});
  ModelConfig qwen2 = decoder_defaults(151936, 4096, 22016, 32, 32768);
  qwen2.qkv_bias = true;
  f.push_back({"qwen2",
               "Qwen2ForCausalLM",
               true,
               {"use_sliding_window", "sliding_window", "max_window_layers"},
               qwen2});
  ModelConfig qwen3 = decoder_defaults(151936, 4096, 22016, 32, 32768);
  qwen3.qk_norm = true;
  qwen3.head_dim = 128;
  f.push_back({"qwen3",
               "Qwen3ForCausalLM",
               true,
               {"attention_bias", "use_sliding_window", "sliding_window", "max_window_layers"},
               qwen3});
  for (FamilyTraits& family : f) family.defaults.type = std::string(family.type);
  return f;
}

const std::vector<FamilyTraits>& families() {
  static const std::vector<FamilyTraits> table = make_families();
  return table;
}

// A shape key: its Hugging Face name, how to read it and how to show it.
struct ShapeKey {
  absl::string_view name;
  std::function<void(ObjectReader&, ModelConfig*)> read;
  std::function<Json(const ModelConfig&)> get;
};

template <typename T>
ShapeKey int_key(absl::string_view name, T ModelConfig::*field, int64_t max = kMaxModelDim) {
  return {name, [=](ObjectReader& r, ModelConfig* m) { r.read_int_as(name, 1, max, &(m->*field)); },
          [=](const ModelConfig& m) { return Json(m.*field); }};
}
ShapeKey number_key(absl::string_view name, double ModelConfig::*field) {
  return {name,
          [=](ObjectReader& r, ModelConfig* m) { r.read_number(name, kPositive, &(m->*field)); },
          [=](const ModelConfig& m) { return Json(m.*field); }};
}
ShapeKey bool_key(absl::string_view name, bool ModelConfig::*field) {
  return {name, [=](ObjectReader& r, ModelConfig* m) { r.read_bool(name, &(m->*field)); },
          [=](const ModelConfig& m) { return Json(m.*field); }};
}
// A key whose only accepted value is `accepted` (what dsinf computes); any
// other value is refused naming the key.
ShapeKey fixed_key(absl::string_view name, Json accepted, absl::string_view why) {
  return {name,
          [=](ObjectReader& r, ModelConfig*) {
            const Json* value = r.find(name);
            if (value != nullptr && *value != accepted) {
              r.fail(name, absl::StrCat(config_internal::describe_value(*value),
                                        " is not supported: ", why));
            }
          },
          [](const ModelConfig&) { return Json(); }};
}
// A key read and then ignored (it changes nothing dsinf computes).
ShapeKey ignored_key(absl::string_view name) {
  return {name, [](ObjectReader&, ModelConfig*) {}, [](const ModelConfig&) { return Json(); }};
}

void read_rope_scaling(ObjectReader& parent, ModelConfig* m);
void read_rope_parameters(ObjectReader& parent, ModelConfig* m);
Json rope_scaling_json(const ModelConfig& m);

std::vector<ShapeKey> gpt2_keys() {
  return {int_key("n_layer", &ModelConfig::n_layer),
          int_key("n_head", &ModelConfig::n_head),
          int_key("n_embd", &ModelConfig::n_embd),
          int_key("n_positions", &ModelConfig::n_positions),
          int_key("vocab_size", &ModelConfig::vocab_size, INT_MAX),
          fixed_key("activation_function", "gelu_new", "dsinf's GPT-2 uses gelu_new (tanh GELU)"),
          fixed_key("layer_norm_epsilon", 1e-5, "dsinf's GPT-2 LayerNorm uses eps 1e-5"),
          ignored_key("n_inner")};
}

std::vector<ShapeKey> decoder_keys() {
  return {int_key("hidden_size", &ModelConfig::n_embd),
          int_key("num_hidden_layers", &ModelConfig::n_layer),
          int_key("num_attention_heads", &ModelConfig::n_head),
          int_key("num_key_value_heads", &ModelConfig::n_kv_head),
          int_key("head_dim", &ModelConfig::head_dim),
          int_key("intermediate_size", &ModelConfig::intermediate_size),
          int_key("max_position_embeddings", &ModelConfig::n_positions, INT_MAX),
          int_key("vocab_size", &ModelConfig::vocab_size, INT_MAX),
          number_key("rms_norm_eps", &ModelConfig::rms_norm_eps),
          number_key("rope_theta", &ModelConfig::rope_theta),
          {"rope_scaling", read_rope_scaling, rope_scaling_json},
          // After rope_theta and rope_scaling: it checks them.
          {"rope_parameters", read_rope_parameters, [](const ModelConfig&) { return Json(); }},
          bool_key("tie_word_embeddings", &ModelConfig::tie_word_embeddings),
          fixed_key("hidden_act", "silu", "dsinf's SwiGLU uses silu"),
          bool_key("attention_bias", &ModelConfig::attention_bias),
          bool_key("mlp_bias", &ModelConfig::mlp_bias),
          fixed_key("use_sliding_window", false, "dsinf has no sliding-window attention"),
          {"sliding_window",
           [](ObjectReader& r, ModelConfig* m) {
             // Qwen's sliding_window only acts with use_sliding_window; Mistral's always.
             if (r.has("sliding_window") && m->type == "mistral") {
               r.fail("sliding_window",
                      "is set; dsinf has no sliding-window attention "
                      "(use a checkpoint whose sliding_window is null)");
             }
           },
           [](const ModelConfig&) { return Json(); }},
          ignored_key("max_window_layers")};
}

// The family's keys: GPT-2's, or the decoder keys common to every decoder
// family plus the family's own extras.
std::vector<ShapeKey> keys_of(const FamilyTraits& family) {
  if (!family.decoder) return gpt2_keys();
  std::vector<ShapeKey> keys;
  for (ShapeKey& key : decoder_keys()) {
    static constexpr absl::string_view kExtras[] = {
        "attention_bias", "mlp_bias", "use_sliding_window", "sliding_window", "max_window_layers"};
    const bool extra =
        std::find(std::begin(kExtras), std::end(kExtras), key.name) != std::end(kExtras);
    const bool mine = std::find(family.extra_keys.begin(), family.extra_keys.end(), key.name) !=
                      family.extra_keys.end();
    if (!extra || mine) keys.push_back(std::move(key));
  }
  return keys;
}

// The scaling keys of a rope_scaling or rope_parameters object: rope_type
// (or its older name type; absent means `default_type`) and its factors.
void read_rope_fields(ObjectReader& r, ModelConfig* m, bool type_required) {
  RopeScaling& s = m->rope_scaling;
  const char* type_key = r.has("rope_type") ? "rope_type" : "type";
  size_t type = 0;
  if (!r.has(type_key) && !type_required) {
    s.type = "default";
    return;
  }
  if (!r.read_enum(type_key, {"default", "linear", "llama3"}, /*ignore_case=*/false, &type)) {
    if (r.diagnostics()->ok()) r.fail("rope_type", "required key is missing");
    return;
  }
  s.type = std::vector<std::string>{"default", "linear", "llama3"}[type];
  if (s.type == "default") return;
  if (!r.has("factor")) r.fail("factor", "required key is missing");
  r.read_number("factor", kPositive, &s.factor);
  if (s.type != "llama3") return;
  for (const char* key :
       {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    if (!r.has(key)) r.fail(key, "required key is missing");
  }
  r.read_number("low_freq_factor", kPositive, &s.low_freq_factor);
  r.read_number("high_freq_factor", kPositive, &s.high_freq_factor);
  r.read_int("original_max_position_embeddings", 1, kNoMax, &s.original_max_position_embeddings);
  if (r.diagnostics()->ok() && !(s.high_freq_factor > s.low_freq_factor)) {
    r.fail("high_freq_factor", "must be greater than low_freq_factor");
  }
}

void read_rope_scaling(ObjectReader& parent, ModelConfig* m) {
  ObjectReader r = parent.object("rope_scaling");
  if (r.present()) read_rope_fields(r, m, /*type_required=*/true);
}

// transformers 5 writes the rotary settings as one object, rope_parameters
// {rope_type, rope_theta, factor, ...}: the same fields, and rope_theta.
void read_rope_parameters(ObjectReader& parent, ModelConfig* m) {
  ObjectReader r = parent.object("rope_parameters");
  if (!r.present()) return;
  if (parent.has("rope_scaling")) {
    parent.fail("rope_parameters", "is given together with rope_scaling; give one of them");
    return;
  }
  double theta = m->rope_theta;
  if (r.read_number("rope_theta", kPositive, &theta) && parent.has("rope_theta") &&
      theta != m->rope_theta) {
    r.fail("rope_theta", "disagrees with the top-level rope_theta");
  }
  m->rope_theta = theta;
  double partial = 1.0;
  if (r.read_number("partial_rotary_factor", kPositive, &partial) && partial != 1.0) {
    r.fail("partial_rotary_factor", "is not supported: dsinf rotates the whole head");
  }
  read_rope_fields(r, m, /*type_required=*/false);
}

Json rope_scaling_json(const ModelConfig& m) {
  const RopeScaling& s = m.rope_scaling;
  if (s.type == "default") return Json();
  Json j = {{"rope_type", s.type}, {"factor", s.factor}};
  if (s.type == "llama3") {
    j["low_freq_factor"] = s.low_freq_factor;
    j["high_freq_factor"] = s.high_freq_factor;
    j["original_max_position_embeddings"] = s.original_max_position_embeddings;
  }
  return j;
}

}  // namespace

const FamilyTraits* find_family(absl::string_view type) {
  for (const FamilyTraits& family : families()) {
    if (family.type == type) return &family;
  }
  return nullptr;
}

std::string family_names() {
  std::vector<absl::string_view> names;
  for (const FamilyTraits& family : families()) names.push_back(family.type);
  return absl::StrJoin(names, ", ");
}

double approx_parameters(const ModelConfig& m) {
  const double c = m.n_embd, v = m.vocab_size, l = m.n_layer;
  const FamilyTraits* family = find_family(m.type);
  if (family == nullptr || !family->decoder) {
    return (v + m.n_positions) * c + l * (12.0 * c * c + 13.0 * c) + 2.0 * c;
  }
  const double q = static_cast<double>(m.n_head) * m.head_dim;
  const double kv = static_cast<double>(m.n_kv_head) * m.head_dim;
  const double layer = 2 * c * q + 2 * c * kv + 3 * c * m.intermediate_size + 2 * c;
  return v * c * (m.tie_word_embeddings ? 1 : 2) + l * layer + c;
}

nlohmann::ordered_json shape_keys(const ModelConfig& m) {
  const FamilyTraits* family = find_family(m.type);
  Json j = {{"type", m.type}};
  if (family == nullptr) return j;
  for (const ShapeKey& key : keys_of(*family)) {
    Json value = key.get(m);
    if (!value.is_null()) j[std::string(key.name)] = std::move(value);
  }
  return j;
}

nlohmann::ordered_json hf_config_json(const ModelConfig& m, const std::string& torch_dtype) {
  const FamilyTraits* family = find_family(m.type);
  Json j = {{"architectures", Json::array({std::string(family->architecture)})},
            {"model_type", m.type}};
  Json shape = shape_keys(m);
  shape.erase("type");
  j.update(shape);
  if (family->decoder) {
    j["hidden_act"] = "silu";
    if (m.type == "qwen2" || m.type == "qwen3") j["use_sliding_window"] = false;
  } else {
    j["activation_function"] = "gelu_new";
    j["layer_norm_epsilon"] = 1e-5;
    j["tie_word_embeddings"] = true;
  }
  j["torch_dtype"] = torch_dtype;
  return j;
}

}  // namespace dsinf::trainer

namespace dsinf::trainer::config_internal {
namespace {

// Reads <dir>/config.json into *out with its null values dropped (Hugging
// Face writes null for "use the default"). Failures go to `diag` as
// model.init_from errors.
bool read_hf_config(const std::string& dir, ObjectReader& model, Json* out) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    model.fail("init_from", absl::StrCat("directory \"", dir,
                                         "\" has no readable config.json (a Hugging Face model "
                                         "directory holds config.json and *.safetensors)"));
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > kMaxHfConfigBytes) {
    model.fail("init_from", absl::StrCat(path, " is larger than ", kMaxHfConfigBytes, " bytes"));
    return false;
  }
  Diagnostics hf_diag(path);
  std::optional<Json> json = parse_json_strict(text.str(), &hf_diag);
  if (json && !json->is_object()) hf_diag.fail("expected a JSON object at the top level");
  if (!hf_diag.ok()) {
    model.diagnostics()->fail(hf_diag.status().message());
    return false;
  }
  for (auto it = json->begin(); it != json->end();) {
    it = it->is_null() ? json->erase(it) : std::next(it);
  }
  *out = std::move(*json);
  return true;
}

// The family's shape keys present in `r` into *m.
void read_shape(ObjectReader& r, const FamilyTraits& family, ModelConfig* m) {
  for (const ShapeKey& key : keys_of(family)) key.read(r, m);
}

void resolve_shape(ModelConfig* m) {
  const FamilyTraits* family = find_family(m->type);
  if (family == nullptr || !family->decoder) return;
  if (m->n_kv_head == 0) m->n_kv_head = m->n_head;
  if (m->head_dim == 0 && m->n_head > 0) m->head_dim = m->n_embd / m->n_head;
}

// The keys the dsinf config gives must equal those of config.json.
void check_agreement(ObjectReader& r, const FamilyTraits& family, ModelConfig mine, ModelConfig hf,
                     const std::string& hf_path) {
  resolve_shape(&mine);
  resolve_shape(&hf);
  for (const ShapeKey& key : keys_of(family)) {
    // rope_parameters carries rope_theta and the scaling: compare those.
    const bool rope = key.name == "rope_theta" || key.name == "rope_scaling";
    const bool given = r.has(key.name) || (rope && r.has("rope_parameters"));
    if (!given || !r.diagnostics()->ok()) continue;
    const Json a = key.get(mine), b = key.get(hf);
    if (a != b) {
      r.fail(key.name, absl::StrCat(describe_value(a), " disagrees with ", key.name, " ",
                                    describe_value(b), " in ", hf_path));
    }
  }
}

}  // namespace

void read_model(ObjectReader& top, ModelConfig* m) {
  ObjectReader r = top.object("model");
  if (!r.present()) top.fail("model", "required section is missing");
  std::string type;
  const bool typed = r.read_string("type", /*non_empty=*/true, &type);
  r.read_string("init_from", /*non_empty=*/true, &m->init_from);
  std::string adapter_from;
  r.read_string("adapter_from", /*non_empty=*/true, &adapter_from);
  r.read_int_as("seed", 0, kNoMax, &m->seed);
  r.read_bool("activation_checkpointing", &m->activation_checkpointing);
  std::error_code ec;
  m->init_from_directory = !m->init_from.empty() && std::filesystem::is_directory(m->init_from, ec);
  Json hf_json;
  if (m->init_from_directory && !read_hf_config(m->init_from, r, &hf_json)) return;
  const std::string hf_path = (std::filesystem::path(m->init_from) / "config.json").string();
  if (m->init_from_directory) {
    const Json* model_type = hf_json.contains("model_type") ? &hf_json["model_type"] : nullptr;
    if (model_type == nullptr || !model_type->is_string()) {
      r.fail("init_from", absl::StrCat(hf_path, " has no model_type string"));
      return;
    }
    const std::string hf_type = model_type->get<std::string>();
    if (typed && type != hf_type) {
      r.fail("type", absl::StrCat("\"", type, "\" disagrees with model_type \"", hf_type, "\" in ",
                                  hf_path));
      return;
    }
    type = hf_type;
  }
  if (type.empty()) type = m->type;
  const FamilyTraits* family = find_family(type);
  if (family == nullptr) {
    const std::string what = typed ? absl::StrCat("\"", type, "\"")
                                   : absl::StrCat("model_type \"", type, "\" in ", hf_path);
    r.fail(typed ? "type" : "init_from",
           absl::StrCat(what, " is not a model family dsinf has (", family_names(), ")"));
    return;
  }
  std::vector<absl::string_view> allowed = {"type", "init_from", "adapter_from", "seed",
                                            "activation_checkpointing"};
  for (const ShapeKey& key : keys_of(*family)) allowed.push_back(key.name);
  r.allow_only(allowed);

  ModelConfig base = family->defaults;
  base.init_from = m->init_from;
  base.init_from_directory = m->init_from_directory;
  base.seed = m->seed;
  base.lora = m->lora;
  base.adapter_from = adapter_from;
  base.activation_checkpointing = m->activation_checkpointing;
  if (m->init_from_directory) {
    Diagnostics hf_diag(hf_path);
    ObjectReader hf(&hf_json, "", &hf_diag);
    read_shape(hf, *family, &base);
    if (!hf_diag.ok()) {
      r.diagnostics()->fail(hf_diag.status().message());
      return;
    }
  }
  ModelConfig mine = base;
  read_shape(r, *family, &mine);
  if (m->init_from_directory) check_agreement(r, *family, mine, base, hf_path);
  *m = mine;
  resolve_shape(m);
}

void check_model(Diagnostics* diag, ModelConfig* m, int64_t seq_len) {
  const FamilyTraits* family = find_family(m->type);
  if (family == nullptr) return;
  const bool decoder = family->decoder;
  auto key = [&](const char* gpt2_name, const char* decoder_name) {
    return absl::StrCat("model.", decoder ? decoder_name : gpt2_name);
  };
  if (!decoder && m->n_embd % m->n_head != 0) {
    diag->fail_at("model.n_embd",
                  absl::StrCat(m->n_embd, " is not divisible by model.n_head ", m->n_head));
  }
  if (decoder && m->n_head % m->n_kv_head != 0) {
    diag->fail_at(
        "model.num_attention_heads",
        absl::StrCat(m->n_head, " is not a multiple of model.num_key_value_heads ", m->n_kv_head));
  }
  if (decoder && (m->head_dim < 2 || m->head_dim % 2 != 0)) {
    diag->fail_at("model.head_dim",
                  absl::StrCat(m->head_dim,
                               " (hidden_size / num_attention_heads unless given) "
                               "must be even and at least 2 for rotary embeddings"));
  }
  if (m->vocab_size < kMinVocabSize) {
    diag->fail_at(key("vocab_size", "vocab_size"),
                  absl::StrCat("must be at least 256 for byte-level tokens, got ", m->vocab_size));
  }
  const double params = approx_parameters(*m);
  if (params >= kMaxModelParams) {
    diag->fail_at("model", absl::StrFormat("the shape gives %.3g parameters; dsinf supports "
                                           "fewer than 2^40",
                                           params));
  }
  if (seq_len == 0 && decoder) {
    diag->fail_at("data.seq_len",
                  absl::StrCat("required key is missing (the window length in tokens; at most "
                               "model.max_position_embeddings ",
                               m->n_positions, ")"));
  }
  if (seq_len > m->n_positions) {
    diag->fail_at("data.seq_len",
                  absl::StrCat(seq_len, " is more than ",
                               key("n_positions", "max_position_embeddings"), " ", m->n_positions));
  }
  m->seq_len = seq_len > 0 ? static_cast<int>(seq_len) : m->n_positions;
}

}  // namespace dsinf::trainer::config_internal
