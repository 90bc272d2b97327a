#include "memory/host_pool.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace dsinf::memory {
namespace {

constexpr size_t kPage = kChunkAlignment;

bool is_page_aligned(const std::byte* p) {
  return reinterpret_cast<uintptr_t>(p) % kChunkAlignment == 0;
}

std::unique_ptr<HostPool> make_pool(size_t budget_bytes, bool pin = false) {
  absl::StatusOr<std::unique_ptr<HostPool>> pool = HostPool::create("host", budget_bytes, pin);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? *std::move(pool) : nullptr;
}

bool contains(const absl::Status& status, const std::string& text) {
  return status.message().find(text) != absl::string_view::npos;
}

TEST(HostPool, ZeroBudgetIsInvalidArgument) {
  absl::StatusOr<std::unique_ptr<HostPool>> pool = HostPool::create("host", 0, false);
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HostPool, BudgetIsRoundedUpToThePage) {
  std::unique_ptr<HostPool> pool = make_pool(3 * kPage + 1);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->size(), 4 * kPage);
  EXPECT_EQ(pool->stats().budget_bytes, 4 * kPage);
  EXPECT_EQ(pool->largest_free_bytes(), 4 * kPage);
  EXPECT_TRUE(is_page_aligned(static_cast<std::byte*>(pool->base())));
  EXPECT_FALSE(pool->pinned());
  EXPECT_EQ(pool->pin_failure(), "");
}

TEST(HostPool, BlocksArePageAlignedInsideTheRegionAndCountedRounded) {
  std::unique_ptr<HostPool> pool = make_pool(64 * kPage);
  ASSERT_NE(pool, nullptr);
  const auto* base = static_cast<std::byte*>(pool->base());
  std::vector<std::byte*> live;
  size_t expected_bytes = 0;
  for (size_t bytes :
       {size_t{0}, size_t{1}, size_t{100}, kPage - 1, kPage, kPage + 1, 3 * kPage + 5}) {
    absl::StatusOr<std::byte*> p = pool->allocate(bytes);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_TRUE(is_page_aligned(*p)) << bytes;
    EXPECT_GE(*p, base);
    const size_t rounded = align_up(bytes == 0 ? 1 : bytes, kPage);
    EXPECT_LE(*p + rounded, base + pool->size());
    for (size_t i = 0; i < rounded; ++i) (*p)[i] = std::byte{0xAB};  // writable, whole page
    expected_bytes += rounded;
    EXPECT_EQ(pool->stats().in_use_bytes, expected_bytes);
    live.push_back(*p);
  }
  EXPECT_EQ(pool->stats().peak_bytes, expected_bytes);
  for (std::byte* p : live) pool->release(p);
  EXPECT_EQ(pool->stats().in_use_bytes, 0u);
  EXPECT_EQ(pool->stats().peak_bytes, expected_bytes);
  EXPECT_EQ(pool->largest_free_bytes(), pool->size());
}

TEST(HostPool, PeakTracksTheHighWaterMark) {
  std::unique_ptr<HostPool> pool = make_pool(16 * kPage);
  ASSERT_NE(pool, nullptr);
  absl::StatusOr<std::byte*> a = pool->allocate(kPage);
  absl::StatusOr<std::byte*> b = pool->allocate(2 * kPage);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(pool->stats().peak_bytes, 3 * kPage);
  pool->release(*a);
  EXPECT_EQ(pool->stats().in_use_bytes, 2 * kPage);
  absl::StatusOr<std::byte*> c = pool->allocate(kPage);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, *a);  // first fit reuses the hole
  EXPECT_EQ(pool->stats().peak_bytes, 3 * kPage);
  absl::StatusOr<std::byte*> d = pool->allocate(kPage);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(pool->stats().peak_bytes, 4 * kPage);
  pool->release(*b);
  pool->release(*c);
  pool->release(*d);
  EXPECT_EQ(pool->stats().in_use_bytes, 0u);
  EXPECT_EQ(pool->stats().peak_bytes, 4 * kPage);
}

