// partition(), the one-rank communicator, and the choice of the world's.
#include "kernels/comm/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/comm/mpi_communicator.h"
#include "kernels/comm/nccl_communicator.h"
#include "kernels/comm/rendezvous.h"

namespace dsinf::kernels::comm {

Part partition(size_t n, int size, int rank) {
  const size_t N = static_cast<size_t>(size), r = static_cast<size_t>(rank);
  const size_t base = n / N, extra = n % N;
  return {r * base + std::min(r, extra), base + (r < extra ? 1 : 0)};
}

absl::Status wait(absl::StatusOr<std::unique_ptr<Request>> request) {
  if (!request.ok()) return request.status();
  return (*request)->wait();
}

namespace {

class DoneRequest final : public Request {
 public:
  absl::Status wait() override { return absl::OkStatus(); }
  absl::StatusOr<bool> test() override { return true; }
};

absl::StatusOr<std::unique_ptr<Request>> done() {
  return std::unique_ptr<Request>(std::make_unique<DoneRequest>());
}

// With one rank every collective leaves its data as it is (a sum of one).
class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override { return "single process (no collectives)"; }
  absl::StatusOr<std::unique_ptr<Request>> all_reduce(float*, size_t) override { return done(); }
  absl::StatusOr<std::unique_ptr<Request>> reduce_scatter(const float* in, float* out,
                                                          size_t n) override {
    if (n > 0 && in != out) std::memmove(out, in, n * sizeof(float));
    return done();
  }
  absl::StatusOr<std::unique_ptr<Request>> all_gather(float*, size_t) override { return done(); }
  absl::StatusOr<std::unique_ptr<Request>> broadcast(void*, size_t, int root) override {
    if (root != 0) return absl::InvalidArgumentError("broadcast: root is not a rank");
    return done();
  }
  absl::StatusOr<std::unique_ptr<Request>> barrier() override { return done(); }
  absl::StatusOr<std::unique_ptr<Request>> all_gather_bytes(const void* in, size_t bytes,
                                                            void* out) override {
    if (bytes > 0 && in != out) std::memmove(out, in, bytes);
    return done();
  }
  absl::StatusOr<std::unique_ptr<Request>> send(const void*, size_t, int) override {
    return absl::InvalidArgumentError("send: a single process has no other rank");
  }
  absl::StatusOr<std::unique_ptr<Request>> receive(void*, size_t, int) override {
    return absl::InvalidArgumentError("receive: a single process has no other rank");
  }
  void abort(int) override {}
};

// Open MPI's and MPICH's launchers say so in the environment.
bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

}  // namespace

int launcher_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "WORLD_SIZE"}) {
    if (const char* value = std::getenv(name)) return std::max(1, std::atoi(value));
  }
  return 1;
}

int launcher_local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "LOCAL_RANK"}) {
    if (const char* value = std::getenv(name)) return std::max(0, std::atoi(value));
  }
  return 0;
}

std::unique_ptr<Communicator> make_single_communicator() {
  return std::make_unique<SingleCommunicator>();
}

absl::StatusOr<std::unique_ptr<Communicator>> make_world_communicator() {
  if (launched_by_mpi()) return make_mpi_communicator();
  // A torchrun-style launch: its ranks meet at MASTER_ADDR:MASTER_PORT and
  // talk through NCCL.
  absl::StatusOr<std::optional<TorchrunEnv>> env = torchrun_env();
  if (!env.ok()) return env.status();
  if (!env->has_value()) return make_single_communicator();
  return make_torchrun_world(**env);
}

}  // namespace dsinf::kernels::comm
