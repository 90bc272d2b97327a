// The NCCL communicator over device buffers, as one process on GPU 0 and
// under mpiexec with one GPU per rank (tests/kernels/CMakeLists.txt). Each
// collective against a reference every rank computes alone: bit for bit with
// one or two ranks (NCCL's order of a two-term sum is the rank order's), within
// an N-term sum's rounding with more. Skips without a GPU for every rank.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/backend.h"
#include "kernels/comm/communicator.h"
#include "kernels/comm/nccl_communicator.h"
#include "tests/kernels/comm_reference.h"

namespace dsinf::kernels::comm {
namespace {

std::unique_ptr<Communicator> host_world;  // set by main()

class NcclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const int rank = host_world->rank(), size = host_world->size();
    for (int r = 0; r < size; ++r) {
      if (!cuda_device_info(r).ok()) GTEST_SKIP() << size << " ranks need " << size << " GPUs";
    }
    BackendOptions options;
    options.device_index = rank;
    absl::StatusOr<std::unique_ptr<Backend>> backend = make_cuda_backend(options);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = *std::move(backend);
    absl::StatusOr<std::unique_ptr<Communicator>> nccl = make_nccl_communicator(*host_world, rank);
    ASSERT_TRUE(nccl.ok()) << nccl.status();
    nccl_ = *std::move(nccl);
  }

  float* device_copy(const std::vector<float>& host) {
    absl::StatusOr<void*> p = backend_->allocate(std::max<size_t>(host.size(), 1) * sizeof(float));
    EXPECT_TRUE(p.ok()) << p.status();
    if (!host.empty()) {
      EXPECT_TRUE(
          backend_->copy_to_device(*p, host.data(), host.size() * sizeof(float), Stream::kCompute)
              .ok());
    }
    EXPECT_TRUE(backend_->synchronize(Stream::kCompute).ok());
    return static_cast<float*>(*p);
  }
  std::vector<float> host_copy(const float* device, size_t n) {
    std::vector<float> host(n);
    if (n > 0) {
      EXPECT_TRUE(
          backend_->copy_to_host(host.data(), device, n * sizeof(float), Stream::kCompute).ok());
    }
    EXPECT_TRUE(backend_->synchronize(Stream::kCompute).ok());
    return host;
  }
  // `got` against `want`, exactly with up to two ranks.
  void expect_sums(const std::vector<float>& got, const std::vector<float>& want) {
    ASSERT_EQ(got.size(), want.size());
    const int N = nccl_->size();
    for (size_t i = 0; i < got.size(); ++i) {
      if (N <= 2) {
        ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0) << i;
      } else {
        // N - 1 roundings of sums of up to N terms of magnitude <= 1e3.
        ASSERT_NEAR(got[i], want[i], 2.4e-7 * N * N * 1e3) << i;
      }
    }
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Communicator> nccl_;
};

const size_t kSizes[] = {1, 7, 1000, 1001, 65537};

TEST_F(NcclTest, AllReduceSumsEveryRank) {
  for (size_t n : kSizes) {
    float* d = device_copy(data_of(nccl_->rank(), n));
    ASSERT_TRUE(wait(nccl_->all_reduce(d, n)).ok());
    expect_sums(host_copy(d, n), rank_order_sum(n, nccl_->size()));
  }
}

TEST_F(NcclTest, ReduceScatterLeavesEachRankItsPartEvenOrNot) {
  const int N = nccl_->size(), rank = nccl_->rank();
  for (size_t n : kSizes) {
    const Part mine = partition(n, N, rank);
    float* in = device_copy(data_of(rank, n));
    float* out = device_copy(std::vector<float>(mine.count, -1.0f));
    ASSERT_TRUE(wait(nccl_->reduce_scatter(in, out, n)).ok()) << n;
    const std::vector<float> sum = rank_order_sum(n, N);
    expect_sums(
        host_copy(out, mine.count),
        std::vector<float>(sum.begin() + mine.offset, sum.begin() + mine.offset + mine.count));
  }
}

TEST_F(NcclTest, AllGatherTakesEachPartFromItsOwner) {
  const int N = nccl_->size(), rank = nccl_->rank();
  for (size_t n : kSizes) {
    float* d = device_copy(data_of(rank, n));
    ASSERT_TRUE(wait(nccl_->all_gather(d, n)).ok()) << n;
    std::vector<float> want(n);
    for (int r = 0; r < N; ++r) {
      const Part p = partition(n, N, r);
      for (size_t i = p.offset; i < p.offset + p.count; ++i) want[i] = value(r, i);
    }
    const std::vector<float> got = host_copy(d, n);
    ASSERT_EQ(std::memcmp(got.data(), want.data(), n * sizeof(float)), 0) << n;
  }
}

TEST_F(NcclTest, BroadcastBytesAndPointToPoint) {
  const int N = nccl_->size(), rank = nccl_->rank();
  const int root = N - 1;
  float* d = device_copy(data_of(rank, 1001));
  ASSERT_TRUE(wait(nccl_->broadcast(d, 1001 * sizeof(float), root)).ok());
  const std::vector<float> got = host_copy(d, 1001), want = data_of(root, 1001);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * 1001), 0);
  EXPECT_FALSE(nccl_->broadcast(d, 4, N).ok());
  EXPECT_FALSE(nccl_->send(d, 4, rank).ok());  // not another rank
  if (N >= 2) {
    float* p = device_copy(data_of(rank, 333));
    if (rank == 0) {
      ASSERT_TRUE(wait(nccl_->send(p, 333 * sizeof(float), 1)).ok());
    }
    if (rank == 1) {
      ASSERT_TRUE(wait(nccl_->receive(p, 333 * sizeof(float), 0)).ok());
      const std::vector<float> sent = host_copy(p, 333), from0 = data_of(0, 333);
      EXPECT_EQ(std::memcmp(sent.data(), from0.data(), sizeof(float) * 333), 0);
    }
  }
  ASSERT_TRUE(wait(nccl_->barrier()).ok());
  EXPECT_NE(nccl_->describe().find("nccl"), std::string::npos) << nccl_->describe();
}

}  // namespace
}  // namespace dsinf::kernels::comm

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  absl::StatusOr<std::unique_ptr<dsinf::kernels::comm::Communicator>> world =
      dsinf::kernels::comm::make_world_communicator();
  if (!world.ok()) {
    std::fprintf(stderr, "%s\n", std::string(world.status().message()).c_str());
    return 1;
  }
  dsinf::kernels::comm::host_world = *std::move(world);
  const int result = RUN_ALL_TESTS();
  dsinf::kernels::comm::host_world.reset();
  return result;
}
