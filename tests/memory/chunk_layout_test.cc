#include "memory/chunk_layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "memory/aligned_buffer.h"

namespace dsinf::memory {
namespace {

// A GPT-2 block's parameters (C = 768), with awkward sizes mixed in.
ChunkLayout gpt2_block_layout(size_t elem_bytes) {
  ChunkLayout layout(elem_bytes);
  layout.add("h.0.ln_1.weight", {768});
  layout.add("h.0.ln_1.bias", {768});
  layout.add("h.0.attn.c_attn.weight", {2304, 768});
  layout.add("h.0.attn.c_attn.bias", {2304});
  layout.add("odd.a", {3});
  layout.add("odd.b", {7, 5});
  layout.add("odd.c", {1});
  layout.add("h.0.mlp.c_proj.weight", {768, 3072});
  return layout;
}

void expect_well_formed(const ChunkLayout& layout) {
  const size_t eb = layout.elem_bytes();
  std::vector<std::pair<size_t, size_t>> ranges;  // [begin, end) in bytes
  for (const TensorSlot& t : layout.tensors()) {
    EXPECT_EQ(t.offset_elems * eb % kTensorAlignment, 0u) << t.name;
    size_t numel = 1;
    for (int64_t d : t.shape) numel *= static_cast<size_t>(d);
    EXPECT_EQ(t.numel, numel) << t.name;
    EXPECT_LE(t.offset_elems + t.numel, layout.numel_padded()) << t.name;
    ranges.emplace_back(t.offset_elems * eb, (t.offset_elems + t.numel) * eb);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    EXPECT_LE(ranges[i - 1].second, ranges[i].first) << "tensors " << i - 1 << " and " << i;
  }
  EXPECT_EQ(layout.bytes() % kChunkAlignment, 0u);
  EXPECT_GE(layout.bytes(), layout.numel_padded() * eb);
  EXPECT_LT(layout.bytes() - layout.numel_padded() * eb, kChunkAlignment);
}

TEST(ChunkLayout, OffsetsAlignedAndDisjointFp32) { expect_well_formed(gpt2_block_layout(4)); }
TEST(ChunkLayout, OffsetsAlignedAndDisjointBf16) { expect_well_formed(gpt2_block_layout(2)); }
TEST(ChunkLayout, OffsetsAlignedAndDisjointBytes) { expect_well_formed(gpt2_block_layout(1)); }

TEST(ChunkLayout, PacksInOrderWithMinimalPadding) {
  ChunkLayout layout(4);  // 16 fp32 per 64 bytes
  EXPECT_EQ(layout.add("a", {3}), 0u);
  EXPECT_EQ(layout.add("b", {16}), 1u);
  EXPECT_EQ(layout.add("c", {2, 2}), 2u);
  const auto& t = layout.tensors();
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].offset_elems, 0u);
  EXPECT_EQ(t[1].offset_elems, 16u);
  EXPECT_EQ(t[2].offset_elems, 32u);
  EXPECT_EQ(layout.numel_padded(), 36u);
  EXPECT_EQ(layout.bytes(), 4096u);
}

TEST(ChunkLayout, BytesRoundUpToPages) {
  ChunkLayout empty(4);
  EXPECT_EQ(empty.numel_padded(), 0u);
  EXPECT_EQ(empty.bytes(), 0u);

  ChunkLayout exact(4);
  exact.add("w", {1024});  // exactly one page
  EXPECT_EQ(exact.bytes(), 4096u);
  exact.add("x", {1});  // one more element spills into a second page
  EXPECT_EQ(exact.numel_padded(), 1024u + 1u);
  EXPECT_EQ(exact.bytes(), 8192u);
}

TEST(ChunkLayout, FindByName) {
  const ChunkLayout layout = gpt2_block_layout(4);
  const TensorSlot* w = layout.find("h.0.attn.c_attn.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->name, "h.0.attn.c_attn.weight");
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2304, 768}));
  EXPECT_EQ(w->numel, 2304u * 768u);
  EXPECT_EQ(w, &layout.tensors()[2]);
  EXPECT_EQ(layout.find("h.0.attn.c_attn"), nullptr);
  EXPECT_EQ(layout.find(""), nullptr);
}

TEST(ChunkLayout, BufferOfBytesHoldsEveryTensor) {
  const ChunkLayout layout = gpt2_block_layout(4);
  absl::StatusOr<AlignedBuffer> buf = AlignedBuffer::allocate(layout.bytes());
  ASSERT_TRUE(buf.ok()) << buf.status();
  auto* base = reinterpret_cast<float*>(buf->data());
  // Write each tensor's index into its slot, then check nothing was clobbered.
  for (size_t i = 0; i < layout.tensors().size(); ++i) {
    const TensorSlot& t = layout.tensors()[i];
    std::fill(base + t.offset_elems, base + t.offset_elems + t.numel, static_cast<float>(i + 1));
  }
  for (size_t i = 0; i < layout.tensors().size(); ++i) {
    const TensorSlot& t = layout.tensors()[i];
    EXPECT_EQ(reinterpret_cast<uintptr_t>(base + t.offset_elems) % kTensorAlignment, 0u);
    for (size_t k = 0; k < t.numel; ++k) {
      ASSERT_EQ(base[t.offset_elems + k], static_cast<float>(i + 1)) << t.name << "[" << k << "]";
    }
  }
}

}  // namespace
}  // namespace dsinf::memory
