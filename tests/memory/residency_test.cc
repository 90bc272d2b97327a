#include "memory/residency.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace dsinf::memory {
namespace {

using R = Residency;

constexpr R kAll[] = {R::kAbsent,    R::kOnNvme,   R::kReading,     R::kOnHost,
                      R::kUploading, R::kOnDevice, R::kDownloading, R::kWriting};

// The edges of the brief, written out independently of is_legal().
const std::vector<std::pair<R, R>>& legal_edges() {
  static const std::vector<std::pair<R, R>> edges = {
      {R::kAbsent, R::kOnHost},        {R::kAbsent, R::kOnDevice},    {R::kAbsent, R::kOnNvme},    {R::kOnNvme, R::kReading},
      {R::kReading, R::kOnHost},       {R::kOnHost, R::kUploading},   {R::kUploading, R::kOnDevice},
      {R::kOnDevice, R::kDownloading}, {R::kDownloading, R::kOnHost}, {R::kOnHost, R::kWriting},
      {R::kWriting, R::kOnNvme},       {R::kOnDevice, R::kAbsent},    {R::kOnHost, R::kAbsent},
      {R::kOnNvme, R::kAbsent},        {R::kReading, R::kOnNvme},     {R::kWriting, R::kOnHost},
  };
  return edges;
}

bool listed(R from, R to) {
  for (auto [a, b] : legal_edges()) {
    if (a == from && b == to) return true;
  }
  return false;
}

// A path from kAbsent to `target` over legal edges, to put an entry there.
std::vector<R> path_to(R target) {
  switch (target) {
    case R::kAbsent:
      return {};
    case R::kOnHost:
      return {R::kOnHost};
    case R::kWriting:
      return {R::kOnHost, R::kWriting};
    case R::kOnNvme:
      return {R::kOnHost, R::kWriting, R::kOnNvme};
    case R::kReading:
      return {R::kOnHost, R::kWriting, R::kOnNvme, R::kReading};
    case R::kUploading:
      return {R::kOnHost, R::kUploading};
    case R::kOnDevice:
      return {R::kOnDevice};
    case R::kDownloading:
      return {R::kOnDevice, R::kDownloading};
  }
  return {};
}

void move_to(ResidencyTable& table, size_t id, R target) {
  R at = table.state(id);
  for (R next : path_to(target)) {
    ASSERT_TRUE(table.transition(id, at, next).ok());
    at = next;
  }
  ASSERT_EQ(table.state(id), target);
}

TEST(Residency, NamesAreDistinctAndStable) {
  EXPECT_STREQ(residency_name(R::kOnNvme), "on_nvme");
  EXPECT_STREQ(residency_name(R::kUploading), "uploading");
  for (R a : kAll) {
    for (R b : kAll) {
      if (a != b) {
        EXPECT_STRNE(residency_name(a), residency_name(b));
      }
    }
  }
}

TEST(Residency, IsLegalMatchesTheEdgeList) {
  for (R from : kAll) {
    for (R to : kAll) {
      EXPECT_EQ(is_legal(from, to), listed(from, to))
          << residency_name(from) << " -> " << residency_name(to);
    }
  }
}

TEST(ResidencyTable, StartsAbsent) {
  ResidencyTable table(3);
  EXPECT_EQ(table.size(), 3u);
  for (size_t id = 0; id < 3; ++id) EXPECT_EQ(table.state(id), R::kAbsent);
}

TEST(ResidencyTable, EveryLegalEdgeSucceedsAndIsCounted) {
  for (auto [from, to] : legal_edges()) {
    ResidencyTable table(1);
    move_to(table, 0, from);
    const uint64_t before = table.count(from, to);
    absl::Status status = table.transition(0, from, to);
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(table.state(0), to);
    EXPECT_EQ(table.count(from, to), before + 1);
  }
}

TEST(ResidencyTable, EveryIllegalEdgeFailsAndChangesNothing) {
  int illegal = 0;
  for (R from : kAll) {
    for (R to : kAll) {
      if (listed(from, to)) continue;
      ++illegal;
      ResidencyTable table(std::vector<std::string>{"h.3/m"});
      move_to(table, 0, from);
      absl::Status status = table.transition(0, from, to);
      EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition)
          << residency_name(from) << " -> " << residency_name(to);
      const std::string edge = std::string(residency_name(from)) + " -> " + residency_name(to);
      EXPECT_NE(status.message().find("h.3/m"), absl::string_view::npos) << status;
      EXPECT_NE(status.message().find(edge), absl::string_view::npos) << status;
      EXPECT_EQ(table.state(0), from);
      EXPECT_EQ(table.count(from, to), 0u);
    }
  }
  EXPECT_EQ(illegal, 8 * 8 - 16);
}

TEST(ResidencyTable, RoundTripCountsEachEdgeOnce) {
  ResidencyTable table(1);
  const R trip[] = {R::kAbsent, R::kOnHost,    R::kWriting,  R::kOnNvme,      R::kReading,
                    R::kOnHost, R::kUploading, R::kOnDevice, R::kDownloading, R::kOnHost};
  for (size_t i = 0; i + 1 < std::size(trip); ++i) {
    ASSERT_TRUE(table.transition(0, trip[i], trip[i + 1]).ok()) << i;
  }
  EXPECT_EQ(table.state(0), R::kOnHost);
  uint64_t total = 0;
  for (R from : kAll) {
    for (R to : kAll) total += table.count(from, to);
  }
  EXPECT_EQ(total, std::size(trip) - 1);
  for (size_t i = 0; i + 1 < std::size(trip); ++i) {
    EXPECT_EQ(table.count(trip[i], trip[i + 1]), 1u) << i;
  }
}

