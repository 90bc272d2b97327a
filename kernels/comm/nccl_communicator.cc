// Collectives over NCCL (see nccl_communicator.h). Parts that do not divide
// evenly (partition()) go as one NCCL call per part in a group: reduce-scatter
// as a reduce of each part to its owner, all-gather as a broadcast of each
// part from its owner; even parts use ncclReduceScatter / ncclAllGather.
#include "kernels/comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <sched.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dsinf::kernels::comm {
namespace {

absl::Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

absl::Status nccl_status(ncclResult_t r, ncclComm_t comm, const char* what) {
  if (r == ncclSuccess || r == ncclInProgress) return absl::OkStatus();
  const char* detail = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  return absl::InternalError(absl::StrCat(
      what, ": ", ncclGetErrorString(r),
      detail != nullptr && *detail != '\0' ? absl::StrCat(" (", detail, ")") : std::string()));
}

// The communicator's device current on this thread while it lives, the
// previous one again after (the CUDA backend caches which device is current).
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    status_ = cuda_status(cudaSetDevice(device), "cudaSetDevice");
    if (!status_.ok()) {
      status_ = absl::Status(status_.code(),
                             absl::StrCat("CUDA device ", device, ": ", status_.message()));
    }
  }
  ~DeviceScope() {
    if (previous_ >= 0) (void)cudaSetDevice(previous_);
  }
  const absl::Status& status() const { return status_; }

 private:
  int previous_ = -1;
  absl::Status status_;
};

// Completes when the event recorded after its operation has; polls NCCL's
// asynchronous error meanwhile (a peer that failed ends the wait).
class NcclRequest final : public Request {
 public:
  NcclRequest(cudaEvent_t event, ncclComm_t comm) : event_(event), comm_(comm) {}
  ~NcclRequest() override {
    if (event_ != nullptr) {
      (void)cudaEventSynchronize(event_);
      (void)cudaEventDestroy(event_);
    }
  }
  absl::Status wait() override {
    while (true) {
      absl::StatusOr<bool> done = test();
      if (!done.ok() || *done) return done.status();
      sched_yield();
    }
  }
  absl::StatusOr<bool> test() override {
    const cudaError_t e = cudaEventQuery(event_);
    if (e == cudaSuccess) return true;
    if (e != cudaErrorNotReady) return cuda_status(e, "cudaEventQuery");
    ncclResult_t async = ncclSuccess;
    if (absl::Status s =
            nccl_status(ncclCommGetAsyncError(comm_, &async), comm_, "ncclCommGetAsyncError");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = nccl_status(async, comm_, "NCCL"); !s.ok()) return s;
    return false;
  }

