// The pread/pwrite engine: a pool of worker threads, each doing one blocking
// piece at a time. It serves the same interface as the io_uring engine where a
// ring cannot be created, with intra_op_parallelism x queue_depth workers so
// the device sees the same number of requests in flight.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "memory/util/check.h"
#include "nvme/engine.h"
#include "nvme/engine_internal.h"

namespace dsinf::nvme {
namespace {

using internal::Piece;

constexpr int kMaxWorkers = 256;
constexpr int kMaxRetries = 100;  // EAGAIN/EINTR on one piece before giving up

class ThreadEngine : public IoEngine {
 public:
  explicit ThreadEngine(const EngineOptions& options) : options_(options) {
    const int workers =
        std::clamp(options.intra_op_parallelism * options.queue_depth, 1, kMaxWorkers);
    capacity_ = static_cast<size_t>(workers);
    for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { run(); });
  }

  ~ThreadEngine() override {
    drain();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : workers_) t.join();
    for (int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }

  std::string name() const override { return "threads"; }
  const EngineOptions& options() const override { return options_; }

  absl::StatusOr<FileId> open_file(const std::string& path, bool create) override {
    absl::StatusOr<int> fd = internal::open_direct(path, create);
    if (!fd.ok()) return fd.status();
    std::lock_guard<std::mutex> lock(mu_);
    fds_.push_back(*fd);
    paths_.push_back(path);
    return static_cast<FileId>(fds_.size() - 1);
  }

  absl::Status close_file(FileId file) override {
    drain();
    std::lock_guard<std::mutex> lock(mu_);
    if (file < 0 || static_cast<size_t>(file) >= fds_.size() || fds_[file] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("close of unknown file id ", file));
    }
    const int rc = ::close(fds_[file]);
    fds_[file] = -1;
    if (rc != 0) return util::errno_status(errno, paths_[file], direction(IoOp::kWrite));
    return absl::OkStatus();
  }

  absl::Status register_buffer(std::byte*, size_t) override { return absl::OkStatus(); }

  absl::Status submit(const IoRequest& request, IoCallback done) override {
    if (absl::Status s = validate_request(request); !s.ok()) return s;
    int fd;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (request.file < 0 || static_cast<size_t>(request.file) >= fds_.size() ||
          fds_[request.file] < 0) {
        return absl::InvalidArgumentError(absl::StrCat("I/O on unknown file id ", request.file));
      }
      fd = fds_[request.file];
    }
    auto tracker = std::make_shared<internal::RequestTracker>(
        std::move(done), internal::piece_count(request.bytes, options_.block_size));
    inflight_.add();
    internal::split_request(request, fd, options_.block_size, tracker, [&](Piece piece) {
      std::unique_lock<std::mutex> lock(mu_);
      // Bounded: at most `capacity_` pieces queued or running.
      space_cv_.wait(lock, [&] { return queued_ + running_ < capacity_; });
      queue_.push_back(std::move(piece));
      ++queued_;
      work_cv_.notify_one();
    });
    return absl::OkStatus();
  }

  void drain() override { inflight_.wait_zero(); }

  EngineStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  void run() {
    for (;;) {
      Piece piece;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, and nothing left
        piece = std::move(queue_.front());
        queue_.pop_front();
        --queued_;
        ++running_;
      }
      uint64_t resubmits = 0;
      const absl::Status status = transfer(piece, &resubmits);
      const bool last = piece.tracker->piece_done(status, status.ok() ? piece.bytes : 0);
      {
        std::lock_guard<std::mutex> lock(mu_);
        --running_;
        ++stats_.pieces;
        stats_.resubmits += resubmits;
        if (status.ok()) {
          (piece.op == IoOp::kRead ? stats_.bytes_read : stats_.bytes_written) += piece.bytes;
        }
        if (last) ++stats_.requests;
      }
      space_cv_.notify_one();
      if (last) {
        piece.tracker->finish();
        inflight_.remove();
      }
    }
  }

  // One piece with blocking calls: short transfers continue where they stopped.
  absl::Status transfer(const Piece& piece, uint64_t* resubmits) {
    size_t done = 0;
    int retries = 0;
    while (done < piece.bytes) {
      const ssize_t n = piece.op == IoOp::kRead
                            ? ::pread(piece.fd, piece.buffer + done, piece.bytes - done,
                                      static_cast<off_t>(piece.offset + done))
                            : ::pwrite(piece.fd, piece.buffer + done, piece.bytes - done,
                                       static_cast<off_t>(piece.offset + done));
      if (n < 0) {
        const int err = errno;
        if ((err == EINTR || err == EAGAIN) && ++retries <= kMaxRetries) {
          ++*resubmits;
          continue;
        }
        return util::errno_status(err, absl::StrCat("offset ", piece.offset + done),
                                  direction(piece.op));
      }
      if (n == 0) {
        return absl::OutOfRangeError(
            absl::StrCat("read at offset ", piece.offset + done, " is past the end of the file"));
      }
      done += static_cast<size_t>(n);
      if (done < piece.bytes) ++*resubmits;
    }
    return absl::OkStatus();
  }

  const EngineOptions options_;
  size_t capacity_ = 0;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, space_cv_;
  std::deque<Piece> queue_;
  size_t queued_ = 0, running_ = 0;
  bool stopping_ = false;
  std::vector<int> fds_;
  std::vector<std::string> paths_;
  EngineStats stats_;
  internal::InflightRequests inflight_;
  std::vector<std::thread> workers_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<IoEngine>> make_thread_engine(const EngineOptions& options) {
  if (options.block_size == 0 || options.block_size % kDirectIoAlignment != 0 ||
      options.queue_depth < 1 || options.intra_op_parallelism < 1) {
    return absl::InvalidArgumentError(
        "engine options: block_size must be a positive multiple of 4096, queue_depth and "
        "intra_op_parallelism at least 1");
  }
  return std::unique_ptr<IoEngine>(new ThreadEngine(options));
}

}  // namespace dsinf::nvme
