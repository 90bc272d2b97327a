// LoRA over the Llama family: the adapter chunks after the frozen base, their
// initialisation as PEFT's (A Kaiming-uniform with a = sqrt(5), B zero, so the
// adapted model starts equal to the base), the merge W + scale * B A, and PEFT
// adapter tensors in and out.
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "trainer/models/llama/llama.h"
#include "trainer/models/rng.h"

namespace dsinf::trainer {
namespace {

constexpr const char* kPeftPrefix = "base_model.model.";
constexpr const char* kSavedSuffix = ".modules_to_save.default.weight";
// The adapters' random stream is apart from the base's: the same base seed
// gives the same base with or without LoRA.
constexpr uint64_t kAdapterSeedSalt = 0x4c6f5241ull;  // "LoRA"

int64_t width_in(const ModelConfig& c, int module) {
  const int64_t Q = static_cast<int64_t>(c.n_head) * c.head_dim;
  if (module == kLoraO) return Q;
  if (module == kLoraDown) return c.intermediate_size;
  return c.n_embd;
}

int64_t width_out(const ModelConfig& c, int module) {
  const int64_t Q = static_cast<int64_t>(c.n_head) * c.head_dim;
  const int64_t K = static_cast<int64_t>(c.n_kv_head) * c.head_dim;
  switch (module) {
    case kLoraQ:
      return Q;
    case kLoraK:
    case kLoraV:
      return K;
    case kLoraGate:
    case kLoraUp:
      return c.intermediate_size;
    default:
      return c.n_embd;
  }
}

// PEFT's name of a modules_to_save copy in the adapter file: the module's
// weight (get_peft_model_state_dict drops "modules_to_save." and the adapter name).
std::string saved_name(const std::string& copy_name) {
  return kPeftPrefix + copy_name.substr(0, copy_name.size() - std::string(kSavedSuffix).size()) +
         ".weight";
}

}  // namespace

LoraShape lora_shape(const ModelConfig& c, int module) {
  return {width_in(c, module), width_out(c, module)};
}

std::string lora_module_path(int l, int module) {
  const std::string& name = lora_module_names()[module];
  const char* part = module <= kLoraO ? "self_attn." : "mlp.";
  return absl::StrCat("model.layers.", l, ".", part, name);
}

LlamaLoraTensors append_lora_layouts(const ModelConfig& c,
                                     std::vector<memory::ChunkLayout>& layouts) {
  LlamaLoraTensors t;
  t.base_chunks = layouts.size();
  if (!c.lora.enabled) return t;
  t.enabled = true;
  for (memory::ChunkLayout& layout : layouts) layout.set_trainable(false);
  const int64_t r = c.lora.r;
  for (int l = 0; l < c.n_layer; ++l) {
    memory::ChunkLayout adapter(sizeof(float));
    for (int m = 0; m < kLoraModules; ++m) {
      if (!c.lora.targets(lora_module_names()[m])) continue;
      const LoraShape s = lora_shape(c, m);
      const std::string path = lora_module_path(l, m);
      t.a[m] = static_cast<int>(adapter.add(path + ".lora_A.weight", {r, s.in}));
      t.b[m] = static_cast<int>(adapter.add(path + ".lora_B.weight", {s.out, r}));
    }
    adapter.set_own_slot(true);  // used at once with the layer's base chunk
    layouts.push_back(std::move(adapter));
  }
  const int64_t V = c.vocab_size, C = c.n_embd;
  for (const char* module : {"lm_head", "embed_tokens"}) {
    if (!c.lora.saves(module)) continue;
    memory::ChunkLayout copy(sizeof(float));
    const std::string base = std::string(module) == "lm_head" ? "lm_head" : "model.embed_tokens";
    copy.add(base + kSavedSuffix, {V, C});
    (std::string(module) == "lm_head" ? t.lm_head_copy : t.embed_copy) =
        static_cast<int>(layouts.size());
    layouts.push_back(std::move(copy));
  }
  return t;
}

absl::Status LlamaModel::init_adapter(int l, actors::ChunkSource& chunks) const {
  const size_t c = lora_.adapter_chunk(l);
  Rng rng((config_.seed ^ kAdapterSeedSalt) + static_cast<uint64_t>(l));
  std::vector<float> host(layouts_[c].numel_padded(), 0.0f);
  for (int m = 0; m < kLoraModules; ++m) {
    if (lora_.a[m] < 0) continue;
    // kaiming_uniform_(a=sqrt(5)) over fan_in = in: bound = 1 / sqrt(in).
    const memory::TensorSlot& A = layouts_[c].tensors()[lora_.a[m]];
    const double bound = 1.0 / std::sqrt(static_cast<double>(A.shape[1]));
    float* dst = host.data() + A.offset_elems;
    for (size_t i = 0; i < A.numel; ++i) {
      dst[i] = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
    }
  }
  return chunks.write_params(c, host.data());
}

absl::Status LlamaModel::init_lora_after(size_t c, const std::vector<float>& host,
                                         actors::ChunkSource& chunks) const {
  if (!lora_.enabled) return absl::OkStatus();
  const size_t final_chunk = this->final_chunk();
  auto copy = [&](int copy_chunk, const memory::TensorSlot& from) {
    std::vector<float> out(layouts_[copy_chunk].numel_padded(), 0.0f);
    std::copy(host.begin() + from.offset_elems, host.begin() + from.offset_elems + from.numel,
              out.begin());
    return chunks.write_params(copy_chunk, out.data());
  };
  if (c == 0 && lora_.embed_copy >= 0) return copy(lora_.embed_copy, layouts_[0].tensors()[0]);
  if (c == final_chunk && lora_.lm_head_copy >= 0) {
    if (absl::Status s = copy(lora_.lm_head_copy, layouts_[c].tensors()[1]); !s.ok()) return s;
  }
  if (c >= 1 && c < final_chunk) return init_adapter(static_cast<int>(c) - 1, chunks);
  return absl::OkStatus();
}

// W (out, in) += scale * B (out, r) A (r, in), each product summed in double
// and rounded once, the scale applied in float as PEFT's merge does.
absl::Status LlamaModel::merge_into(size_t c, std::vector<HostTensor>& tensors,
                                    actors::ChunkSource& chunks) const {
  if (!lora_.enabled || c < 1 || c >= final_chunk()) return absl::OkStatus();
  const int l = static_cast<int>(c) - 1;
  const size_t ac = lora_.adapter_chunk(l);
  std::vector<float> adapter(layouts_[ac].numel_padded());
  if (absl::Status s = chunks.read_chunk(ac, false, adapter.data()); !s.ok()) return s;
  const float scale = static_cast<float>(config_.lora.scale());
  const int64_t r = config_.lora.r;
  for (int m = 0; m < kLoraModules; ++m) {
    if (lora_.a[m] < 0) continue;
    const std::string name = lora_module_path(l, m) + ".weight";
    HostTensor* W = nullptr;
    for (HostTensor& t : tensors) W = t.name == name ? &t : W;
    if (W == nullptr) return absl::InternalError(absl::StrCat("merge: no tensor ", name));
    const float* A = adapter.data() + layouts_[ac].tensors()[lora_.a[m]].offset_elems;
    const float* B = adapter.data() + layouts_[ac].tensors()[lora_.b[m]].offset_elems;
    const int64_t out = W->shape[0], in = W->shape[1];
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i) {
        double sum = 0;
        for (int64_t k = 0; k < r; ++k) sum += static_cast<double>(B[o * r + k]) * A[k * in + i];
        W->data[o * in + i] += static_cast<float>(sum) * scale;
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<HostTensor>> LlamaModel::adapter_tensors(
    actors::ChunkSource& chunks) const {
  if (!lora_.enabled) return Model::adapter_tensors(chunks);
  std::vector<HostTensor> out;
  for (size_t c = lora_.base_chunks; c < layouts_.size(); ++c) {
    std::vector<float> host(layouts_[c].numel_padded());
    if (absl::Status s = chunks.read_chunk(c, false, host.data()); !s.ok()) return s;
    for (const memory::TensorSlot& slot : layouts_[c].tensors()) {
      const bool copy = slot.name.ends_with(kSavedSuffix);
      const float* src = host.data() + slot.offset_elems;
      out.push_back({copy ? saved_name(slot.name) : kPeftPrefix + slot.name, slot.shape,
                     std::vector<float>(src, src + slot.numel)});
    }
  }
  return out;
}

absl::Status LlamaModel::load_adapter(const TensorReader& reader,
                                      actors::ChunkSource& chunks) const {
  if (!lora_.enabled) return Model::load_adapter(reader, chunks);
  std::set<std::string> expected;
  for (size_t c = lora_.base_chunks; c < layouts_.size(); ++c) {
    std::vector<float> host(layouts_[c].numel_padded(), 0.0f);
    for (const memory::TensorSlot& slot : layouts_[c].tensors()) {
      const bool copy = slot.name.ends_with(kSavedSuffix);
      std::string name = copy ? saved_name(slot.name) : kPeftPrefix + slot.name;
      // PEFT before 0.3 kept the wrapper's own name in the file.
      if (copy && reader.find(name) == nullptr && reader.find(kPeftPrefix + slot.name) != nullptr) {
        name = kPeftPrefix + slot.name;
      }
      if (reader.find(name) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(reader.where(), ": missing tensor '", name, "' (LoRA r=",
                         config_.lora.r, " on ", describe(), ")"));
      }
      absl::StatusOr<std::vector<float>> values = reader.read_f32(name, slot.shape);
      if (!values.ok()) return values.status();
      std::copy(values->begin(), values->end(), host.data() + slot.offset_elems);
      expected.insert(name);
    }
    if (absl::Status s = chunks.write_params(c, host.data()); !s.ok()) return s;
  }
  for (const std::string& name : reader.names()) {
    if (expected.contains(name)) continue;
    return absl::InvalidArgumentError(
        absl::StrCat(reader.file_of(name), ": tensor '", name,
                     "' is not one of the adapters the lora section describes"));
  }
  return absl::OkStatus();
}

}  // namespace dsinf::trainer
