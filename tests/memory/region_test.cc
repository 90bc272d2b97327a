#include "memory/region.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <random>
#include <vector>

namespace dsinf::memory {
namespace {

constexpr size_t kUnit = 4096;

size_t must_allocate(Region& region, size_t bytes) {
  absl::StatusOr<size_t> offset = region.allocate(bytes);
  EXPECT_TRUE(offset.ok()) << offset.status();
  return offset.ok() ? *offset : SIZE_MAX;
}

TEST(Region, FreshRegionIsOneFreeRange) {
  Region region(8 * kUnit, kUnit);
  EXPECT_EQ(region.size(), 8 * kUnit);
  EXPECT_EQ(region.alignment(), kUnit);
  EXPECT_EQ(region.largest_free(), 8 * kUnit);
  EXPECT_EQ(region.free_ranges(), 1u);
  EXPECT_EQ(region.live_blocks(), 0u);
  const ArenaStats stats = region.stats();
  EXPECT_EQ(stats.in_use_bytes, 0u);
  EXPECT_EQ(stats.peak_bytes, 0u);
  EXPECT_EQ(stats.budget_bytes, 8 * kUnit);
}

TEST(Region, RoundsUpToTheAlignmentAndZeroTakesOneUnit) {
  Region region(8 * kUnit, kUnit);
  EXPECT_EQ(region.rounded(0), kUnit);
  EXPECT_EQ(region.rounded(1), kUnit);
  EXPECT_EQ(region.rounded(kUnit), kUnit);
  EXPECT_EQ(region.rounded(kUnit + 1), 2 * kUnit);
}

TEST(Region, FirstFitHandsOutConsecutiveOffsets) {
  Region region(16 * kUnit, kUnit);
  EXPECT_EQ(must_allocate(region, 0), 0u);                 // 1 unit
  EXPECT_EQ(must_allocate(region, 100), 1 * kUnit);        // 1 unit
  EXPECT_EQ(must_allocate(region, kUnit + 1), 2 * kUnit);  // 2 units
  EXPECT_EQ(must_allocate(region, 3 * kUnit), 4 * kUnit);  // 3 units
  EXPECT_EQ(region.stats().in_use_bytes, 7 * kUnit);
  EXPECT_EQ(region.stats().peak_bytes, 7 * kUnit);
  EXPECT_EQ(region.largest_free(), 9 * kUnit);
  EXPECT_EQ(region.live_blocks(), 4u);
  EXPECT_EQ(region.free_ranges(), 1u);
}

TEST(Region, ReleaseReturnsTheBlockSizeAndRejectsUnknownOffsets) {
  Region region(8 * kUnit, kUnit);
  const size_t a = must_allocate(region, kUnit + 1);
  EXPECT_EQ(region.release(a + kUnit), std::nullopt);  // inside a block, not its start
  EXPECT_EQ(region.release(5 * kUnit), std::nullopt);  // free space
  EXPECT_EQ(region.stats().in_use_bytes, 2 * kUnit);
  EXPECT_EQ(region.release(a), std::optional<size_t>(2 * kUnit));
  EXPECT_EQ(region.release(a), std::nullopt);  // double release
  EXPECT_EQ(region.stats().in_use_bytes, 0u);
  EXPECT_EQ(region.stats().peak_bytes, 2 * kUnit);
}

TEST(Region, FirstFitReusesTheLowestHole) {
  Region region(16 * kUnit, kUnit);
  const size_t a = must_allocate(region, 2 * kUnit);  // 0
  const size_t b = must_allocate(region, kUnit);      // 2
  const size_t c = must_allocate(region, kUnit);      // 3
  const size_t d = must_allocate(region, kUnit);      // 4
  ASSERT_EQ(a, 0u);
  ASSERT_EQ(d, 4 * kUnit);
  ASSERT_TRUE(region.release(a).has_value());   // hole of 2 at 0
  ASSERT_TRUE(region.release(c).has_value());   // hole of 1 at 3
  EXPECT_EQ(region.free_ranges(), 3u);          // [0,2) [3,4) [5,16)
  EXPECT_EQ(must_allocate(region, kUnit), 0u);  // first fit: the lowest hole, not the exact one
  EXPECT_EQ(must_allocate(region, kUnit), 1 * kUnit);
  EXPECT_EQ(must_allocate(region, kUnit), 3 * kUnit);
  EXPECT_EQ(must_allocate(region, kUnit), 5 * kUnit);
  EXPECT_EQ(region.stats().in_use_bytes, 6 * kUnit);
  EXPECT_EQ(region.stats().peak_bytes, 6 * kUnit);
  EXPECT_EQ(b, 2 * kUnit);
}

TEST(Region, BestFitTakesTheSmallestHoleThatFits) {
  Region region(16 * kUnit, kUnit, Region::Fit::kBest);
  const size_t a = must_allocate(region, 3 * kUnit);  // [0,3)
  must_allocate(region, kUnit);                       // [3,4)
  const size_t c = must_allocate(region, kUnit);      // [4,5)
  must_allocate(region, kUnit);                       // [5,6)
  const size_t e = must_allocate(region, 2 * kUnit);  // [6,8)
  must_allocate(region, kUnit);                       // [8,9); free tail [9,16)
  ASSERT_TRUE(region.release(a).has_value());
  ASSERT_TRUE(region.release(c).has_value());
  ASSERT_TRUE(region.release(e).has_value());
  // Holes: 3 units at 0, 1 at 4, 2 at 6, 7 at 9.
  EXPECT_EQ(must_allocate(region, kUnit), 4 * kUnit);      // the exact 1-unit hole
  EXPECT_EQ(must_allocate(region, 2 * kUnit), 6 * kUnit);  // the exact 2-unit hole
  EXPECT_EQ(must_allocate(region, kUnit), 0u);             // smallest left: 3 at 0
  EXPECT_EQ(must_allocate(region, 4 * kUnit), 9 * kUnit);  // only the tail fits
  EXPECT_EQ(region.largest_free(), 3 * kUnit);             // [13,16); [1,3) is 2
  EXPECT_EQ(region.free_ranges(), 2u);
}

TEST(Region, BestFitBreaksTiesByLowestOffset) {
  Region region(8 * kUnit, kUnit, Region::Fit::kBest);
  std::vector<size_t> blocks;
  for (int i = 0; i < 8; ++i) blocks.push_back(must_allocate(region, kUnit));
  ASSERT_TRUE(region.release(blocks[5]).has_value());
  ASSERT_TRUE(region.release(blocks[2]).has_value());
  EXPECT_EQ(must_allocate(region, kUnit), 2 * kUnit);
  EXPECT_EQ(must_allocate(region, kUnit), 5 * kUnit);
}

TEST(Region, ReleasesCoalesceWithBothNeighbours) {
  Region region(6 * kUnit, kUnit);
  const size_t a = must_allocate(region, kUnit);         // [0,1)
  const size_t b = must_allocate(region, 2 * kUnit);     // [1,3)
  const size_t c = must_allocate(region, kUnit);         // [3,4)
  const size_t tail = must_allocate(region, 2 * kUnit);  // [4,6)
  EXPECT_EQ(region.free_ranges(), 0u);
  EXPECT_EQ(region.largest_free(), 0u);
  ASSERT_EQ(region.release(a), std::optional<size_t>(kUnit));
  ASSERT_EQ(region.release(c), std::optional<size_t>(kUnit));
  EXPECT_EQ(region.free_ranges(), 2u);
  EXPECT_EQ(region.largest_free(), kUnit);
  ASSERT_EQ(region.release(b), std::optional<size_t>(2 * kUnit));  // merges with a and c
  EXPECT_EQ(region.free_ranges(), 1u);
  EXPECT_EQ(region.largest_free(), 4 * kUnit);
  EXPECT_EQ(must_allocate(region, 4 * kUnit), 0u);
  ASSERT_TRUE(region.release(0).has_value());
  ASSERT_TRUE(region.release(tail).has_value());  // merges with the free range before it
  EXPECT_EQ(region.free_ranges(), 1u);
  EXPECT_EQ(region.largest_free(), 6 * kUnit);
  EXPECT_EQ(region.stats().in_use_bytes, 0u);
  EXPECT_EQ(region.stats().peak_bytes, 6 * kUnit);
}

TEST(Region, ExhaustionIsResourceExhaustedAndChangesNothing) {
  Region region(8 * kUnit, kUnit);
  std::vector<size_t> units;
  for (int i = 0; i < 8; ++i) units.push_back(must_allocate(region, kUnit));
  ASSERT_TRUE(region.release(units[2]).has_value());
  ASSERT_TRUE(region.release(units[4]).has_value());
  const ArenaStats before = region.stats();
  EXPECT_EQ(before.in_use_bytes, 6 * kUnit);

  absl::StatusOr<size_t> too_big = region.allocate(kUnit + 1);  // 2 units, only 1-unit holes
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(too_big.status().message(),
            "region exhausted: 4097 bytes requested (8192 after rounding to 4096) with 24576 of "
            "32768 bytes in use; largest free block 4096 bytes");
  EXPECT_EQ(region.stats().in_use_bytes, before.in_use_bytes);
  EXPECT_EQ(region.stats().peak_bytes, before.peak_bytes);
  EXPECT_EQ(region.free_ranges(), 2u);

  // Larger than the region, and absurdly large: the same code, no overflow.
  EXPECT_EQ(region.allocate(9 * kUnit).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(region.allocate(SIZE_MAX).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(region.allocate(SIZE_MAX - kUnit).status().code(),
            absl::StatusCode::kResourceExhausted);

  EXPECT_EQ(must_allocate(region, kUnit), 2 * kUnit);
  EXPECT_EQ(must_allocate(region, 1), 4 * kUnit);
  EXPECT_EQ(region.allocate(1).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(region.largest_free(), 0u);
  EXPECT_EQ(region.stats().in_use_bytes, 8 * kUnit);
  EXPECT_EQ(region.stats().peak_bytes, 8 * kUnit);
}

TEST(Region, EmptyRegionHasNothingToGive) {
  Region region(0, kUnit);
  EXPECT_EQ(region.largest_free(), 0u);
  EXPECT_EQ(region.allocate(0).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(region.stats().budget_bytes, 0u);
}

TEST(Region, OtherAlignments) {
  Region region(1024, 256, Region::Fit::kBest);
  EXPECT_EQ(must_allocate(region, 1), 0u);
  EXPECT_EQ(must_allocate(region, 257), 256u);
  EXPECT_EQ(must_allocate(region, 256), 768u);
  EXPECT_EQ(region.stats().in_use_bytes, 1024u);
  EXPECT_EQ(region.allocate(1).status().code(), absl::StatusCode::kResourceExhausted);
}

// Random allocations and releases against a brute-force model of which units are taken.
TEST(Region, RandomOperationsMatchAUnitMap) {
  for (Region::Fit fit : {Region::Fit::kFirst, Region::Fit::kBest}) {
    constexpr size_t kUnits = 64;
    Region region(kUnits * kUnit, kUnit, fit);
    std::vector<bool> taken(kUnits, false);
    std::vector<std::pair<size_t, size_t>> live;  // offset, units
    std::mt19937 rng(42);
    size_t peak = 0;
    for (int i = 0; i < 20000; ++i) {
      if (!live.empty() && (live.size() >= 16 || rng() % 2 == 0)) {
        const size_t k = rng() % live.size();
        const auto [offset, units] = live[k];
        ASSERT_EQ(region.release(offset), std::optional<size_t>(units * kUnit));
        for (size_t u = 0; u < units; ++u) taken[offset / kUnit + u] = false;
        live[k] = live.back();
        live.pop_back();
      } else {
        const size_t units = 1 + rng() % 8;
        // The model: the largest run of free units decides whether it fits.
        size_t run = 0, best_run = 0;
        for (size_t u = 0; u < kUnits; ++u) {
          run = taken[u] ? 0 : run + 1;
          best_run = std::max(best_run, run);
        }
        ASSERT_EQ(region.largest_free(), best_run * kUnit);
        absl::StatusOr<size_t> offset = region.allocate(units * kUnit - rng() % kUnit);
        ASSERT_EQ(offset.ok(), units <= best_run);
        if (!offset.ok()) {
          ASSERT_EQ(offset.status().code(), absl::StatusCode::kResourceExhausted);
          continue;
        }
        ASSERT_EQ(*offset % kUnit, 0u);
        ASSERT_LE(*offset + units * kUnit, kUnits * kUnit);
        for (size_t u = 0; u < units; ++u) {
          ASSERT_FALSE(taken[*offset / kUnit + u]) << "overlap at unit " << *offset / kUnit + u;
          taken[*offset / kUnit + u] = true;
        }
        live.emplace_back(*offset, units);
      }
      size_t in_use = 0;
      for (const auto& [offset, units] : live) in_use += units * kUnit;
      peak = std::max(peak, in_use);
      ASSERT_EQ(region.stats().in_use_bytes, in_use);
      ASSERT_EQ(region.stats().peak_bytes, peak);
      ASSERT_EQ(region.live_blocks(), live.size());
    }
    for (const auto& [offset, units] : live) ASSERT_TRUE(region.release(offset).has_value());
    EXPECT_EQ(region.free_ranges(), 1u);
    EXPECT_EQ(region.largest_free(), kUnits * kUnit);
  }
}

}  // namespace
}  // namespace dsinf::memory
