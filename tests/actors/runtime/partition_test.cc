// ZeRO's partition of the chunks over ranks (partition.h) and what it does to
// a rank's memory plan: owners are contiguous and balanced, a rank holds the
// chunks it owns, and at stage 3 the chunks of other ranks take no home on
// any tier, only the device slots they arrive in; the exchanges' host staging.
#include "actors/runtime/partition.h"

#include <gtest/gtest.h>

#include "actors/runtime/placement.h"

namespace dsinf::actors {
namespace {

// `n` chunks of `elems` fp32 elements each (one tensor).
std::vector<memory::ChunkLayout> chunks(size_t n, int64_t elems) {
  std::vector<memory::ChunkLayout> out;
  for (size_t c = 0; c < n; ++c) {
    memory::ChunkLayout l(sizeof(float));
    l.add("w" + std::to_string(c), {elems});
    out.push_back(l);
  }
  return out;
}

TEST(Partition, OwnersAreContiguousAndBalanced) {
  const std::vector<memory::ChunkLayout> all = chunks(7, 4096);
  // Chunk c goes to the rank whose even share holds its midpoint, (c + 0.5) / 7.
  EXPECT_EQ(chunk_owners(all, 2), (std::vector<int>{0, 0, 0, 1, 1, 1, 1}));
  EXPECT_EQ(chunk_owners(all, 3), (std::vector<int>{0, 0, 1, 1, 1, 2, 2}));
  std::vector<memory::ChunkLayout> frozen = all;
  frozen[0].set_trainable(false);
  EXPECT_EQ(chunk_owners(frozen, 2)[0], -1);
}

TEST(Partition, StageThreeHoldsOnlyOwnChunks) {
  const std::vector<memory::ChunkLayout> all = chunks(4, 4096);
  const auto mine = rank_layouts(all, 1, 2, 3, /*partition_params=*/true);
  EXPECT_TRUE(mine[0].remote() && mine[1].remote());
  EXPECT_FALSE(mine[2].remote() || mine[3].remote());
  EXPECT_TRUE(mine[2].trainable() && mine[3].trainable());
  const auto stage2 = rank_layouts(all, 1, 2, 2, /*partition_params=*/false);
  EXPECT_FALSE(stage2[0].remote());
  EXPECT_FALSE(stage2[0].trainable());
}

// LoRA's base: the frozen chunks are spread over the ranks by their own
// bytes, the adapters by theirs; only stage 3 leaves them remote.
TEST(Partition, FrozenChunksAreHeldByOneRankEachAtStageThree) {
  std::vector<memory::ChunkLayout> all = chunks(6, 4096);
  for (size_t c : {0, 1, 2, 3}) all[c].set_trainable(false);
  EXPECT_EQ(param_holders(all, 2), (std::vector<int>{0, 0, 1, 1, 0, 1}));
  EXPECT_EQ(chunk_owners(all, 2), (std::vector<int>{-1, -1, -1, -1, 0, 1}));
  const auto rank1 = rank_layouts(all, 1, 2, 3, true);
  for (size_t c = 0; c < 6; ++c) EXPECT_EQ(rank1[c].remote(), c == 0 || c == 1 || c == 4) << c;
  EXPECT_FALSE(rank1[4].trainable());
  EXPECT_TRUE(rank1[5].trainable());
  for (const auto& l : rank_layouts(all, 1, 2, 2, false)) EXPECT_FALSE(l.remote());
}

TEST(Partition, RemoteSlotsFollowTheLargestRemoteChunk) {
  std::vector<memory::ChunkLayout> all = chunks(4, 4096);
  all[3] = chunks(1, 3 * 4096)[0];               // the largest, owned by rank 1 of 2
  EXPECT_EQ(remote_slots(all, true).count, 0u);  // nothing remote
  const auto rank0 = rank_layouts(all, 0, 2, 3, true);
  const auto rank1 = rank_layouts(all, 1, 2, 3, true);
  EXPECT_EQ(remote_slots(rank0, false).count, kRemoteSlots);
  EXPECT_EQ(remote_slots(rank0, false).bytes, all[3].bytes());
  EXPECT_EQ(remote_slots(rank1, false).bytes, all[0].bytes());
  // Streamed, they borrow the streamer's shared slots: no remote slot...
  EXPECT_EQ(remote_slots(rank0, true).count, 0u);
  // ... but a remote chunk with a slot of its own (an adapter, held beside
  // its layer's chunk) has one, its size.
  std::vector<memory::ChunkLayout> adapters = rank0;
  adapters[3].set_own_slot(true);
  EXPECT_EQ(remote_slots(adapters, true).count, 1u);
  EXPECT_EQ(remote_slots(adapters, true).bytes, all[3].bytes());
}

// The exchanges' host staging: send and receive, the earlier visits of a
// chunk visited twice, and with overlap_comm the bucket's visits in flight
// (at least one owner's: a buffer per rank; at most every chunk's).
TEST(Partition, ExchangeStagingFollowsTheBucket) {
  std::vector<memory::ChunkLayout> all = chunks(4, 4096);
  all[1] = chunks(1, 2 * 4096)[0];  // the largest
  std::vector<int> visits = {2, 1, 1, 1};
  const size_t buffer = all[1].bytes();
  ExchangeStaging s = exchange_staging(all, visits, 1, true, false, {true, 1});
  EXPECT_EQ(s.bytes(), 0u);  // one rank: nothing to exchange
  s = exchange_staging(all, visits, 2, false, false, {true, 1});
  EXPECT_EQ(s.bytes(), 0u);  // no training: no gradients
  s = exchange_staging(all, visits, 3, true, false, {false, 1});
  EXPECT_EQ(s.device_bytes, 0u);
  EXPECT_EQ(s.buffer_bytes, buffer);
  EXPECT_EQ(s.fixed, 3u);  // send, receive, the tied chunk's first visit
  EXPECT_EQ(s.in_flight, 0u);
  s = exchange_staging(all, {1, 1, 1, 1}, 3, true, false, {true, 1});
  EXPECT_EQ(s.fixed, 2u);
  EXPECT_EQ(s.in_flight, 3u);  // the least: one owner's three parts
  const int64_t per_buffer = static_cast<int64_t>(buffer / sizeof(float));
  s = exchange_staging(all, visits, 3, true, false, {true, 5 * per_buffer + 1});
  EXPECT_EQ(s.in_flight, 5u);
  s = exchange_staging(all, visits, 3, true, false, {true, 1000 * per_buffer});
  EXPECT_EQ(s.in_flight, 12u);  // every chunk's, at its owner
  EXPECT_EQ(s.bytes(), 15 * buffer);
  // Accumulators on the device: an area a received part is added from.
  EXPECT_EQ(exchange_staging(all, visits, 3, true, true, {false, 1}).device_bytes, buffer);
  // Frozen chunks send no gradient.
  for (memory::ChunkLayout& l : all) l.set_trainable(false);
  s = exchange_staging(all, visits, 3, true, false, {true, 1000 * per_buffer});
  EXPECT_EQ(s.in_flight, 0u);
  // The plan counts it in the host pool.
  all = chunks(4, 4096);
  const absl::StatusOr<MemoryPlan> without = plan_memory({}, {}, all, 0);
  ExchangeStaging five;
  five.buffer_bytes = buffer;
  five.fixed = 2;
  five.in_flight = 3;
  five.device_bytes = buffer;
  const absl::StatusOr<MemoryPlan> with = plan_memory({}, {}, all, 0, five);
  ASSERT_TRUE(without.ok() && with.ok());
  EXPECT_EQ(with->exchange_bytes, 5 * buffer);
  EXPECT_EQ(with->host_bytes, without->host_bytes + 5 * buffer);
  EXPECT_EQ(with->exchange_device_bytes, buffer);
  EXPECT_EQ(with->device_bytes, without->device_bytes + buffer);
  const absl::StatusOr<MemoryPlan> tight =
      plan_memory({}, {0, without->host_bytes + 4 * buffer}, all, 0, five);
  EXPECT_EQ(tight.status().code(), absl::StatusCode::kInvalidArgument);
}

// Streamed from NVMe at stage 3: the remote chunks cost no NVMe or host
// cache, and borrow the streamer's shared slots, which the plan sizes for the
// largest of them (inside the budget).
TEST(Partition, AStageThreeRankPlansItsShareAndLendsItsSlots) {
  std::vector<memory::ChunkLayout> all = chunks(6, 64 * 1024);
  Placement p;
  p.params = p.optimizer = Tier::kNvme;
  p.grads = Tier::kHost;
  p.param_buffer_count = 1;
  MemoryBudgets budgets;
  const absl::StatusOr<MemoryPlan> whole = plan_memory(p, budgets, all, 4096);
  ASSERT_TRUE(whole.ok()) << whole.status();
  auto mine = rank_layouts(all, 0, 3, 3, true);
  absl::StatusOr<MemoryPlan> part = plan_memory(p, budgets, mine, 4096);
  ASSERT_TRUE(part.ok()) << part.status();
  const size_t chunk = all[0].bytes();
  EXPECT_EQ(whole->nvme_bytes, 6 * 3 * chunk);  // parameters (= master), m, v
  EXPECT_EQ(part->nvme_bytes, 2 * 3 * chunk);
  EXPECT_EQ(part->cached_chunks, 2u);  // the two it holds, not the first two
  EXPECT_EQ(part->remote_bytes, 0u);
  EXPECT_EQ(part->slot_bytes, chunk);
  EXPECT_EQ(part->device_bytes, whole->device_bytes);
  // Another rank's chunk larger than this rank's: the shared slot grows to it.
  all[5] = chunks(1, 3 * 64 * 1024)[0];
  mine = rank_layouts(all, 0, 3, 3, true);
  ASSERT_TRUE(mine[5].remote());
  part = plan_memory(p, budgets, mine, 4096);
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->slot_bytes, all[5].bytes());
  EXPECT_EQ(part->remote_bytes, 0u);
  // A budget without room for that slot is refused by name.
  budgets.device_bytes = whole->device_min_bytes;
  const absl::StatusOr<MemoryPlan> tight = plan_memory(p, budgets, mine, 4096);
  ASSERT_FALSE(tight.ok());
  EXPECT_NE(tight.status().message().find("parameter slot"), std::string::npos) << tight.status();
}

}  // namespace
}  // namespace dsinf::actors
