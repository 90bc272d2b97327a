// The chunks the model's thread may take without a round trip to the
// param_shard actor: the shard posts a chunk once it is on the device, the
// model takes it with one atomic exchange and tells the shard afterwards
// (a `taken` message), and the shard withdraws it before its slot is reused.
// A chunk taken and not yet confirmed cannot be withdrawn, so its slot is
// never reused under the model. On two cores every round trip costs two
// thread wake-ups beside the compute; a take costs none.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>

#include "actors/messages.h"

namespace dsinf::actors {

class ReadyBoard {
 public:
  explicit ReadyBoard(size_t chunks);

  // The shard's side. post: chunk c is in `slot` for any number of takes
  // (it is not posted). withdraw: true when c is no longer takeable (or never
  // was); false while a take awaits its confirmation. confirm: the shard has
  // counted the take; the chunk is takeable again when `reopen`.
  void post(chunk_index c, float* slot);
  bool withdraw(chunk_index c);
  void confirm(chunk_index c, bool reopen);

  // The model's side: the slot of a posted chunk, which is then held until
  // the shard confirms the take; null when c is not posted or already taken.
  float* take(chunk_index c);

 private:
  enum State : int { kClosed = 0, kOpen = 1, kTaken = 2 };
  struct Entry {
    std::atomic<int> state{kClosed};
    float* slot = nullptr;  // written before the state opens, read after a take
  };
  std::unique_ptr<Entry[]> entries_;
  size_t size_;
};

}  // namespace dsinf::actors
