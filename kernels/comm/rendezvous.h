// A torchrun-style launch (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT; no MPI): the ranks meet over TCP at MASTER_ADDR:MASTER_PORT,
// where rank 0 listens, and that connection carries NCCL's bootstrap -- its
// unique id from rank 0 -- and nothing else: the training's collectives run
// on NCCL (nccl_communicator.h). The rendezvous is a Communicator whose
// broadcast, all_gather_bytes and barrier go through rank 0 and complete
// before they return; the reductions, point-to-point and float collectives
// answer kUnimplemented.
//
// Every rank must call the same operations in the same order with the same
// sizes; each message carries its length, and a mismatch is an error, not a
// misread. A rank that closes its connection (it failed, or abort()) ends the
// others' next operation with an error naming it.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/comm/communicator.h"

namespace dsinf::kernels::comm {

struct TorchrunEnv {
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  double timeout_s = 300;  // DSINF_RENDEZVOUS_TIMEOUT: how long ranks wait for each other
};

// The launch's variables, or nullopt without WORLD_SIZE > 1. kInvalidArgument
// naming the variable when one is missing or out of range.
absl::StatusOr<std::optional<TorchrunEnv>> torchrun_env();

// Meets the other ranks (rank 0 listens on MASTER_PORT of every interface;
// the others connect to MASTER_ADDR, retrying until rank 0 is up), waiting
// at most env.timeout_s, which also bounds each later operation's wait for a
// peer. kDeadlineExceeded when they do not all arrive; kInvalidArgument when
// a peer says another world size or a rank taken.
absl::StatusOr<std::unique_ptr<Communicator>> make_rendezvous(const TorchrunEnv& env);

}  // namespace dsinf::kernels::comm
