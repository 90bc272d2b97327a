#include "actors/ready_board.h"

#include "memory/util/check.h"

namespace dsinf::actors {

ReadyBoard::ReadyBoard(size_t chunks) : entries_(new Entry[chunks]), size_(chunks) {}

void ReadyBoard::post(chunk_index c, float* slot) {
  DSINF_CHECK(c < size_);
  Entry& e = entries_[c];
  DSINF_CHECK_MSG(e.state.load(std::memory_order_relaxed) == kClosed, "chunk posted twice");
  e.slot = slot;
  e.state.store(kOpen, std::memory_order_release);
}

bool ReadyBoard::withdraw(chunk_index c) {
  DSINF_CHECK(c < size_);
  int expected = kOpen;
  if (entries_[c].state.compare_exchange_strong(expected, kClosed, std::memory_order_acq_rel)) {
    return true;
  }
  return expected == kClosed;
}

void ReadyBoard::confirm(chunk_index c, bool reopen) {
  DSINF_CHECK(c < size_);
  int expected = kTaken;
  const bool taken = entries_[c].state.compare_exchange_strong(
      expected, reopen ? kOpen : kClosed, std::memory_order_acq_rel);
  DSINF_CHECK_MSG(taken, "a take confirmed that was never made");
}

float* ReadyBoard::take(chunk_index c) {
  DSINF_CHECK(c < size_);
  Entry& e = entries_[c];
  int expected = kOpen;
  if (!e.state.compare_exchange_strong(expected, kTaken, std::memory_order_acq_rel)) return nullptr;
  return e.slot;
}

}  // namespace dsinf::actors