 private:
  cudaEvent_t event_;
  ncclComm_t comm_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Communicator& bootstrap, int device) : bootstrap_(bootstrap), device_(device) {}
  ~NcclCommunicator() override {
    DeviceScope scope(device_);
    if (comm_ != nullptr) (void)ncclCommDestroy(comm_);
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
    if (scratch_ != nullptr) (void)cudaFree(scratch_);
  }

  absl::Status init() {
    DeviceScope scope(device_);
    if (!scope.status().ok()) return scope.status();
    ncclUniqueId id;
    std::memset(&id, 0, sizeof(id));
    if (bootstrap_.rank() == 0) {
      if (absl::Status s = nccl_status(ncclGetUniqueId(&id), nullptr, "ncclGetUniqueId"); !s.ok()) {
        return s;
      }
    }
    if (absl::Status s = wait(bootstrap_.broadcast(&id, sizeof(id), 0)); !s.ok()) return s;
    if (absl::Status s = cuda_status(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                                     "cudaStreamCreateWithFlags");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = cuda_status(cudaMalloc(&scratch_, sizeof(float)), "cudaMalloc"); !s.ok()) {
      return s;
    }
    if (absl::Status s =
            nccl_status(ncclCommInitRank(&comm_, bootstrap_.size(), id, bootstrap_.rank()), nullptr,
                        "ncclCommInitRank");
        !s.ok()) {
      comm_ = nullptr;
      return s;
    }
    int version = 0;
    if (ncclGetVersion(&version) == ncclSuccess) {
      version_ = absl::StrCat(version / 10000, ".", version / 100 % 100, ".", version % 100);
    }
    return absl::OkStatus();
  }

  int rank() const override { return bootstrap_.rank(); }
  int size() const override { return bootstrap_.size(); }
  bool sums_in_rank_order() const override { return false; }
  std::string describe() const override {
    return absl::StrCat("nccl (NCCL ", version_, ", CUDA device ", device_, "), rank ", rank(),
                        " of ", size());
  }

  absl::StatusOr<std::unique_ptr<Request>> all_reduce(float* data, size_t n) override {
    return enqueue("ncclAllReduce", [&] {
      return ncclAllReduce(data, data, n, ncclFloat, ncclSum, comm_, stream_);
    });
  }

  absl::StatusOr<std::unique_ptr<Request>> reduce_scatter(const float* in, float* out,
                                                          size_t n) override {
    const int N = size();
    if (n % static_cast<size_t>(N) == 0) {
      return enqueue("ncclReduceScatter", [&] {
        return ncclReduceScatter(in, out, n / N, ncclFloat, ncclSum, comm_, stream_);
      });
    }
    return enqueue_group("ncclReduce", [&]() -> ncclResult_t {
      for (int r = 0; r < N; ++r) {
        const Part p = partition(n, N, r);
        if (p.count == 0) continue;
        // recvbuff is written at the root only.
        const ncclResult_t e =
            ncclReduce(in + p.offset, out, p.count, ncclFloat, ncclSum, r, comm_, stream_);
        if (e != ncclSuccess) return e;
      }
      return ncclSuccess;
    });
  }

  absl::StatusOr<std::unique_ptr<Request>> all_gather(float* data, size_t n) override {
    const int N = size();
    if (n % static_cast<size_t>(N) == 0) {
      const size_t part = n / N;
      return enqueue("ncclAllGather", [&] {
        return ncclAllGather(data + rank() * part, data, part, ncclFloat, comm_, stream_);
      });
    }
    return enqueue_group("ncclBroadcast", [&]() -> ncclResult_t {
      for (int r = 0; r < N; ++r) {
        const Part p = partition(n, N, r);
        if (p.count == 0) continue;
        const ncclResult_t e =
            ncclBroadcast(data + p.offset, data + p.offset, p.count, ncclFloat, r, comm_, stream_);
        if (e != ncclSuccess) return e;
      }
      return ncclSuccess;
    });
  }

  absl::StatusOr<std::unique_ptr<Request>> broadcast(void* data, size_t bytes, int root) override {
    if (root < 0 || root >= size())
      return absl::InvalidArgumentError("broadcast: root is not a rank");
    return enqueue("ncclBroadcast", [&] {
      return ncclBroadcast(data, data, bytes, ncclChar, root, comm_, stream_);
    });
  }

  absl::StatusOr<std::unique_ptr<Request>> barrier() override {
    return enqueue("ncclAllReduce (barrier)", [&] {
      return ncclAllReduce(scratch_, scratch_, 1, ncclFloat, ncclSum, comm_, stream_);
    });
  }

  absl::StatusOr<std::unique_ptr<Request>> all_gather_bytes(const void* in, size_t bytes,
                                                            void* out) override {
    return enqueue("ncclAllGather",
                   [&] { return ncclAllGather(in, out, bytes, ncclChar, comm_, stream_); });
  }

  absl::StatusOr<std::unique_ptr<Request>> send(const void* data, size_t bytes, int to) override {
    if (to < 0 || to >= size() || to == rank()) {
      return absl::InvalidArgumentError("send: not another rank");
    }
    return enqueue("ncclSend", [&] { return ncclSend(data, bytes, ncclChar, to, comm_, stream_); });
  }

  absl::StatusOr<std::unique_ptr<Request>> receive(void* data, size_t bytes, int from) override {
    if (from < 0 || from >= size() || from == rank()) {
      return absl::InvalidArgumentError("receive: not another rank");
    }
    return enqueue("ncclRecv",
                   [&] { return ncclRecv(data, bytes, ncclChar, from, comm_, stream_); });
  }

  void abort(int code) override {
    if (comm_ != nullptr) (void)ncclCommAbort(comm_);
    comm_ = nullptr;
    bootstrap_.abort(code);
  }

 private:
  // The NCCL call on the stream, then an event after it.
  template <typename Call>
  absl::StatusOr<std::unique_ptr<Request>> enqueue(const char* what, Call&& call) {
    if (comm_ == nullptr) return absl::FailedPreconditionError("the NCCL communicator was aborted");
    DeviceScope scope(device_);
    if (!scope.status().ok()) return scope.status();
    if (absl::Status s = nccl_status(call(), comm_, what); !s.ok()) return s;
    cudaEvent_t event = nullptr;
    if (absl::Status s = cuda_status(cudaEventCreateWithFlags(&event, cudaEventDisableTiming),
                                     "cudaEventCreateWithFlags");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = cuda_status(cudaEventRecord(event, stream_), "cudaEventRecord"); !s.ok()) {
      (void)cudaEventDestroy(event);
      return s;
    }
    return std::unique_ptr<Request>(std::make_unique<NcclRequest>(event, comm_));
  }

  // Several calls as one NCCL group.
  template <typename Calls>
  absl::StatusOr<std::unique_ptr<Request>> enqueue_group(const char* what, Calls&& calls) {
    return enqueue(what, [&] {
      ncclResult_t e = ncclGroupStart();
      if (e != ncclSuccess) return e;
      const ncclResult_t inner = calls();
      e = ncclGroupEnd();
      return inner != ncclSuccess ? inner : e;
    });
  }

  Communicator& bootstrap_;
  const int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  float* scratch_ = nullptr;  // the barrier's one element
  std::string version_ = "?";
};

