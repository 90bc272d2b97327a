// The lora section (PEFT's LoraConfig) and, when model.adapter_from names a
// PEFT adapter directory, its adapter_config.json: the settings when the
// section is absent, which must agree with it when both are given.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "trainer/config/model_reader.h"

namespace dsinf::trainer {

const std::vector<std::string>& lora_module_names() {
  static const std::vector<std::string> names = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

double LoraConfig::scale() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / r;
}

bool LoraConfig::targets(const std::string& module) const {
  return enabled &&
         std::find(target_modules.begin(), target_modules.end(), module) != target_modules.end();
}

bool LoraConfig::saves(const std::string& module) const {
  return enabled &&
         std::find(modules_to_save.begin(), modules_to_save.end(), module) != modules_to_save.end();
}

namespace config_internal {
namespace {

constexpr size_t kMaxAdapterConfigBytes = 1 << 20;
constexpr int64_t kMaxRank = 65536;
const std::vector<std::string> kSavable = {"lm_head", "embed_tokens"};

// PEFT's defaults for the Llama family's target_modules.
const std::vector<std::string> kDefaultTargets = {"q_proj", "v_proj"};

// target_modules as given: names of lora_module_names() or "all-linear",
// resolved into layer order. False (after failing the key) on anything else.
bool resolve_targets(ObjectReader& r, const std::vector<std::string>& given,
                     std::vector<std::string>* out) {
  const std::vector<std::string>& known = lora_module_names();
  if (given.size() == 1 && given[0] == "all-linear") {
    *out = known;
    return true;
  }
  for (const std::string& name : given) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      r.fail("target_modules", absl::StrCat("\"", name, "\" is not a projection of the Llama "
                                            "family's layers: use \"all-linear\" or names of ",
                                            absl::StrJoin(known, ", ")));
      return false;
    }
  }
  out->clear();
  for (const std::string& name : known) {
    if (std::find(given.begin(), given.end(), name) != given.end()) out->push_back(name);
  }
  return true;
}

bool resolve_saved(ObjectReader& r, const std::vector<std::string>& given,
                   std::vector<std::string>* out) {
  for (const std::string& name : given) {
    if (std::find(kSavable.begin(), kSavable.end(), name) == kSavable.end()) {
      r.fail("modules_to_save", absl::StrCat("\"", name, "\" cannot be trained fully beside the "
                                             "adapters; dsinf supports ",
                                             absl::StrJoin(kSavable, ", ")));
      return false;
    }
  }
  out->clear();
  for (const std::string& name : kSavable) {
    if (std::find(given.begin(), given.end(), name) != given.end()) out->push_back(name);
  }
  return true;
}

// The keys both the lora section and adapter_config.json have, read through `r`.
void read_common(ObjectReader& r, LoraConfig* lora) {
  int64_t rank = lora->r;
  if (r.read_int("r", 1, kMaxRank, &rank)) lora->r = static_cast<int>(rank);
  r.read_number("lora_alpha", config_internal::kPositive, &lora->alpha);
  r.read_number("lora_dropout", {0.0, 1.0, false, true}, &lora->dropout);
  r.read_bool("use_rslora", &lora->use_rslora);
  size_t bias = 0;
  if (r.read_enum("bias", {"none", "all", "lora_only"}, false, &bias) && bias != 0) {
    r.fail("bias", "only \"none\" is supported: biases stay frozen with the base");
  }
  std::vector<std::string> targets = kDefaultTargets;
  r.read_string_list("target_modules", &targets);
  resolve_targets(r, targets, &lora->target_modules);
  const Json* saved = r.find("modules_to_save");
  std::vector<std::string> to_save;
  if (saved != nullptr && !saved->is_null()) r.read_string_list("modules_to_save", &to_save);
  resolve_saved(r, to_save, &lora->modules_to_save);
  bool flag = false;
  if (r.read_bool("fan_in_fan_out", &flag) && flag) {
    r.fail("fan_in_fan_out", "must be false: Llama projections store (out, in)");
  }
}

absl::StatusOr<Json> read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > kMaxAdapterConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": larger than ", kMaxAdapterConfigBytes, " bytes"));
  }
  Json json = Json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  return json;
}

