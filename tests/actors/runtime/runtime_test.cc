// The runtime in-process, no subprocess: every placement of the tensor
// classes (device, host, NVMe) updates to the bytes of the all-device run;
// the optimizer actor's NVMe pipeline gives the same bytes at every depth and
// drops its read-ahead without a trace when a step is skipped; a snapshot
// holds its step while the next update waits for it chunk by chunk; and the
// checkpoint state round-trips every class wherever it lives.
#include "actors/runtime/runtime.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "memory/aligned_buffer.h"
#include "tests/test_util.h"
#include "trainer/models/gpt2/gpt2.h"

namespace dsinf::actors {
namespace {

using testing::TempDir;

trainer::ModelConfig tiny_model() {
  trainer::ModelConfig c;
  c.n_layer = 3;
  c.n_head = 2;
  c.n_embd = 32;
  c.n_positions = 16;
  c.vocab_size = 256;
  return c;
}

RuntimeSpec base_spec() {
  RuntimeSpec spec;
  spec.source = "test";
  spec.device.kind = DeviceRequest::Kind::kCpu;
  spec.adam.weight_decay = 0.01;
  spec.step.micro_batch = 2;
  spec.step.gradient_accumulation = 2;
  spec.step.gradient_clipping = 0.5;
  return spec;
}

// Step `index`'s tokens: two micro-batches of 2 windows, different each step.
StepRequest request(int index) {
  StepRequest r;
  r.index = index;
  r.lr = 3e-3 / (1 + index);
  for (int i = 0; i < 2 * 2 * 16; ++i) {
    r.inputs.push_back((i * 37 + index * 11) % 256);
    r.targets.push_back((i * 53 + index * 7 + 1) % 256);
  }
  return r;
}

// Every class of every chunk, as the checkpoint state reads it.
using State = std::vector<std::vector<std::byte>>;

// A page-aligned buffer of the largest chunk: what the checkpoint state reads
// into and writes from (NVMe homes move it with O_DIRECT).
memory::AlignedBuffer staging(const Runtime& rt) {
  size_t largest = 0;
  for (const memory::ChunkLayout& l : rt.layouts()) largest = std::max(largest, l.bytes());
  return *memory::AlignedBuffer::allocate(largest);
}

State read_state(Runtime& rt, bool snapshot = false) {
  State out;
  memory::AlignedBuffer buffer = staging(rt);
  for (size_t c = 0; c < rt.layouts().size(); ++c) {
    const size_t bytes = rt.layouts()[c].bytes();
    for (int cls : {kParamClass, kMClass, kVClass}) {
      const absl::Status s =
          snapshot ? rt.read_snapshot(cls, c, buffer.data()) : rt.read_class(cls, c, buffer.data());
      EXPECT_TRUE(s.ok()) << s;
      out.emplace_back(buffer.data(), buffer.data() + bytes);
    }
    if (snapshot) rt.snapshot_chunk_read(c);
  }
  return out;
}

std::unique_ptr<Runtime> start(const RuntimeSpec& spec, const trainer::Gpt2Model& model) {
  absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::create(spec, model);
  EXPECT_TRUE(rt.ok()) << rt.status();
  if (!rt.ok()) return nullptr;
  EXPECT_TRUE(model.init_random(5, **rt).ok());
  return *std::move(rt);
}

void run_steps(Runtime& rt, int steps) {
  for (int i = 0; i < steps; ++i) {
    absl::StatusOr<StepOutcome> out = rt.step(request(i));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_FALSE(out->skipped);
  }
  ASSERT_TRUE(rt.settle().ok());
}

State trained(const RuntimeSpec& spec, int steps) {
  const trainer::Gpt2Model model(tiny_model());
  std::unique_ptr<Runtime> rt = start(spec, model);
  if (!rt) return {};
  run_steps(*rt, steps);
  return read_state(*rt);
}

struct Placed {
  const char* name;
  std::function<void(Placement&, const std::string& swap)> place;
};

const Placed kPlacements[] = {
    {"optimizer on the host",
     [](Placement& p, const std::string&) {
       p.optimizer = Tier::kHost;
       p.grads = Tier::kHost;
     }},
    {"params and optimizer on the host",
     [](Placement& p, const std::string&) { p.params = p.optimizer = p.grads = Tier::kHost; }},
    {"params and optimizer on NVMe",
     [](Placement& p, const std::string& swap) {
       p.params = p.optimizer = Tier::kNvme;
       p.grads = Tier::kHost;
       p.param_paths = p.optimizer_paths = {swap};
       p.param_max_in_cpu = 0;
     }},
    {"params on NVMe cached, optimizer on NVMe",
     [](Placement& p, const std::string& swap) {
       p.params = p.optimizer = Tier::kNvme;
       p.grads = Tier::kHost;
       p.param_paths = p.optimizer_paths = {swap};
     }},
    {"params on NVMe, optimizer on the device",
     [](Placement& p, const std::string& swap) {
       p.params = Tier::kNvme;
       p.param_paths = {swap};
       p.param_max_in_cpu = 0;
     }},
    {"params on the host, optimizer on NVMe",
     [](Placement& p, const std::string& swap) {
       p.params = Tier::kHost;
       p.optimizer = Tier::kNvme;
       p.grads = Tier::kHost;
       p.optimizer_paths = {swap};
     }},
};

TEST(Runtime, EveryPlacementUpdatesToTheBytesOfTheAllDeviceRun) {
  TempDir dir;
  const State reference = trained(base_spec(), 3);
  ASSERT_FALSE(reference.empty());
  for (const Placed& placed : kPlacements) {
    SCOPED_TRACE(placed.name);
    RuntimeSpec spec = base_spec();
    placed.place(spec.placement, dir.path());
    EXPECT_TRUE(trained(spec, 3) == reference);
  }
}

RuntimeSpec nvme_optimizer(const std::string& swap, int64_t buffer_count) {
  RuntimeSpec spec = base_spec();
  Placement& p = spec.placement;
  p.params = p.optimizer = Tier::kNvme;
  p.grads = Tier::kHost;
  p.param_paths = p.optimizer_paths = {swap};
  p.param_max_in_cpu = 0;
  p.optimizer_buffer_count = buffer_count;
  return spec;
}

// The staging sets only change when state moves, never the bytes: two sets
// (the fewest), three, and one per chunk (the model's 5), at three buffers a
// set (m, v and the uncached master weights).
TEST(Runtime, OptimizerPipelineDepthChangesNoByte) {
  TempDir dir;
  const State reference = trained(base_spec(), 3);
  for (int64_t buffers : {1, 9, 30}) {
    SCOPED_TRACE(buffers);
    EXPECT_TRUE(trained(nvme_optimizer(dir.path(), buffers), 3) == reference);
  }
}

// State read ahead for a step that is then skipped (an fp16 overflow) is
// dropped: nothing changes, and the next step starts its reads afresh.
TEST(Runtime, ReadAheadDroppedForASkippedStepChangesNothing) {
  TempDir dir;
  const trainer::Gpt2Model model(tiny_model());
  std::unique_ptr<Runtime> rt = start(nvme_optimizer(dir.path(), 4), model);
  ASSERT_TRUE(rt);
  run_steps(*rt, 2);
  const State before = read_state(*rt);
  rt->begin_step();
  const StepRequest r = request(2);
  ASSERT_TRUE(rt->model().forward(r.inputs.data(), r.targets.data(), 2).ok());
  ASSERT_TRUE(rt->model().backward(1.0f / 64).ok());
  rt->last_micro_batch();  // the optimizer starts reading state ahead
  ASSERT_TRUE(rt->model().forward(r.inputs.data() + 32, r.targets.data() + 32, 2).ok());
  ASSERT_TRUE(rt->model().backward(1.0f / 64).ok());
  ASSERT_TRUE(rt->grad_norm().ok());
  ASSERT_TRUE(rt->skip_update().ok());
  EXPECT_TRUE(read_state(*rt) == before);
  EXPECT_EQ(rt->optimizer_steps(), 2);
  // The run goes on as if the skipped step had not been tried.
  absl::StatusOr<StepOutcome> next = rt->step(request(2));
  ASSERT_TRUE(next.ok()) << next.status();
  ASSERT_TRUE(rt->settle().ok());
  EXPECT_TRUE(read_state(*rt) == trained(nvme_optimizer(dir.path(), 4), 3));
}

// A background save's snapshot of step 1, read while step 2's update runs:
// the update waits for each chunk until the snapshot has read it, so the
// snapshot holds step 1's bytes and the run still reaches step 2's.
TEST(Runtime, SnapshotHoldsItsStepWhileTheNextUpdateWaitsForIt) {
  TempDir dir;
  for (bool nvme : {false, true}) {
    SCOPED_TRACE(nvme ? "optimizer on NVMe" : "optimizer on the host");
    RuntimeSpec spec = nvme ? nvme_optimizer(dir.path(), 4) : base_spec();
    if (!nvme) spec.placement.optimizer = spec.placement.grads = Tier::kHost;
    const trainer::Gpt2Model model(tiny_model());
    std::unique_ptr<Runtime> rt = start(spec, model);
    ASSERT_TRUE(rt);
    ASSERT_TRUE(rt->saves_in_background());
    run_steps(*rt, 1);
    rt->begin_snapshot();
    absl::StatusOr<StepOutcome> second = rt->step(request(1));
    ASSERT_TRUE(second.ok()) << second.status();
    const State snapshot = read_state(*rt, /*snapshot=*/true);
    rt->end_snapshot();
    ASSERT_TRUE(rt->settle().ok());
    EXPECT_TRUE(snapshot == trained(spec, 1));
    EXPECT_TRUE(read_state(*rt) == trained(spec, 2));
  }
}

// What a checkpoint load writes is what a save reads, for every class on
// every tier; a runtime without training holds parameters only.
TEST(Runtime, CheckpointStateRoundTripsEveryClassOnEveryTier) {
  TempDir dir;
  const trainer::Gpt2Model model(tiny_model());
  for (const Placed& placed : kPlacements) {
    SCOPED_TRACE(placed.name);
    RuntimeSpec spec = base_spec();
    placed.place(spec.placement, dir.path());
    std::unique_ptr<Runtime> rt = start(spec, model);
    ASSERT_TRUE(rt);
    State written;
    memory::AlignedBuffer buffer = staging(*rt);
    for (size_t c = 0; c < rt->layouts().size(); ++c) {
      const size_t bytes = rt->layouts()[c].bytes();
      for (int cls : {kParamClass, kMClass, kVClass}) {
        std::memset(buffer.data(), 0, bytes);
        const size_t floats = rt->layouts()[c].numel_padded();
        for (size_t i = 0; i < floats; ++i) {
          const float value = static_cast<float>(cls * 1000 + c) + 0.001f * static_cast<float>(i);
          std::memcpy(buffer.data() + i * sizeof(float), &value, sizeof(float));
        }
        ASSERT_TRUE(rt->write_class(cls, c, buffer.data()).ok());
        written.emplace_back(buffer.data(), buffer.data() + bytes);
      }
    }
    EXPECT_TRUE(read_state(*rt) == written);
  }
  RuntimeSpec inference = base_spec();
  inference.training = false;
  std::unique_ptr<Runtime> rt = start(inference, model);
  ASSERT_TRUE(rt);
  EXPECT_FALSE(rt->has_optimizer());
  std::vector<float> params(rt->layouts()[1].numel_padded(), 0.5f), back(params.size());
  ASSERT_TRUE(rt->write_params(1, params.data()).ok());
  ASSERT_TRUE(rt->read_chunk(1, /*gradients=*/false, back.data()).ok());
  EXPECT_EQ(back, params);
}

}  // namespace
}  // namespace dsinf::actors
