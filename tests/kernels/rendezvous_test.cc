// The TCP rendezvous of a torchrun-style launch (kernels/comm/rendezvous.h):
// ranks in threads of one process meet on a free local port; broadcast from
// any root, all_gather_bytes and barrier give every rank the expected bytes;
// a wrong world size, a rank taken twice, a missing rank 0, a peer that
// closes and mismatched operations are errors that say so; the environment's
// variables are checked by name.
#include "kernels/comm/rendezvous.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace dsinf::kernels::comm {
namespace {

// A port free a moment ago on the loopback.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t length = sizeof(a);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length), 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

TorchrunEnv env_of(int rank, int world, int port, double timeout_s = 10) {
  return TorchrunEnv{rank, world, rank, "127.0.0.1", port, timeout_s};
}

// Runs body(rank) for each rank on a thread of its own.
void each_rank(int world, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) threads.emplace_back(body, r);
  for (std::thread& t : threads) t.join();
}

TEST(Rendezvous, ThreeRanksBroadcastGatherAndMeet) {
  const int port = free_port();
  constexpr int kWorld = 3;
  std::vector<std::string> failures(kWorld);
  each_rank(kWorld, [&](int r) {
    auto fail = [&](const std::string& what) { failures[r] += what + "; "; };
    absl::StatusOr<std::unique_ptr<Communicator>> c = make_rendezvous(env_of(r, kWorld, port, 30));
    if (!c.ok()) return fail(std::string(c.status().message()));
    Communicator& w = **c;
    if (w.rank() != r || w.size() != kWorld) fail("rank or size");
    // From every root, including one that is not rank 0 (relayed by it).
    for (int root = 0; root < kWorld; ++root) {
      std::vector<unsigned char> data(1000);
      for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 7 + r);
      if (!wait(w.broadcast(data.data(), data.size(), root)).ok()) return fail("broadcast");
      for (size_t i = 0; i < data.size(); ++i) {
        if (data[i] != static_cast<unsigned char>(i * 7 + root)) return fail("broadcast bytes");
      }
    }
    const double mine[2] = {r + 0.5, -r * 2.0};
    std::vector<double> all(2 * kWorld);
    if (!wait(w.all_gather_bytes(mine, sizeof(mine), all.data())).ok()) return fail("gather");
    for (int k = 0; k < kWorld; ++k) {
      if (all[2 * k] != k + 0.5 || all[2 * k + 1] != -k * 2.0) fail("gathered values");
    }
    if (!wait(w.barrier()).ok()) fail("barrier");
    float x = 1;
    if (wait(w.all_reduce(&x, 1)).code() != absl::StatusCode::kUnimplemented) fail("all_reduce");
  });
  for (int r = 0; r < kWorld; ++r) EXPECT_EQ(failures[r], "") << "rank " << r;
}