TEST(HostPool, ExhaustionIsResourceExhaustedNamingTheNumbers) {
  absl::StatusOr<std::unique_ptr<HostPool>> created =
      HostPool::create("host:pinned", 8 * kPage, false);
  ASSERT_TRUE(created.ok());
  HostPool& pool = **created;
  // Live blocks at pages 0-1, 3 and 5-7 leave holes of 1 page (2) and 1 page (4).
  std::vector<std::byte*> pages;
  for (int i = 0; i < 8; ++i) pages.push_back(*pool.allocate(kPage));
  pool.release(pages[2]);
  pool.release(pages[4]);
  EXPECT_EQ(pool.largest_free_bytes(), kPage);
  const ArenaStats before = pool.stats();

  absl::StatusOr<std::byte*> too_big = pool.allocate(kPage + 1);  // 2 pages, only 1-page holes
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(contains(too_big.status(), "host:pinned")) << too_big.status();
  EXPECT_TRUE(contains(too_big.status(), "4097 bytes requested")) << too_big.status();
  EXPECT_TRUE(contains(too_big.status(), absl::StrCat(6 * kPage, " of ", 8 * kPage)))
      << too_big.status();
  EXPECT_TRUE(contains(too_big.status(), absl::StrCat("largest free block ", kPage)))
      << too_big.status();
  EXPECT_EQ(pool.stats().in_use_bytes, before.in_use_bytes);
  EXPECT_EQ(pool.stats().peak_bytes, before.peak_bytes);

  // Larger than the whole budget, and absurdly large: the same code, no overflow.
  EXPECT_EQ(pool.allocate(9 * kPage).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pool.allocate(SIZE_MAX).status().code(), absl::StatusCode::kResourceExhausted);

  // A single page still fits in a hole.
  absl::StatusOr<std::byte*> one = pool.allocate(kPage);
  ASSERT_TRUE(one.ok()) << one.status();
  for (std::byte* p : {pages[0], pages[1], pages[3], pages[5], pages[6], pages[7], *one}) {
    pool.release(p);
  }
  EXPECT_EQ(pool.stats().in_use_bytes, 0u);
}

TEST(HostPool, AdjacentReleasesCoalesce) {
  std::unique_ptr<HostPool> pool = make_pool(6 * kPage);
  ASSERT_NE(pool, nullptr);
  std::byte* a = *pool->allocate(kPage);
  std::byte* b = *pool->allocate(2 * kPage);
  std::byte* c = *pool->allocate(kPage);
  std::byte* tail = *pool->allocate(2 * kPage);  // keeps a, b, c from merging with the end
  ASSERT_EQ(b, a + kPage);
  ASSERT_EQ(c, b + 2 * kPage);
  // Release the middle last, so it has to merge with both neighbours.
  pool->release(a);
  pool->release(c);
  EXPECT_EQ(pool->largest_free_bytes(), kPage);
  pool->release(b);
  EXPECT_EQ(pool->largest_free_bytes(), 4 * kPage);
  absl::StatusOr<std::byte*> all = pool->allocate(4 * kPage);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, a);
  pool->release(*all);
  pool->release(tail);
  EXPECT_EQ(pool->largest_free_bytes(), 6 * kPage);
  absl::StatusOr<std::byte*> full = pool->allocate(6 * kPage);
  EXPECT_TRUE(full.ok()) << full.status();
  pool->release(*full);
}

TEST(HostPool, AllocateZeroedClearsARecycledBlock) {
  std::unique_ptr<HostPool> pool = make_pool(2 * kPage);
  ASSERT_NE(pool, nullptr);
  std::byte* dirty = *pool->allocate(2 * kPage);
  for (size_t i = 0; i < 2 * kPage; ++i) dirty[i] = std::byte{0xCD};
  pool->release(dirty);
  absl::StatusOr<std::byte*> clean = pool->allocate_zeroed(kPage + 1);
  ASSERT_TRUE(clean.ok()) << clean.status();
  for (size_t i = 0; i < 2 * kPage; ++i) ASSERT_EQ((*clean)[i], std::byte{0}) << i;
  pool->release(*clean);
  EXPECT_EQ(pool->allocate_zeroed(3 * kPage).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(HostPool, ConcurrentRandomAllocationsBalanceToZero) {
  constexpr size_t kBudgetPages = 256;
  std::unique_ptr<HostPool> pool = make_pool(kBudgetPages * kPage);
  ASSERT_NE(pool, nullptr);
  constexpr int kThreads = 4;
  constexpr int kIterations = 20000;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      std::uniform_int_distribution<size_t> pages_dist(1, 12);
      std::vector<std::pair<std::byte*, size_t>> live;
      for (int i = 0; i < kIterations; ++i) {
        if (!live.empty() && (live.size() >= 8 || rng() % 2 == 0)) {
          const size_t k = rng() % live.size();
          // Stamp check: nobody else wrote into this thread's block.
          auto [p, bytes] = live[k];
          if (p[0] != std::byte(t) || p[bytes - 1] != std::byte(t)) ++failures[t];
          pool->release(p);
          live[k] = live.back();
          live.pop_back();
          continue;
        }
        const size_t bytes = pages_dist(rng) * kPage - rng() % kPage;
        absl::StatusOr<std::byte*> p = pool->allocate(bytes);
        if (!p.ok()) {
          // Exhaustion is allowed under contention, anything else is not.
          if (p.status().code() != absl::StatusCode::kResourceExhausted) ++failures[t];
          continue;
        }
        if (!is_page_aligned(*p)) ++failures[t];
        (*p)[0] = std::byte(t);
        (*p)[bytes - 1] = std::byte(t);
        live.emplace_back(*p, bytes);
      }
      for (auto [p, bytes] : live) pool->release(p);
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
  EXPECT_EQ(pool->stats().in_use_bytes, 0u);
  EXPECT_LE(pool->stats().peak_bytes, kBudgetPages * kPage);
  EXPECT_EQ(pool->largest_free_bytes(), kBudgetPages * kPage);
  absl::StatusOr<std::byte*> full = pool->allocate(kBudgetPages * kPage);
  ASSERT_TRUE(full.ok()) << full.status();
  pool->release(*full);
}

TEST(HostPool, PinnedOrNotThePoolWorks) {
  // Whether mlock is allowed depends on the machine; both outcomes are fine.
  std::unique_ptr<HostPool> pool = make_pool(4 * kPage, /*pin=*/true);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->pinned(), pool->pin_failure().empty()) << pool->pin_failure();
  absl::StatusOr<std::byte*> p = pool->allocate(4 * kPage);
  ASSERT_TRUE(p.ok()) << p.status();
  pool->release(*p);
}

// Drops CAP_IPC_LOCK from this process, which lets root mlock past
// RLIMIT_MEMLOCK. Dropping is always allowed; false if the call is refused.
bool drop_ipc_lock_capability() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
  return syscall(SYS_capset, &header, data) == 0;
}

