#include "memory/arena.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace dsinf::memory {
namespace {

bool is_page_aligned(const std::byte* p) {
  return reinterpret_cast<uintptr_t>(p) % kChunkAlignment == 0;
}

TEST(Arena, AllocationsArePageAlignedAndZeroFilled) {
  Arena arena("host", 0);
  for (size_t bytes :
       {size_t{1}, size_t{100}, size_t{4095}, size_t{4096}, size_t{4097}, size_t{3 * 4096 + 5}}) {
    absl::StatusOr<std::byte*> p = arena.allocate(bytes);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_TRUE(is_page_aligned(*p));
    // The whole rounded-up page range is zeroed, not just the request.
    const size_t rounded = align_up(bytes, kChunkAlignment);
    for (size_t i = 0; i < rounded; ++i) ASSERT_EQ((*p)[i], std::byte{0}) << bytes << " @" << i;
    // Dirty it so a recycled block would show up non-zero next time.
    for (size_t i = 0; i < rounded; ++i) (*p)[i] = std::byte{0xAB};
    arena.release(*p);
  }
  EXPECT_EQ(arena.stats().in_use_bytes, 0u);
}

TEST(Arena, SizesAreCountedRoundedToThePage) {
  Arena arena("host", 0);
  absl::StatusOr<std::byte*> a = arena.allocate(1);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(arena.stats().in_use_bytes, 4096u);
  absl::StatusOr<std::byte*> b = arena.allocate(4097);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(arena.stats().in_use_bytes, 4096u + 8192u);
  absl::StatusOr<std::byte*> c = arena.allocate(0);  // still a distinct page
  ASSERT_TRUE(c.ok());
  EXPECT_NE(*c, *a);
  EXPECT_EQ(arena.stats().in_use_bytes, 4096u + 8192u + 4096u);
  arena.release(*a);
  arena.release(*b);
  arena.release(*c);
  EXPECT_EQ(arena.stats().in_use_bytes, 0u);
}

TEST(Arena, BudgetExceededIsResourceExhaustedAndChangesNothing) {
  Arena arena("device:cpu0", 3 * 4096);
  absl::StatusOr<std::byte*> a = arena.allocate(2 * 4096);
  ASSERT_TRUE(a.ok());
  const ArenaStats before = arena.stats();
  EXPECT_EQ(before.budget_bytes, 3u * 4096u);

  absl::StatusOr<std::byte*> too_big = arena.allocate(4096 + 1);  // rounds to 2 pages
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(too_big.status().message().find("device:cpu0"), absl::string_view::npos)
      << too_big.status();
  const ArenaStats after = arena.stats();
  EXPECT_EQ(after.in_use_bytes, before.in_use_bytes);
  EXPECT_EQ(after.peak_bytes, before.peak_bytes);

  // Exactly filling the budget is allowed.
  absl::StatusOr<std::byte*> fits = arena.allocate(4096);
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ(arena.stats().in_use_bytes, 3u * 4096u);
  absl::StatusOr<std::byte*> one_more = arena.allocate(1);
  EXPECT_EQ(one_more.status().code(), absl::StatusCode::kResourceExhausted);

  // Releasing makes room again.
  arena.release(*a);
  absl::StatusOr<std::byte*> again = arena.allocate(2 * 4096);
  EXPECT_TRUE(again.ok()) << again.status();
  arena.release(*fits);
  arena.release(*again);
}

TEST(Arena, PeakTracksTheHighWaterMark) {
  Arena arena("host", 0);
  absl::StatusOr<std::byte*> a = arena.allocate(4096);
  absl::StatusOr<std::byte*> b = arena.allocate(2 * 4096);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(arena.stats().peak_bytes, 3u * 4096u);
  arena.release(*a);
  EXPECT_EQ(arena.stats().in_use_bytes, 2u * 4096u);
  EXPECT_EQ(arena.stats().peak_bytes, 3u * 4096u);
  absl::StatusOr<std::byte*> c = arena.allocate(4096);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(arena.stats().peak_bytes, 3u * 4096u);  // back to the old peak, not past it
  absl::StatusOr<std::byte*> d = arena.allocate(4096);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(arena.stats().peak_bytes, 4u * 4096u);
  arena.release(*b);
  arena.release(*c);
  arena.release(*d);
  EXPECT_EQ(arena.stats().in_use_bytes, 0u);
  EXPECT_EQ(arena.stats().peak_bytes, 4u * 4096u);
}

TEST(Arena, ZeroBudgetMeansUnlimited) {
  Arena arena("host", 0);
  std::vector<std::byte*> live;
  for (int i = 0; i < 64; ++i) {
    absl::StatusOr<std::byte*> p = arena.allocate(1 << 20);
    ASSERT_TRUE(p.ok()) << p.status();
    live.push_back(*p);
  }
  EXPECT_EQ(arena.stats().in_use_bytes, 64u << 20);
  EXPECT_EQ(arena.stats().budget_bytes, 0u);
  for (std::byte* p : live) arena.release(p);
}

TEST(Arena, ReleaseOfNullIsANoOp) {
  Arena arena("host", 4096);
  arena.release(nullptr);
  EXPECT_EQ(arena.stats().in_use_bytes, 0u);
  EXPECT_EQ(arena.tier_name(), "host");
}

TEST(ArenaDeathTest, ReleaseOfAForeignPointerAborts) {
  Arena arena("host", 0);
  std::byte not_ours[16];
  EXPECT_DEATH(arena.release(not_ours), "did not allocate");
}

}  // namespace
}  // namespace dsinf::memory
