// Collectives among the data-parallel ranks of a run, behind one interface
// (MPI over host buffers here; NCCL over device buffers beside it). Every
// collective is asynchronous: it returns a Request whose wait() completes it,
// so the actors overlap communication with compute. Reductions add the ranks'
// contributions in rank order (0, 1, ..., N-1) in fp32, whatever order they
// arrive in: a result never depends on timing, and with one rank it is the
// input itself.
//
// Partitions: an array of n elements is split into N contiguous parts, part r
// of size n / N, plus one for r < n % N (partition()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dsinf::kernels::comm {

// Rank r's part [offset, offset + count) of n elements over `size` ranks.
struct Part {
  size_t offset = 0;
  size_t count = 0;
};
Part partition(size_t n, int size, int rank);

// An operation in flight. wait() completes it (the reduction's sums happen
// there) and may be called once; test() says whether wait() would return now.
class Request {
 public:
  virtual ~Request() = default;
  virtual absl::Status wait() = 0;
  virtual absl::StatusOr<bool> test() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "mpi (Open MPI 4.1.4), rank 0 of 2": for logs.
  virtual std::string describe() const = 0;
  // Whether reductions add in rank order (the same bits whatever the timing
  // and topology); NCCL's add in its own ring or tree order.
  virtual bool sums_in_rank_order() const { return true; }
  // The same ranks over device buffers when this communicator stages host
  // buffers through one (a torchrun-style launch's NCCL world); else null.
  virtual Communicator* device_communicator() { return nullptr; }

  // data (n) = the sum over ranks of their data, on every rank.
  virtual absl::StatusOr<std::unique_ptr<Request>> all_reduce(float* data, size_t n) = 0;
  // out (this rank's part of n) = the sum over ranks of that part of their in (n).
  virtual absl::StatusOr<std::unique_ptr<Request>> reduce_scatter(const float* in, float* out,
                                                                  size_t n) = 0;
  // data (n): every rank's part, from that rank's data, gathered on every rank.
  virtual absl::StatusOr<std::unique_ptr<Request>> all_gather(float* data, size_t n) = 0;
  // bytes at data from rank `root` to every rank.
  virtual absl::StatusOr<std::unique_ptr<Request>> broadcast(void* data, size_t bytes,
                                                             int root) = 0;
  virtual absl::StatusOr<std::unique_ptr<Request>> barrier() = 0;
  // out (size() * bytes) = every rank's `bytes` at in, rank after rank, on every rank.
  virtual absl::StatusOr<std::unique_ptr<Request>> all_gather_bytes(const void* in, size_t bytes,
                                                                    void* out) = 0;
  // Point to point, matched in the order sent between each pair of ranks.
  virtual absl::StatusOr<std::unique_ptr<Request>> send(const void* data, size_t bytes, int to) = 0;
  virtual absl::StatusOr<std::unique_ptr<Request>> receive(void* data, size_t bytes, int from) = 0;
  // Ends every rank of the job with exit status `code` (the launcher reports
  // it); with one rank it returns and the caller exits.
  virtual void abort(int code) = 0;
};

// Waits for `request` when it was made: the status of both steps.
absl::Status wait(absl::StatusOr<std::unique_ptr<Request>> request);

// The ranks a launcher started this process among (its environment says:
// OMPI_COMM_WORLD_SIZE, PMI_SIZE; torchrun's WORLD_SIZE), 1 without a launcher.
int launcher_world_size();
// This process's rank among those the launcher started on its node
// (OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, torchrun's LOCAL_RANK), 0
// without a launcher or when it does not say.
int launcher_local_rank();

// The communicator of this process: MPI's world when the process runs under
// an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE / PMI_SIZE); NCCL's among
// the ranks of a torchrun-style launch (WORLD_SIZE > 1 without MPI: they meet
// at MASTER_ADDR:MASTER_PORT, rendezvous.h; make_torchrun_world); else one
// rank of its own. kUnavailable when launched by MPI but built without it;
// kInvalidArgument for a torchrun-style launch with a variable missing, or
// without NCCL or a GPU for the rank.
absl::StatusOr<std::unique_ptr<Communicator>> make_world_communicator();
// One rank, no other: every collective is complete at once.
std::unique_ptr<Communicator> make_single_communicator();

}  // namespace dsinf::kernels::comm