// A torchrun-style launch's world: the NCCL communicator over host buffers.
// Each operation copies its input into device buffers of its own (on a copy
// stream, waited for), runs NCCL and waits for it, and copies the output back:
// complete when the call returns.
class StagedWorld final : public Communicator {
 public:
  StagedWorld(std::unique_ptr<Communicator> rendezvous, int device)
      : rendezvous_(std::move(rendezvous)), device_(device) {}
  ~StagedWorld() override {
    nccl_.reset();
    DeviceScope scope(device_);
    if (in_ != nullptr) (void)cudaFree(in_);
    if (out_ != nullptr) (void)cudaFree(out_);
    if (copies_ != nullptr) (void)cudaStreamDestroy(copies_);
  }

  absl::Status init() {
    absl::StatusOr<std::unique_ptr<Communicator>> nccl =
        make_nccl_communicator(*rendezvous_, device_);
    if (!nccl.ok()) return nccl.status();
    nccl_ = *std::move(nccl);
    DeviceScope scope(device_);
    if (!scope.status().ok()) return scope.status();
    return cuda_status(cudaStreamCreateWithFlags(&copies_, cudaStreamNonBlocking),
                       "cudaStreamCreateWithFlags");
  }

  int rank() const override { return nccl_->rank(); }
  int size() const override { return nccl_->size(); }
  bool sums_in_rank_order() const override { return false; }
  Communicator* device_communicator() override { return nccl_.get(); }
  std::string describe() const override {
    return absl::StrCat(nccl_->describe(), " over host staging; met by ",
                        rendezvous_->describe());
  }

  absl::StatusOr<std::unique_ptr<Request>> all_reduce(float* data, size_t n) override {
    const size_t bytes = n * sizeof(float);
    return staged(data, bytes, data, bytes, [&] {
      return nccl_->all_reduce(static_cast<float*>(in_), n);
    }, /*result_in_input=*/true);
  }
  absl::StatusOr<std::unique_ptr<Request>> reduce_scatter(const float* in, float* out,
                                                          size_t n) override {
    const size_t part = partition(n, size(), rank()).count * sizeof(float);
    return staged(in, n * sizeof(float), out, part, [&] {
      return nccl_->reduce_scatter(static_cast<const float*>(in_), static_cast<float*>(out_), n);
    });
  }
  absl::StatusOr<std::unique_ptr<Request>> all_gather(float* data, size_t n) override {
    const size_t bytes = n * sizeof(float);
    return staged(data, bytes, data, bytes, [&] {
      return nccl_->all_gather(static_cast<float*>(in_), n);
    }, /*result_in_input=*/true);
  }
  absl::StatusOr<std::unique_ptr<Request>> broadcast(void* data, size_t bytes, int root) override {
    return staged(data, bytes, data, bytes, [&] { return nccl_->broadcast(in_, bytes, root); },
                  /*result_in_input=*/true);
  }
  absl::StatusOr<std::unique_ptr<Request>> barrier() override { return nccl_->barrier(); }
  absl::StatusOr<std::unique_ptr<Request>> all_gather_bytes(const void* in, size_t bytes,
                                                            void* out) override {
    return staged(in, bytes, out, bytes * static_cast<size_t>(size()),
                  [&] { return nccl_->all_gather_bytes(in_, bytes, out_); });
  }
  absl::StatusOr<std::unique_ptr<Request>> send(const void* data, size_t bytes, int to) override {
    return staged(data, bytes, nullptr, 0, [&] { return nccl_->send(in_, bytes, to); });
  }
  absl::StatusOr<std::unique_ptr<Request>> receive(void* data, size_t bytes, int from) override {
    return staged(nullptr, 0, data, bytes, [&] { return nccl_->receive(in_, bytes, from); },
                  /*result_in_input=*/true);
  }
  void abort(int code) override {
    if (nccl_) {
      nccl_->abort(code);
    } else {
      rendezvous_->abort(code);
    }
  }

