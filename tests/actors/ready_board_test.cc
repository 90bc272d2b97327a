// The ready board between the param_shard actor and the model's thread: a
// posted chunk is taken once until the shard confirms the take, a chunk
// taken and unconfirmed cannot be withdrawn (its slot is never reused under
// the model), and a withdrawn chunk cannot be taken. Under a race between a
// take and a withdrawal exactly one of them wins.
#include "actors/ready_board.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace dsinf::actors {
namespace {

TEST(ReadyBoard, APostedChunkIsTakenOnceUntilTheTakeIsConfirmed) {
  ReadyBoard board(3);
  float slot[4] = {};
  EXPECT_EQ(board.take(1), nullptr) << "nothing posted";
  board.post(1, slot);
  EXPECT_EQ(board.take(0), nullptr);
  EXPECT_EQ(board.take(1), slot);
  EXPECT_EQ(board.take(1), nullptr) << "taken, not yet confirmed";
  board.confirm(1, /*reopen=*/true);
  EXPECT_EQ(board.take(1), slot);
  board.confirm(1, /*reopen=*/false);
  EXPECT_EQ(board.take(1), nullptr) << "confirmed without reopening";
}

TEST(ReadyBoard, ATakenChunkCannotBeWithdrawnUntilConfirmed) {
  ReadyBoard board(2);
  float a[1] = {}, b[1] = {};
  EXPECT_TRUE(board.withdraw(0)) << "never posted: nothing to keep";
  board.post(0, a);
  board.post(1, b);
  EXPECT_TRUE(board.withdraw(1));
  EXPECT_EQ(board.take(1), nullptr) << "withdrawn";
  ASSERT_EQ(board.take(0), a);
  EXPECT_FALSE(board.withdraw(0)) << "the model holds it";
  board.confirm(0, /*reopen=*/true);
  EXPECT_TRUE(board.withdraw(0));
  EXPECT_EQ(board.take(0), nullptr);
  board.post(0, b);  // the slot reused for a new load
  EXPECT_EQ(board.take(0), b);
}

TEST(ReadyBoard, ATakeAndAWithdrawalNeverBothWin) {
  constexpr int kRounds = 20000;
  ReadyBoard board(1);
  float slot[1] = {};
  std::atomic<int> round{-1}, taken{0}, withdrawn{0};
  std::atomic<int> done{0};
  std::thread model([&] {
    for (int r = 0; r < kRounds; ++r) {
      while (round.load() < r) {
      }
      if (board.take(0) != nullptr) ++taken;
      ++done;
    }
  });
  for (int r = 0; r < kRounds; ++r) {
    board.post(0, slot);
    const int before = done.load();
    round.store(r);
    const bool won = board.withdraw(0);
    while (done.load() == before) {
    }
    if (won) {
      ++withdrawn;
    } else {
      board.confirm(0, /*reopen=*/false);  // the shard counts the take, then frees the slot
      EXPECT_TRUE(board.withdraw(0));
    }
  }
  model.join();
  EXPECT_EQ(taken.load() + withdrawn.load(), kRounds);
}

}  // namespace
}  // namespace dsinf::actors
