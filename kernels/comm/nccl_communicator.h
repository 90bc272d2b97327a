// The NCCL communicator: the ranks of a bootstrap communicator (MPI's world,
// whose broadcast carries NCCL's unique id from rank 0), over device buffers
// on one CUDA device each, on a stream of its own. Built when CMake finds nvcc
// and NCCL (/usr/local/cuda); otherwise make_nccl_communicator() answers
// kUnavailable (no_nccl.cc).
//
// Every buffer passed is device memory of that device, and the work that
// wrote it is complete before the call (the communicator's stream waits for
// nothing else). A request completes when an event recorded after the
// operation on the stream has; wait() polls it and NCCL's asynchronous error,
// so a failed peer ends the wait with a status instead of a hang.
//
// Reductions are NCCL's own (ncclSum in its ring or tree order): deterministic
// for a fixed world size, topology and NCCL version, but not the rank order
// the MPI communicator keeps. With one or two ranks that is the same sum bit
// for bit (one addition commutes); with more, the results differ from the
// rank-order sum by the rounding of an N-term fp32 sum.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/comm/communicator.h"
#include "kernels/comm/rendezvous.h"

namespace dsinf::kernels::comm {

// True when this dsinf was built with NCCL.
bool nccl_built();

// A communicator among bootstrap's ranks over CUDA device `device` (the
// caller's choice: the rank's place on its node). `bootstrap` must outlive it
// and is used for the unique id and abort() only. A collective of its ranks.
absl::StatusOr<std::unique_ptr<Communicator>> make_nccl_communicator(Communicator& bootstrap,
                                                                     int device);

// The world of a torchrun-style launch (rendezvous.h): NCCL among the ranks
// met at MASTER_ADDR:MASTER_PORT, on the GPU of LOCAL_RANK, over host
// buffers -- each operation stages its buffer through device memory of its
// own (grown to the largest message, beside memory.device_budget_bytes) and
// completes before it returns, so overlap_comm has nothing to overlap.
// kInvalidArgument when this rank has no GPU, or without NCCL, each saying
// how to launch ranks under MPI instead.
absl::StatusOr<std::unique_ptr<Communicator>> make_torchrun_world(const TorchrunEnv& env);

}  // namespace dsinf::kernels::comm
