// The communicator, run as 1 process and under mpirun with 2 and 3 ranks
// (tests/kernels/CMakeLists.txt): every collective against a reference each
// rank computes alone (it knows every rank's data), bit for bit -- sums in
// rank order -- for sizes that do not divide by the rank count, with either
// the first or the last rank arriving late.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "kernels/comm/communicator.h"
#include "tests/kernels/comm_reference.h"

namespace dsinf::kernels::comm {
namespace {

Communicator* world = nullptr;  // set by main()

const size_t kSizes[] = {0, 1, 2, 3, 7, 1000, 1001, 65537};

bool same_bits(const float* a, const float* b, size_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(float)) == 0;
}

// `late` (a rank, or -1) posts its part 30 ms after the others.
void arrive(int late) {
  if (world->rank() == late) std::this_thread::sleep_for(std::chrono::milliseconds(30));
}

TEST(Partition, CoversTheArrayInOrderWithTheRemainderFirst) {
  for (size_t n : kSizes) {
    for (int size = 1; size <= 5; ++size) {
      size_t next = 0;
      for (int r = 0; r < size; ++r) {
        const Part p = partition(n, size, r);
        EXPECT_EQ(p.offset, next);
        EXPECT_EQ(p.count, n / size + (static_cast<size_t>(r) < n % size ? 1 : 0));
        next += p.count;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(Communicator, AllReduceIsTheRankOrderSumWhoeverArrivesLast) {
  const int size = world->size();
  for (int late : {-1, 0, size - 1}) {
    for (size_t n : kSizes) {
      std::vector<float> d = data_of(world->rank(), n);
      arrive(late);
      auto request = world->all_reduce(d.data(), n);
      ASSERT_TRUE(request.ok()) << request.status();
      ASSERT_TRUE((*request)->wait().ok());
      const std::vector<float> want = rank_order_sum(n, size);
      EXPECT_TRUE(same_bits(d.data(), want.data(), n)) << "n=" << n << " late=" << late;
    }
  }
}

TEST(Communicator, ReduceScatterLeavesEachRankItsPartOfTheSum) {
  const int size = world->size(), rank = world->rank();
  for (int late : {0, size - 1}) {
    for (size_t n : kSizes) {
      const std::vector<float> in = data_of(rank, n);
      const Part mine = partition(n, size, rank);
      std::vector<float> out(mine.count, -1.0f);
      arrive(late);
      auto request = world->reduce_scatter(in.data(), out.data(), n);
      ASSERT_TRUE(request.ok()) << request.status();
      ASSERT_TRUE((*request)->wait().ok());
      const std::vector<float> want = rank_order_sum(n, size);
      EXPECT_TRUE(same_bits(out.data(), want.data() + mine.offset, mine.count)) << "n=" << n;
    }
  }
}

TEST(Communicator, AllGatherAssemblesEveryRanksPart) {
  const int size = world->size(), rank = world->rank();
  for (size_t n : kSizes) {
    std::vector<float> d(n, -7.0f);  // only this rank's part is its own
    const Part mine = partition(n, size, rank);
    for (size_t i = 0; i < mine.count; ++i) d[mine.offset + i] = value(rank, mine.offset + i);
    auto request = world->all_gather(d.data(), n);
    ASSERT_TRUE(request.ok()) << request.status();
    ASSERT_TRUE((*request)->wait().ok());
    for (int r = 0; r < size; ++r) {
      const Part p = partition(n, size, r);
      for (size_t i = 0; i < p.count; ++i) {
        ASSERT_EQ(d[p.offset + i], value(r, p.offset + i)) << "n=" << n << " rank " << r;
      }
    }
  }
}

TEST(Communicator, BroadcastFromTheLastRankAndBarrier) {
  const int size = world->size(), root = size - 1;
  std::vector<char> bytes(1001, static_cast<char>(world->rank()));
  auto request = world->broadcast(bytes.data(), bytes.size(), root);
  ASSERT_TRUE(request.ok()) << request.status();
  ASSERT_TRUE((*request)->wait().ok());
  for (char c : bytes) ASSERT_EQ(c, static_cast<char>(root));
  auto barrier = world->barrier();
  ASSERT_TRUE(barrier.ok());
  ASSERT_TRUE((*barrier)->wait().ok());
  EXPECT_FALSE(world->broadcast(bytes.data(), 1, size).ok());  // not a rank
}

// Several requests in flight at once complete independently.
TEST(Communicator, RequestsOverlap) {
  const int size = world->size();
  std::vector<float> a = data_of(world->rank(), 1001), b = data_of(world->rank(), 77);
  auto ra = world->all_reduce(a.data(), a.size());
  auto rb = world->all_reduce(b.data(), b.size());
  ASSERT_TRUE(ra.ok() && rb.ok());
  ASSERT_TRUE((*rb)->wait().ok());
  ASSERT_TRUE((*ra)->wait().ok());
  EXPECT_TRUE(same_bits(a.data(), rank_order_sum(1001, size).data(), 1001));
  EXPECT_TRUE(same_bits(b.data(), rank_order_sum(77, size).data(), 77));
}

// CTest says how many ranks it launched (DSINF_EXPECT_RANKS): the world has them.
TEST(Communicator, HasTheRanksItWasLaunchedWith) {
  const char* expected = std::getenv("DSINF_EXPECT_RANKS");
  EXPECT_EQ(world->size(), expected != nullptr ? std::atoi(expected) : 1) << world->describe();
  EXPECT_FALSE(world->describe().empty());
  EXPECT_GE(world->rank(), 0);
  EXPECT_LT(world->rank(), world->size());
}

}  // namespace
}  // namespace dsinf::kernels::comm

// MPI lives from before the first test to after the last: the world
// communicator initialises it and finalises it when it goes.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = dsinf::kernels::comm::make_world_communicator();
  if (!world.ok()) {
    std::fprintf(stderr, "comm_test: %s\n", std::string(world.status().message()).c_str());
    return 1;
  }
  dsinf::kernels::comm::world = world->get();
  const int failed = RUN_ALL_TESTS();
  dsinf::kernels::comm::world = nullptr;
  world->reset();
  return failed;
}
