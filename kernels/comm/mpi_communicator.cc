// Collectives over MPI_COMM_WORLD with MPI's nonblocking calls. A reduction is
// an all-to-all that brings every rank's copy of a part to the part's owner,
// which adds them in rank order when the request completes: the same sums
// whatever order the messages arrive in (MPI's own reductions promise no order).
#include <mpi.h>

#include <climits>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/comm/mpi_communicator.h"

namespace dsinf::kernels::comm {
namespace {

absl::Status mpi_status(int code, const char* what) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  return absl::InternalError(absl::StrCat(what, ": ", std::string(text, length)));
}

absl::Status fits_int(size_t n, const char* what) {
  if (n <= static_cast<size_t>(INT_MAX)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": ", n, " elements exceed MPI's int counts"));
}

// One MPI request, then `finish` (the rank-order sums, or a next phase).
class MpiRequest final : public Request {
 public:
  MpiRequest(MPI_Request request, std::function<absl::Status()> finish)
      : request_(request), finish_(std::move(finish)) {}
  ~MpiRequest() override {
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  absl::Status wait() override {
    absl::Status s = mpi_status(MPI_Wait(&request_, MPI_STATUS_IGNORE), "MPI_Wait");
    if (s.ok() && finish_) s = finish_();
    finish_ = nullptr;
    return s;
  }
  absl::StatusOr<bool> test() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int flag = 0;
    if (absl::Status s = mpi_status(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE), "MPI_Test");
        !s.ok()) {
      return s;
    }
    return flag != 0;
  }

 private:
  MPI_Request request_;
  std::function<absl::Status()> finish_;
};

// Reductions' receive buffers, kept for the next operation instead of freed:
// a fresh allocation a time (mmap, faulting every page in, munmap) made a
// 64 MiB reduce-scatter ten times slower. The pool holds as many buffers as
// operations were ever in flight at once, each as large as the largest it served.
class StagingPool : public std::enable_shared_from_this<StagingPool> {
 public:
  using Buffer = std::shared_ptr<std::vector<float>>;
  Buffer take(size_t elements) {
    std::unique_ptr<std::vector<float>> buffer;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        buffer = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!buffer) buffer = std::make_unique<std::vector<float>>();
    if (buffer->size() < elements) buffer->resize(elements);
    std::shared_ptr<StagingPool> self = shared_from_this();
    return Buffer(buffer.release(), [self](std::vector<float>* b) {
      std::lock_guard<std::mutex> lock(self->mutex_);
      self->free_.emplace_back(b);
    });
  }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<std::vector<float>>> free_;
};

class MpiCommunicator final : public Communicator {
 public:
  static constexpr int kPointTag = 7;

  MpiCommunicator(int rank, int size) : rank_(rank), size_(size) {}
  ~MpiCommunicator() override { MPI_Finalize(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(version, &length);
    std::string name(version, length);
    name = name.substr(0, name.find(','));
    return absl::StrCat("mpi (", name, "), rank ", rank_, " of ", size_);
  }

  absl::StatusOr<std::unique_ptr<Request>> reduce_scatter(const float* in, float* out,
                                                          size_t n) override {
    return reduce_scatter_then(in, out, n, nullptr);
  }

  absl::StatusOr<std::unique_ptr<Request>> all_reduce(float* data, size_t n) override {
    // Reduce-scatter into this rank's part, then gather every part.
    const Part mine = partition(n, size_, rank_);
    return reduce_scatter_then(data, data + mine.offset, n, [this, data, n]() {
      absl::StatusOr<std::unique_ptr<Request>> gather = all_gather(data, n);
      return gather.ok() ? (*gather)->wait() : gather.status();
    });
  }

  absl::StatusOr<std::unique_ptr<Request>> all_gather(float* data, size_t n) override {
    if (absl::Status s = fits_int(n, "all_gather"); !s.ok()) return s;
    auto counts = std::make_shared<std::vector<int>>(size_), displs = counts_like();
    for (int r = 0; r < size_; ++r) {
      const Part p = partition(n, size_, r);
      (*counts)[r] = static_cast<int>(p.count);
      (*displs)[r] = static_cast<int>(p.offset);
    }
    MPI_Request request = MPI_REQUEST_NULL;
    if (absl::Status s = mpi_status(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data,
                                                    counts->data(), displs->data(), MPI_FLOAT,
                                                    MPI_COMM_WORLD, &request),
                                    "MPI_Iallgatherv");
        !s.ok()) {
      return s;
    }
    // The count arrays must outlive the operation.
    return request_of(request, [counts, displs]() { return absl::OkStatus(); });
  }