// Runs in a forked child: a zero RLIMIT_MEMLOCK (lowering is unprivileged)
// and no CAP_IPC_LOCK make mlock fail. Creation must still succeed, unpinned,
// with a reason, and the pool must work. Exit codes say what went wrong.
[[noreturn]] void create_pinned_pool_with_mlock_refused() {
  rlimit limit{};
  getrlimit(RLIMIT_MEMLOCK, &limit);
  limit.rlim_cur = 0;
  bool mlock_must_fail = setrlimit(RLIMIT_MEMLOCK, &limit) == 0 && drop_ipc_lock_capability();
  // The sanitizers' runtimes (ASan, TSan) replace mlock with a no-op that succeeds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  mlock_must_fail = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)  // clang's spelling
  mlock_must_fail = false;
#endif
#endif
  absl::StatusOr<std::unique_ptr<HostPool>> pool =
      HostPool::create("host", 64 * kPage, /*pin=*/true);
  if (!pool.ok()) std::exit(1);
  if ((*pool)->pinned() != (*pool)->pin_failure().empty()) std::exit(2);
  if (mlock_must_fail && (*pool)->pinned()) std::exit(3);
  std::fprintf(stderr, "pinned=%d %s\n", (*pool)->pinned(), (*pool)->pin_failure().c_str());
  absl::StatusOr<std::byte*> p = (*pool)->allocate(64 * kPage);
  if (!p.ok()) std::exit(4);
  (*pool)->release(*p);
  std::exit(0);
}

TEST(HostPoolDeathTest, RefusedMlockDoesNotFailCreation) {
  EXPECT_EXIT(create_pinned_pool_with_mlock_refused(), ::testing::ExitedWithCode(0),
              "pinned=(1 |0 host: mlock of 262144 bytes refused .*RLIMIT_MEMLOCK 0 bytes)");
}

TEST(HostPoolDeathTest, ReleaseOfAForeignPointerAborts) {
  std::unique_ptr<HostPool> pool = make_pool(4 * kPage);
  ASSERT_NE(pool, nullptr);
  std::byte not_ours[16];
  EXPECT_DEATH(pool->release(not_ours), "outside this host pool");
  std::byte* p = *pool->allocate(2 * kPage);
  EXPECT_DEATH(pool->release(p + kPage), "did not hand out");  // inside, not a block start
}

TEST(HostPoolDeathTest, DoubleReleaseAborts) {
  std::unique_ptr<HostPool> pool = make_pool(4 * kPage);
  ASSERT_NE(pool, nullptr);
  std::byte* p = *pool->allocate(kPage);
  pool->release(p);
  EXPECT_DEATH(pool->release(p), "double release");
}

TEST(HostPool, ReleaseOfNullIsANoOp) {
  std::unique_ptr<HostPool> pool = make_pool(kPage);
  ASSERT_NE(pool, nullptr);
  pool->release(nullptr);
  EXPECT_EQ(pool->stats().in_use_bytes, 0u);
  EXPECT_EQ(pool->name(), "host");
}

}  // namespace
}  // namespace dsinf::memory