TEST(ResidencyTable, FailedIoReturnsToTheSourceTier) {
  ResidencyTable table(2);
  move_to(table, 0, R::kReading);
  EXPECT_TRUE(table.transition(0, R::kReading, R::kOnNvme).ok());  // read failed
  EXPECT_EQ(table.state(0), R::kOnNvme);
  EXPECT_TRUE(table.transition(0, R::kOnNvme, R::kReading).ok());  // retry works
  move_to(table, 1, R::kWriting);
  EXPECT_TRUE(table.transition(1, R::kWriting, R::kOnHost).ok());  // write failed
  EXPECT_EQ(table.state(1), R::kOnHost);
  EXPECT_EQ(table.count(R::kReading, R::kOnNvme), 1u);
  EXPECT_EQ(table.count(R::kWriting, R::kOnHost), 1u);
}

TEST(ResidencyTable, StaleFromFailsNamingTheActualState) {
  ResidencyTable table(std::vector<std::string>{"", "h.0/params"});
  move_to(table, 1, R::kOnHost);
  // Another actor started the upload first; a second upload must not start.
  ASSERT_TRUE(table.transition(1, R::kOnHost, R::kUploading).ok());
  absl::Status stale = table.transition(1, R::kOnHost, R::kUploading);
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(stale.message().find("h.0/params"), absl::string_view::npos) << stale;
  EXPECT_NE(stale.message().find("is uploading"), absl::string_view::npos) << stale;
  EXPECT_NE(stale.message().find("on_host -> uploading"), absl::string_view::npos) << stale;
  EXPECT_EQ(table.state(1), R::kUploading);
  EXPECT_EQ(table.count(R::kOnHost, R::kUploading), 1u);
  // An unnamed entry is still identified by its id.
  absl::Status unnamed = table.transition(0, R::kOnDevice, R::kAbsent);
  EXPECT_EQ(unnamed.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(unnamed.message().find("entry 0"), absl::string_view::npos) << unnamed;
}

TEST(ResidencyTable, ConcurrentTransitionsOnDistinctIds) {
  constexpr size_t kThreads = 4;
  constexpr size_t kIdsPerThread = 16;
  constexpr int kRounds = 200;
  ResidencyTable table(kThreads * kIdsPerThread);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const R cycle[] = {R::kOnHost, R::kUploading, R::kOnDevice, R::kDownloading, R::kOnHost};
      for (size_t k = 0; k < kIdsPerThread; ++k) {
        const size_t id = t * kIdsPerThread + k;
        if (!table.transition(id, R::kAbsent, R::kOnHost).ok()) ++failures;
        for (int round = 0; round < kRounds; ++round) {
          for (size_t i = 0; i + 1 < std::size(cycle); ++i) {
            if (!table.transition(id, cycle[i], cycle[i + 1]).ok()) ++failures;
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  const uint64_t cycles = kThreads * kIdsPerThread * kRounds;
  EXPECT_EQ(table.count(R::kOnHost, R::kUploading), cycles);
  EXPECT_EQ(table.count(R::kDownloading, R::kOnHost), cycles);
  for (size_t id = 0; id < table.size(); ++id) EXPECT_EQ(table.state(id), R::kOnHost);
}

TEST(ResidencyTable, RacingOnOneIdHasExactlyOneWinnerPerEdge) {
  // Several threads try to start the same upload; exactly one may win.
  constexpr int kThreads = 4;
  constexpr int kRounds = 200;
  ResidencyTable table(1);
  ASSERT_TRUE(table.transition(0, R::kAbsent, R::kOnHost).ok());
  std::atomic<int> wins{0};
  std::atomic<int> other_errors{0};
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        absl::Status status = table.transition(0, R::kOnHost, R::kUploading);
        if (status.ok()) {
          ++wins;
        } else if (status.code() != absl::StatusCode::kFailedPrecondition) {
          ++other_errors;
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    ASSERT_EQ(table.state(0), R::kUploading);
    ASSERT_TRUE(table.transition(0, R::kUploading, R::kOnDevice).ok());
    ASSERT_TRUE(table.transition(0, R::kOnDevice, R::kDownloading).ok());
    ASSERT_TRUE(table.transition(0, R::kDownloading, R::kOnHost).ok());
  }
  EXPECT_EQ(wins.load(), kRounds);
  EXPECT_EQ(other_errors.load(), 0);
  EXPECT_EQ(table.count(R::kOnHost, R::kUploading), static_cast<uint64_t>(kRounds));
}

TEST(ResidencyTableDeathTest, IdOutOfRangeAborts) {
  ResidencyTable table(2);
  EXPECT_DEATH((void)table.transition(2, R::kAbsent, R::kOnHost), "out of range");
}

}  // namespace
}  // namespace dsinf::memory