  absl::StatusOr<std::unique_ptr<Request>> broadcast(void* data, size_t bytes,
                                                     int root) override {
    if (root < 0 || root >= size_) return absl::InvalidArgumentError("broadcast: root is not a rank");
    if (absl::Status s = fits_int(bytes, "broadcast"); !s.ok()) return s;
    MPI_Request request = MPI_REQUEST_NULL;
    if (absl::Status s = mpi_status(
            MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD, &request),
            "MPI_Ibcast");
        !s.ok()) {
      return s;
    }
    return request_of(request, nullptr);
  }

  absl::StatusOr<std::unique_ptr<Request>> all_gather_bytes(const void* in, size_t bytes,
                                                            void* out) override {
    if (absl::Status s = fits_int(bytes, "all_gather_bytes"); !s.ok()) return s;
    MPI_Request request = MPI_REQUEST_NULL;
    if (absl::Status s = mpi_status(MPI_Iallgather(in, static_cast<int>(bytes), MPI_BYTE, out,
                                                   static_cast<int>(bytes), MPI_BYTE,
                                                   MPI_COMM_WORLD, &request),
                                    "MPI_Iallgather");
        !s.ok()) {
      return s;
    }
    return request_of(request, nullptr);
  }

  absl::StatusOr<std::unique_ptr<Request>> send(const void* data, size_t bytes, int to) override {
    if (to < 0 || to >= size_ || to == rank_) return absl::InvalidArgumentError("send: bad rank");
    if (absl::Status s = fits_int(bytes, "send"); !s.ok()) return s;
    MPI_Request request = MPI_REQUEST_NULL;
    if (absl::Status s = mpi_status(MPI_Isend(data, static_cast<int>(bytes), MPI_BYTE, to,
                                              kPointTag, MPI_COMM_WORLD, &request),
                                    "MPI_Isend");
        !s.ok()) {
      return s;
    }
    return request_of(request, nullptr);
  }

  absl::StatusOr<std::unique_ptr<Request>> receive(void* data, size_t bytes, int from) override {
    if (from < 0 || from >= size_ || from == rank_) {
      return absl::InvalidArgumentError("receive: bad rank");
    }
    if (absl::Status s = fits_int(bytes, "receive"); !s.ok()) return s;
    MPI_Request request = MPI_REQUEST_NULL;
    if (absl::Status s = mpi_status(MPI_Irecv(data, static_cast<int>(bytes), MPI_BYTE, from,
                                              kPointTag, MPI_COMM_WORLD, &request),
                                    "MPI_Irecv");
        !s.ok()) {
      return s;
    }
    return request_of(request, nullptr);
  }

  void abort(int code) override { MPI_Abort(MPI_COMM_WORLD, code); }

  absl::StatusOr<std::unique_ptr<Request>> barrier() override {
    MPI_Request request = MPI_REQUEST_NULL;
    if (absl::Status s = mpi_status(MPI_Ibarrier(MPI_COMM_WORLD, &request), "MPI_Ibarrier");
        !s.ok()) {
      return s;
    }
    return request_of(request, nullptr);
  }

 private:
  std::shared_ptr<std::vector<int>> counts_like() const {
    return std::make_shared<std::vector<int>>(size_);
  }

  static absl::StatusOr<std::unique_ptr<Request>> request_of(MPI_Request request,
                                                             std::function<absl::Status()> finish) {
    return std::unique_ptr<Request>(std::make_unique<MpiRequest>(request, std::move(finish)));
  }

  // Every rank's copy of this rank's part arrives in `copies` (rank after
  // rank); on completion out = copies[0] + copies[1] + ... in that order, then `next`.
  absl::StatusOr<std::unique_ptr<Request>> reduce_scatter_then(
      const float* in, float* out, size_t n, std::function<absl::Status()> next) {
    if (absl::Status s = fits_int(n, "reduce_scatter"); !s.ok()) return s;
    const Part mine = partition(n, size_, rank_);
    if (mine.count * static_cast<size_t>(size_) > static_cast<size_t>(INT_MAX)) {
      return fits_int(mine.count * size_, "reduce_scatter");
    }
    StagingPool::Buffer copies = staging_->take(mine.count * size_);
    auto send_counts = counts_like(), send_displs = counts_like();
    auto recv_counts = counts_like(), recv_displs = counts_like();
    for (int r = 0; r < size_; ++r) {
      const Part p = partition(n, size_, r);
      (*send_counts)[r] = static_cast<int>(p.count);
      (*send_displs)[r] = static_cast<int>(p.offset);
      (*recv_counts)[r] = static_cast<int>(mine.count);
      (*recv_displs)[r] = static_cast<int>(mine.count * r);
    }
    MPI_Request request = MPI_REQUEST_NULL;
    if (absl::Status s = mpi_status(
            MPI_Ialltoallv(in, send_counts->data(), send_displs->data(), MPI_FLOAT,
                           copies->data(), recv_counts->data(), recv_displs->data(), MPI_FLOAT,
                           MPI_COMM_WORLD, &request),
            "MPI_Ialltoallv");
        !s.ok()) {
      return s;
    }
    const int ranks = size_;
    auto finish = [=, count = mine.count]() {
      (void)send_counts, (void)send_displs, (void)recv_counts, (void)recv_displs;
      const float* c = copies->data();
      for (size_t i = 0; i < count; ++i) {
        float sum = c[i];
        for (int r = 1; r < ranks; ++r) sum += c[static_cast<size_t>(r) * count + i];
        out[i] = sum;
      }
      return next ? next() : absl::OkStatus();
    };
    return request_of(request, std::move(finish));
  }

  int rank_, size_;
  std::shared_ptr<StagingPool> staging_ = std::make_shared<StagingPool>();
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> make_mpi_communicator() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return absl::FailedPreconditionError("MPI is initialised already");
  int provided = 0;
  if (absl::Status s = mpi_status(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided),
                                  "MPI_Init_thread");
      !s.ok()) {
    return s;
  }
  // Errors come back as codes, checked at every call, instead of aborting the job.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (provided < MPI_THREAD_MULTIPLE) {
    MPI_Finalize();
    return absl::UnavailableError(
        "the MPI library does not provide MPI_THREAD_MULTIPLE, which dsinf's actors need");
  }
  int rank = 0, size = 1;
  absl::Status s = mpi_status(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
  if (s.ok()) s = mpi_status(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size");
  if (!s.ok()) {
    MPI_Finalize();
    return s;
  }
  return std::unique_ptr<Communicator>(std::make_unique<MpiCommunicator>(rank, size));
}

}  // namespace dsinf::kernels::comm
