// What the runtime and the trainer actor know of a model: its definition (the
// chunks of one shape, the activation memory a micro-batch needs, seeded
// initialisation) and an instance of it on a backend, whose forward and
// backward are a layer program over a ChunkSource. Model families implement
// both in trainer/models; nothing below trainer/ knows which family runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "memory/chunk_layout.h"

namespace dsinf::actors {

// Where the model finds each chunk's parameters and leaves each chunk's
// gradients during a forward or backward pass. A layer program visits chunks
// in a fixed order; the source decides where the bytes live between visits
// (the runtime: on the device, or streamed from host or NVMe). The math does
// not depend on the source: a gradient visit is computed into a zeroed buffer
// and then added into the chunk's accumulator, which starts each step at +0,
// by the same float addition wherever it lives.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  // Device pointer to chunk c's parameters (its ChunkLayout), valid until release_params(c).
  virtual absl::StatusOr<const float*> acquire_params(size_t c) = 0;
  virtual absl::Status release_params(size_t c) = 0;
  // `visit` (device, chunk c's layout) holds one visit's gradient of chunk c:
  // add it into the chunk's accumulator (nothing for a frozen chunk). `visit`
  // may be reused once this returns.
  virtual absl::Status accumulate_grads(size_t c, const float* visit) = 0;

  // Outside the passes: chunk c's parameters from host memory (initialisation,
  // loading weights), and chunk c's parameters or accumulated gradients into
  // host memory (export). Both numel_padded floats.
  virtual absl::Status write_params(size_t c, const float* host) = 0;
  virtual absl::Status read_chunk(size_t c, bool gradients, float* host) = 0;
};

// One model of one shape on one backend: activations for micro-batches of up
// to its max batch, and the layer program.
class LayerProgram {
 public:
  virtual ~LayerProgram() = default;
  // Forward and backward take parameters from, and leave gradients with,
  // `source` (not owned), which must be set before either runs.
  virtual void set_chunk_source(ChunkSource* source) = 0;
  // Forward over B windows of T tokens (host arrays of B*T ids). Returns the
  // mean token cross-entropy and keeps the activations for backward().
  virtual absl::StatusOr<float> forward(const int32_t* inputs, const int32_t* targets, int B) = 0;
  // Sum over the B*T tokens of the last forward of the per-token losses, in double.
  virtual double last_loss_sum() const = 0;
  // Adds d(loss_sum * dloss)/d(params) to the gradients through the source.
  virtual absl::Status backward(float dloss) = 0;
  // A training micro-batch sets a key before its forward: dropout masks are a
  // function of it, so backward's recomputation reproduces them. Cleared
  // (nullopt, the default) a forward is an evaluation: no dropout.
  virtual void set_dropout_key(std::optional<uint64_t> key) { (void)key; }
};

// A model's definition: everything known before anything is allocated.
class ModelDef {
 public:
  virtual ~ModelDef() = default;
  // "gpt2 6 layers, 6 heads, 192 channels, 128 positions, vocab 256": for logs.
  virtual std::string describe() const = 0;
  // The chunks, in the order the layer program first visits them.
  virtual std::vector<memory::ChunkLayout> layouts() const = 0;
  // The gradient visits chunk c gets in one micro-batch's backward (a tied
  // embedding: two). Several ranks reduce a chunk's visits of a micro-batch
  // together, in the order one rank adds them; the runtime checks the count.
  virtual int grad_visits(size_t c) const {
    (void)c;
    return 1;
  }
  virtual size_t num_parameters() const = 0;  // without padding
  virtual int seq_len() const = 0;            // T: tokens a window
  virtual int vocab_size() const = 0;
  // Model FLOPs a token of training (forward and backward, PaLM's accounting,
  // recomputation not counted).
  virtual double flops_per_token() const = 0;
  // Device bytes of the activations and gradient visit buffer for micro-batches
  // of `max_batch` windows: what a pass needs besides the chunks.
  virtual size_t activation_bytes(int max_batch) const = 0;
  // The model on `backend` for micro-batches of up to `max_batch` windows.
  // kResourceExhausted when the arena budget is too small.
  virtual absl::StatusOr<std::unique_ptr<LayerProgram>> instantiate(kernels::Backend* backend,
                                                                    int max_batch) const = 0;
  // Seeded initialisation of every chunk, written through `chunks`:
  // deterministic for a seed on every machine.
  virtual absl::Status init_random(uint64_t seed, ChunkSource& chunks) const = 0;
};

}  // namespace dsinf::actors