// PEFT writes many keys; those that would change the math must hold their defaults.
void check_peft_only_keys(ObjectReader& r) {
  std::string type;
  if (r.read_string("peft_type", false, &type) && type != "LORA") {
    r.fail("peft_type", absl::StrCat("\"", type, "\": dsinf reads LoRA adapters only"));
  }
  bool flag = false;
  if (r.read_bool("use_dora", &flag) && flag) r.fail("use_dora", "DoRA is not supported");
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    const Json* v = r.find(key);
    if (v != nullptr && !v->is_null() && !(v->is_object() && v->empty())) {
      r.fail(key, "per-module ranks or alphas are not supported");
    }
  }
  const Json* layers = r.find("layers_to_transform");
  if (layers != nullptr && !layers->is_null()) {
    r.fail("layers_to_transform", "adapters on a subset of layers are not supported");
  }
}

// The adapter directory's settings, or the failure recorded on `model_reader`.
bool read_adapter_config(ObjectReader& model_reader, const std::string& dir, LoraConfig* out) {
  const std::string path = (std::filesystem::path(dir) / "adapter_config.json").string();
  absl::StatusOr<Json> json = read_json_file(path);
  if (!json.ok()) {
    model_reader.fail("adapter_from", json.status().message());
    return false;
  }
  Diagnostics diag(path);
  ObjectReader r(&*json, "", &diag);
  LoraConfig lora;
  lora.enabled = true;
  read_common(r, &lora);
  check_peft_only_keys(r);
  if (!diag.ok()) {
    model_reader.diagnostics()->fail(diag.status().message());
    return false;
  }
  *out = lora;
  return true;
}

// The lora section and the adapter must describe the same adapters.
void check_agreement(ObjectReader& r, const LoraConfig& mine, const LoraConfig& adapter,
                     const std::string& dir) {
  auto differ = [&](const char* key, const std::string& a, const std::string& b) {
    r.fail(key, absl::StrCat(a, " disagrees with ", b, " in ", dir, "/adapter_config.json"));
  };
  if (mine.r != adapter.r) differ("r", absl::StrCat(mine.r), absl::StrCat(adapter.r));
  if (mine.scale() != adapter.scale()) {
    differ("lora_alpha", absl::StrCat("scale ", mine.scale()),
           absl::StrCat("scale ", adapter.scale()));
  }
  if (mine.target_modules != adapter.target_modules) {
    differ("target_modules", absl::StrJoin(mine.target_modules, ","),
           absl::StrJoin(adapter.target_modules, ","));
  }
  if (mine.modules_to_save != adapter.modules_to_save) {
    differ("modules_to_save", absl::StrJoin(mine.modules_to_save, ","),
           absl::StrJoin(adapter.modules_to_save, ","));
  }
}

std::string adapter_dir_of(ObjectReader& top) {
  const Json* model = top.find("model");
  if (model == nullptr || !model->is_object() || !model->contains("adapter_from")) return "";
  const Json& dir = (*model)["adapter_from"];
  return dir.is_string() ? dir.get<std::string>() : "";
}

}  // namespace

void read_lora(ObjectReader& top, ModelConfig* m) {
  ObjectReader r = top.object("lora");
  const std::string adapter_dir = adapter_dir_of(top);
  LoraConfig adapter;
  ObjectReader model = top.object("model");
  const bool have_adapter = !adapter_dir.empty() && read_adapter_config(model, adapter_dir, &adapter);
  if (!r.present()) {
    if (have_adapter) m->lora = adapter;
    return;
  }
  r.allow_only({"r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "bias",
                "modules_to_save", "fan_in_fan_out", "task_type"});
  m->lora.enabled = true;
  read_common(r, &m->lora);
  size_t task = 0;
  r.read_enum("task_type", {"CAUSAL_LM"}, false, &task);
  if (have_adapter && r.diagnostics()->ok()) check_agreement(r, m->lora, adapter, adapter_dir);
}

void check_lora(Diagnostics* diag, const ModelConfig& m) {
  if (!m.adapter_from.empty() && !m.lora.enabled) {
    diag->fail_at("model.adapter_from", "needs a lora section or an adapter_config.json");
  }
  if (!m.lora.enabled) return;
  const FamilyTraits* family = find_family(m.type);
  if (family != nullptr && !family->decoder) {
    diag->fail_at("lora", absl::StrCat("LoRA adapts the Llama family's projections; model.type \"",
                                       m.type, "\" has none"));
  }
  if (m.tie_word_embeddings && !m.lora.modules_to_save.empty()) {
    diag->fail_at("lora.modules_to_save",
                  "a model with tie_word_embeddings shares lm_head and embed_tokens; training a "
                  "copy of either is not supported");
  }
}

}  // namespace config_internal
}  // namespace dsinf::trainer
