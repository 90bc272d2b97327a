// GPT-2's definition: its chunks, initialisation, and Hugging Face weights in and out.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "trainer/models/gpt2/gpt2.h"
#include "trainer/models/rng.h"

namespace dsinf::trainer {
namespace {

using namespace gpt2;

const char* const kBlockNames[kNumBlockTensors] = {
    "ln_1.weight",        "ln_1.bias",        "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",        "ln_2.bias",
    "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias"};

// Matrix weights stored (out, in) here and (in, out) by Hugging Face's Conv1D.
bool is_conv1d_weight(size_t t) {
  return t == kQkvW || t == kAttProjW || t == kFcW || t == kFcProjW;
}

std::string hf_name(const std::string& name) { return "transformer." + name; }

// Copies `src` laid out (rows, cols) into `dst` laid out (cols, rows).
void transpose(float* dst, const float* src, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  }
}

bool has(const TensorReader& reader, const std::string& name) {
  return reader.find(name) != nullptr;
}

bool tensor_is_conv1d(size_t chunk, size_t tensor, int n_layer) {
  return chunk >= 1 && chunk <= static_cast<size_t>(n_layer) && is_conv1d_weight(tensor);
}

}  // namespace

Gpt2Model::Gpt2Model(const ModelConfig& config) : config_(config), layouts_(make_layouts(config)) {}

std::vector<memory::ChunkLayout> Gpt2Model::make_layouts(const ModelConfig& c) {
  const int64_t C = c.n_embd, V = c.vocab_size, T = c.n_positions;
  std::vector<memory::ChunkLayout> layouts;
  memory::ChunkLayout embed(sizeof(float));
  embed.add("wte.weight", {V, C});
  embed.add("wpe.weight", {T, C});
  layouts.push_back(std::move(embed));
  const std::vector<std::vector<int64_t>> block_shapes = {
      {C}, {C}, {3 * C, C}, {3 * C}, {C, C}, {C}, {C}, {C}, {4 * C, C}, {4 * C}, {C, 4 * C}, {C}};
  for (int l = 0; l < c.n_layer; ++l) {
    memory::ChunkLayout block(sizeof(float));
    for (size_t t = 0; t < kNumBlockTensors; ++t) {
      block.add(absl::StrCat("h.", l, ".", kBlockNames[t]), block_shapes[t]);
    }
    layouts.push_back(std::move(block));
  }
  memory::ChunkLayout final_ln(sizeof(float));
  final_ln.add("ln_f.weight", {C});
  final_ln.add("ln_f.bias", {C});
  layouts.push_back(std::move(final_ln));
  return layouts;
}

std::string Gpt2Model::describe() const {
  return absl::StrFormat("gpt2 %d layers, %d heads, %d channels, %d positions, vocab %d",
                         config_.n_layer, config_.n_head, config_.n_embd, config_.n_positions,
                         config_.vocab_size);
}

std::string Gpt2Model::shape_text() const {
  return absl::StrFormat("gpt2 n_layer=%d n_head=%d n_embd=%d n_positions=%d vocab_size=%d",
                         config_.n_layer, config_.n_head, config_.n_embd, config_.n_positions,
                         config_.vocab_size);
}

size_t Gpt2Model::num_parameters() const {
  size_t n = 0;
  for (const memory::ChunkLayout& layout : layouts_) {
    for (const memory::TensorSlot& t : layout.tensors()) n += t.numel;
  }
  return n;
}

// PaLM's accounting: 6 x parameters for the matrix products forward and
// backward, plus 12 x layers x channels x positions for attention's two products.
double Gpt2Model::flops_per_token() const {
  return 6.0 * static_cast<double>(num_parameters()) +
         12.0 * config_.n_layer * static_cast<double>(config_.n_embd) * config_.window();
}

size_t Gpt2Model::activation_bytes(int max_batch) const {
  return Gpt2Program::activation_bytes_needed(config_, max_batch);
}

absl::StatusOr<std::unique_ptr<actors::LayerProgram>> Gpt2Model::instantiate(
    kernels::Backend* backend, int max_batch) const {
  absl::StatusOr<std::unique_ptr<Gpt2Program>> program =
      Gpt2Program::create(backend, config_, max_batch);
  if (!program.ok()) return program.status();
  return std::unique_ptr<actors::LayerProgram>(*std::move(program));
}