 private:
  class Done final : public Request {
   public:
    absl::Status wait() override { return absl::OkStatus(); }
    absl::StatusOr<bool> test() override { return true; }
  };

  // Both device buffers hold at least `bytes`.
  absl::Status reserve(size_t bytes) {
    if (bytes <= capacity_) return absl::OkStatus();
    for (void** buffer : {&in_, &out_}) {
      if (*buffer != nullptr) (void)cudaFree(*buffer);
      *buffer = nullptr;
      if (absl::Status s = cuda_status(cudaMalloc(buffer, bytes), "cudaMalloc (NCCL staging)");
          !s.ok()) {
        capacity_ = 0;
        return s;
      }
    }
    capacity_ = bytes;
    return absl::OkStatus();
  }

  absl::Status copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    if (bytes == 0) return absl::OkStatus();
    if (absl::Status s = cuda_status(cudaMemcpyAsync(dst, src, bytes, kind, copies_),
                                     "cudaMemcpyAsync (NCCL staging)");
        !s.ok()) {
      return s;
    }
    return cuda_status(cudaStreamSynchronize(copies_), "cudaStreamSynchronize (NCCL staging)");
  }

  // `in` (in_bytes) to in_, the operation, then out_bytes of in_ (or out_) to `out`.
  template <typename Op>
  absl::StatusOr<std::unique_ptr<Request>> staged(const void* in, size_t in_bytes, void* out,
                                                  size_t out_bytes, Op&& op,
                                                  bool result_in_input = false) {
    if (!nccl_) return absl::FailedPreconditionError("the NCCL world was aborted");
    DeviceScope scope(device_);
    if (!scope.status().ok()) return scope.status();
    if (absl::Status s = reserve(std::max<size_t>({in_bytes, out_bytes, sizeof(float)})); !s.ok()) {
      return s;
    }
    if (absl::Status s = copy(in_, in, in_bytes, cudaMemcpyHostToDevice); !s.ok()) return s;
    if (absl::Status s = wait(op()); !s.ok()) return s;
    if (absl::Status s =
            copy(out, result_in_input ? in_ : out_, out_bytes, cudaMemcpyDeviceToHost);
        !s.ok()) {
      return s;
    }
    return std::unique_ptr<Request>(std::make_unique<Done>());
  }

  std::unique_ptr<Communicator> rendezvous_;  // NCCL's bootstrap; outlives nccl_
  std::unique_ptr<Communicator> nccl_;
  const int device_;
  cudaStream_t copies_ = nullptr;
  void* in_ = nullptr;
  void* out_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace

bool nccl_built() { return true; }

absl::StatusOr<std::unique_ptr<Communicator>> make_torchrun_world(const TorchrunEnv& env) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
  if (env.local_rank >= devices) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WORLD_SIZE=", env.world, " (a torchrun-style launch): such ranks communicate through "
        "NCCL on a GPU each, and LOCAL_RANK=", env.local_rank, " has none (", devices,
        " CUDA devices found); launch ranks under MPI instead: 'dsinf launch -n N CONFIG' or "
        "'mpirun -n N dsinf train CONFIG'"));
  }
  absl::StatusOr<std::unique_ptr<Communicator>> rendezvous = make_rendezvous(env);
  if (!rendezvous.ok()) return rendezvous.status();
  auto world = std::make_unique<StagedWorld>(*std::move(rendezvous), env.local_rank);
  if (absl::Status s = world->init(); !s.ok()) return s;
  return std::unique_ptr<Communicator>(std::move(world));
}

absl::StatusOr<std::unique_ptr<Communicator>> make_nccl_communicator(Communicator& bootstrap,
                                                                     int device) {
  auto comm = std::make_unique<NcclCommunicator>(bootstrap, device);
  if (absl::Status s = comm->init(); !s.ok()) return s;
  return std::unique_ptr<Communicator>(std::move(comm));
}

}  // namespace dsinf::kernels::comm