// Something else connecting to the port (not a dsinf rank) is ignored.
TEST(Rendezvous, AStrayConnectionIsIgnored) {
  const int port = free_port();
  absl::Status zero, one;
  std::thread stray([&] {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    for (int tries = 0; tries < 100; ++tries) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
        const char request[] = "GET / HTTP/1.0\r\n\r\n";
        (void)!::write(fd, request, sizeof(request));
        ::close(fd);
        return;
      }
      ::close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::thread rank0([&] { zero = make_rendezvous(env_of(0, 2, port)).status(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  one = make_rendezvous(env_of(1, 2, port)).status();
  rank0.join();
  stray.join();
  EXPECT_TRUE(zero.ok()) << zero;
  EXPECT_TRUE(one.ok()) << one;
}

TEST(Rendezvous, AnotherWorldSizeIsNamed) {
  const int port = free_port();
  absl::Status zero, one;
  each_rank(2, [&](int r) {
    absl::StatusOr<std::unique_ptr<Communicator>> c =
        make_rendezvous(env_of(r, r == 0 ? 2 : 3, port));
    (r == 0 ? zero : one) = c.status();
  });
  EXPECT_EQ(zero.code(), absl::StatusCode::kInvalidArgument) << zero;
  EXPECT_NE(zero.message().find("WORLD_SIZE=3"), std::string::npos) << zero;
  EXPECT_FALSE(one.ok());  // rank 0 closed its connection
}

TEST(Rendezvous, ARankTakenTwiceIsNamed) {
  const int port = free_port();
  absl::Status zero;
  each_rank(3, [&](int r) {
    TorchrunEnv env = env_of(r == 2 ? 1 : r, 3, port);
    absl::StatusOr<std::unique_ptr<Communicator>> c = make_rendezvous(env);
    if (r == 0) zero = c.status();
  });
  EXPECT_EQ(zero.code(), absl::StatusCode::kInvalidArgument) << zero;
  EXPECT_NE(zero.message().find("RANK=1"), std::string::npos) << zero;
}

TEST(Rendezvous, WithoutRankZeroTheWaitEndsNamingTheAddress) {
  const int port = free_port();
  absl::StatusOr<std::unique_ptr<Communicator>> c = make_rendezvous(env_of(1, 2, port, 0.5));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDeadlineExceeded) << c.status();
  EXPECT_NE(c.status().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << c.status();
  // Rank 0 alone: the others never come.
  c = make_rendezvous(env_of(0, 2, port, 0.5));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDeadlineExceeded) << c.status();
  EXPECT_NE(c.status().message().find("0 of the 1 other ranks"), std::string::npos) << c.status();
}

TEST(Rendezvous, APeerThatLeavesEndsTheOthersOperation) {
  const int port = free_port();
  absl::Status closed;
  each_rank(2, [&](int r) {
    absl::StatusOr<std::unique_ptr<Communicator>> c = make_rendezvous(env_of(r, 2, port));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(wait((*c)->barrier()).ok());
    if (r == 1) return (*c)->abort(1);  // a failed rank
    closed = wait((*c)->barrier());
  });
  EXPECT_EQ(closed.code(), absl::StatusCode::kUnavailable) << closed;
  EXPECT_NE(closed.message().find("rank 1 closed its connection"), std::string::npos) << closed;
}

TEST(Rendezvous, OperationsThatDisagreeAreAnErrorNotAMisread) {
  const int port = free_port();
  absl::Status zero, one;
  each_rank(2, [&](int r) {
    absl::StatusOr<std::unique_ptr<Communicator>> c = make_rendezvous(env_of(r, 2, port));
    ASSERT_TRUE(c.ok()) << c.status();
    char in[8] = {}, out[16] = {};
    (r == 0 ? zero : one) = wait((*c)->all_gather_bytes(in, r == 0 ? 8 : 4, out));
  });
  EXPECT_NE(zero.message().find("sent 4 bytes where this rank expects 8"), std::string::npos)
      << zero;
  EXPECT_FALSE(one.ok());  // at once: rank 0 closed the connection
}

// setenv/unsetenv for one test; restored after.
class ScopedEnv {
 public:
  ScopedEnv(std::vector<std::pair<std::string, const char*>> values) {
    for (auto& [name, value] : values) {
      const char* old = std::getenv(name.c_str());
      saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      if (value) {
        ::setenv(name.c_str(), value, 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  }
  ~ScopedEnv() {
    for (auto& [name, value] : saved_) {
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

absl::StatusOr<std::optional<TorchrunEnv>> env_with(const char* world, const char* rank,
                                                    const char* addr, const char* port) {
  ScopedEnv scoped({{"WORLD_SIZE", world},
                    {"RANK", rank},
                    {"LOCAL_RANK", nullptr},
                    {"MASTER_ADDR", addr},
                    {"MASTER_PORT", port},
                    {"DSINF_RENDEZVOUS_TIMEOUT", nullptr}});
  return torchrun_env();
}

TEST(TorchrunEnv, VariablesAreReadAndCheckedByName) {
  absl::StatusOr<std::optional<TorchrunEnv>> e = env_with("4", "3", "node0", "29500");
  ASSERT_TRUE(e.ok() && e->has_value()) << e.status();
  EXPECT_EQ((*e)->world, 4);
  EXPECT_EQ((*e)->rank, 3);
  EXPECT_EQ((*e)->master_addr, "node0");
  EXPECT_EQ((*e)->master_port, 29500);
  // No launch, or a launch of one: no rendezvous.
  e = env_with(nullptr, nullptr, nullptr, nullptr);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->has_value());
  e = env_with("1", "0", nullptr, nullptr);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->has_value());
  struct Bad {
    const char *world, *rank, *addr, *port, *named;
  };
  for (const Bad& b : {Bad{"2", "2", "a", "1", "RANK=2"}, Bad{"2", nullptr, "a", "1", "RANK is"},
                       Bad{"2", "0", nullptr, "1", "MASTER_ADDR"},
                       Bad{"2", "0", "a", nullptr, "MASTER_PORT is"},
                       Bad{"2", "0", "a", "70000", "MASTER_PORT=70000"},
                       Bad{"two", "0", "a", "1", "WORLD_SIZE=two"}}) {
    e = env_with(b.world, b.rank, b.addr, b.port);
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << b.named;
    EXPECT_NE(e.status().message().find(b.named), std::string::npos) << e.status();
  }
}

}  // namespace
}  // namespace dsinf::kernels::comm