absl::Status Gpt2Model::init_random(uint64_t seed, actors::ChunkSource& chunks) const {
  Rng rng(seed);
  const float residual_std = 0.02f / std::sqrt(2.0f * static_cast<float>(config_.n_layer));
  for (size_t c = 0; c < layouts_.size(); ++c) {
    std::vector<float> host(layouts_[c].numel_padded(), 0.0f);
    const bool is_block = c >= 1 && c <= static_cast<size_t>(config_.n_layer);
    for (size_t t = 0; t < layouts_[c].tensors().size(); ++t) {
      const memory::TensorSlot& slot = layouts_[c].tensors()[t];
      float* dst = host.data() + slot.offset_elems;
      const bool is_matrix = slot.shape.size() == 2;
      const bool is_ln_weight =
          (!is_block && c != 0 && t == kLnfW) || (is_block && (t == kLn1W || t == kLn2W));
      if (is_matrix) {
        const float std_dev =
            (is_block && (t == kAttProjW || t == kFcProjW)) ? residual_std : 0.02f;
        for (size_t i = 0; i < slot.numel; ++i) dst[i] = static_cast<float>(rng.normal()) * std_dev;
      } else {
        std::fill(dst, dst + slot.numel, is_ln_weight ? 1.0f : 0.0f);
      }
    }
    if (absl::Status s = chunks.write_params(c, host.data()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Loads Hugging Face GPT2LMHeadModel tensors (with or without the
// "transformer." prefix; lm_head.weight optional, must equal wte when
// present; attn.bias/masked_bias ignored).
absl::Status Gpt2Model::load_hf(const TensorReader& file, actors::ChunkSource& chunks) const {
  std::vector<std::string> expected;
  for (size_t c = 0; c < layouts_.size(); ++c) {
    std::vector<float> host(layouts_[c].numel_padded(), 0.0f);
    for (size_t t = 0; t < layouts_[c].tensors().size(); ++t) {
      const memory::TensorSlot& slot = layouts_[c].tensors()[t];
      std::string name = hf_name(slot.name);
      if (!has(file, name) && has(file, slot.name)) name = slot.name;
      expected.push_back(name);
      const bool conv1d = tensor_is_conv1d(c, t, config_.n_layer);
      std::vector<int64_t> hf_shape = slot.shape;
      if (conv1d) std::swap(hf_shape[0], hf_shape[1]);
      if (!has(file, name)) {
        return absl::InvalidArgumentError(
            absl::StrCat(file.where(), ": missing tensor '", hf_name(slot.name), "'"));
      }
      absl::StatusOr<std::vector<float>> values = file.read_f32(name, hf_shape);
      if (!values.ok()) return values.status();
      float* dst = host.data() + slot.offset_elems;
      if (conv1d) {
        transpose(dst, values->data(), hf_shape[0], hf_shape[1]);
      } else {
        std::copy(values->begin(), values->end(), dst);
      }
      if (c == 0 && t == kWte) {
        for (const char* head : {"lm_head.weight", "transformer.lm_head.weight"}) {
          if (!has(file, head)) continue;
          expected.push_back(head);
          absl::StatusOr<std::vector<float>> tied = file.read_f32(head, slot.shape);
          if (!tied.ok()) return tied.status();
          if (*tied != *values) {
            return absl::InvalidArgumentError(
                absl::StrCat(file.file_of(head), ": '", head,
                             "' differs from the token embedding; dsinf's GPT-2 ties them"));
          }
        }
      }
    }
    if (absl::Status s = chunks.write_params(c, host.data()); !s.ok()) return s;
  }
  for (const std::string& name : file.names()) {
    const bool known = std::find(expected.begin(), expected.end(), name) != expected.end();
    const bool buffer = name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias");
    if (!known && !buffer) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.file_of(name), ": tensor '", name, "' does not belong to a GPT-2 with n_layer ",
          config_.n_layer, " (check model.n_layer against the file)"));
    }
  }
  return absl::OkStatus();
}

std::vector<HostTensor> Gpt2Model::hf_tensors() const {
  std::vector<HostTensor> out;
  for (size_t c = 0; c < layouts_.size(); ++c) {
    for (size_t t = 0; t < layouts_[c].tensors().size(); ++t) {
      const memory::TensorSlot& slot = layouts_[c].tensors()[t];
      HostTensor tensor{hf_name(slot.name), slot.shape, {}};
      if (tensor_is_conv1d(c, t, config_.n_layer)) std::swap(tensor.shape[0], tensor.shape[1]);
      out.push_back(std::move(tensor));
    }
  }
  return out;
}

absl::StatusOr<std::vector<HostTensor>> Gpt2Model::export_chunk(actors::ChunkSource& chunks,
                                                                size_t c, bool gradients) const {
  std::vector<HostTensor> out;
  std::vector<float> host(layouts_[c].numel_padded());
  if (absl::Status s = chunks.read_chunk(c, gradients, host.data()); !s.ok()) return s;
  for (size_t t = 0; t < layouts_[c].tensors().size(); ++t) {
    const memory::TensorSlot& slot = layouts_[c].tensors()[t];
    HostTensor tensor{hf_name(slot.name), slot.shape, std::vector<float>(slot.numel)};
    const float* src = host.data() + slot.offset_elems;
    if (tensor_is_conv1d(c, t, config_.n_layer)) {
      std::swap(tensor.shape[0], tensor.shape[1]);
      transpose(tensor.data.data(), src, slot.shape[0], slot.shape[1]);
    } else {
      std::copy(src, src + slot.numel, tensor.data.begin());
    }
    out.push_back(std::move(tensor));
  }
  return out;
}

}  // namespace dsinf::trainer
