// overlap_comm: the ranks' gradient visits on their way to the chunks' owners
// while the backward goes on. Each visit is copied into a buffer of a fixed
// pool and its messages are posted -- a send to the owner; at the owner, a
// receive from every other rank -- and the model thread computes the next
// layers. The reductions complete in the order they started, the owner adding
// the parts in rank order: the additions of the blocking exchange, made later,
// so the sums are the same bits. When the pool runs short the oldest reduction
// completes first. Used by the model thread alone.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "kernels/comm/communicator.h"

namespace dsinf::actors {

class OverlappedReduce {
 public:
  // Adds chunk c's parts (one per rank, in rank order) into its accumulator.
  using AddParts = std::function<absl::Status(size_t c, const std::vector<const std::byte*>&)>;
  // Writes this rank's visit into a pool buffer.
  using Fill = std::function<absl::Status(std::byte* into)>;

  // `pool`: at least comm->size() buffers, each as large as any visit.
  OverlappedReduce(kernels::comm::Communicator* comm, std::vector<std::byte*> pool, AddParts add);
  // With reductions still in flight (a step failed: the rank is ending the
  // job) their requests are abandoned, not waited for: a peer may never post
  // the other side.
  ~OverlappedReduce();
  OverlappedReduce(const OverlappedReduce&) = delete;
  OverlappedReduce& operator=(const OverlappedReduce&) = delete;

  // This rank's visit of chunk c (`bytes`, written by `fill`) to `owner`.
  absl::Status start(size_t c, int owner, size_t bytes, const Fill& fill);
  // Completes the reductions whose messages are in, oldest first; never waits.
  absl::Status poll();
  // Completes every reduction started.
  absl::Status drain();
  bool idle() const { return in_flight_.empty(); }

 private:
  struct Reduction {
    size_t chunk = 0;
    bool owner = false;  // this rank adds the parts
    std::vector<std::byte*> parts;
    std::vector<std::unique_ptr<kernels::comm::Request>> requests;
  };
  absl::Status complete_oldest();

  kernels::comm::Communicator* comm_;
  std::vector<std::byte*> free_;
  AddParts add_;
  std::deque<Reduction> in_flight_;
};

}  // namespace dsinf::actors
