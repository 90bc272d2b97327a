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

namespace dsinf::kernels::comm {

// True when this dsinf was built with NCCL.
bool nccl_built();

// A communicator among bootstrap's ranks over CUDA device `device` (the
// caller's choice: the rank's place on its node). `bootstrap` must outlive it
// and is used for the unique id and abort() only. A collective of its ranks.
absl::StatusOr<std::unique_ptr<Communicator>> make_nccl_communicator(Communicator& bootstrap,
                                                                     int device);

}  // namespace dsinf::kernels::comm
