// Pieces shared by the engines: splitting a request into block-sized pieces,
// tracking a request until its last piece completes, and the bound on pieces
// in flight. Not part of the public interface.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "nvme/engine.h"

namespace dsinf::nvme::internal {

// A request in flight: completes (calls its callback once) when the last of
// its pieces finished. The first failure of any piece is the request's status.
class RequestTracker {
 public:
  RequestTracker(IoCallback done, size_t pieces) : done_(std::move(done)), remaining_(pieces) {}
  // Records one piece's outcome; returns true when it was the last piece.
  bool piece_done(const absl::Status& status, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!status.ok() && status_.ok()) status_ = status;
      bytes_ += bytes;
    }
    return remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1;
  }
  // Only after piece_done returned true.
  void finish() { done_(IoResult{status_, bytes_}); }

 private:
  IoCallback done_;
  std::atomic<size_t> remaining_;
  std::mutex mu_;
  absl::Status status_;
  size_t bytes_ = 0;
};

// One block-sized part of a request.
struct Piece {
  std::shared_ptr<RequestTracker> tracker;
  IoOp op;
  int fd;
  uint64_t offset;
  std::byte* buffer;
  size_t bytes;
};

// Calls emit(piece) for each block_size part of `request` (the last may be shorter).
template <typename Emit>
void split_request(const IoRequest& request, int fd, size_t block_size,
                   const std::shared_ptr<RequestTracker>& tracker, Emit&& emit) {
  for (size_t done = 0; done < request.bytes; done += block_size) {
    const size_t n = std::min(block_size, request.bytes - done);
    emit(Piece{tracker, request.op, fd, request.offset + done, request.buffer + done, n});
  }
}

// Opens `path` with O_RDWR | O_DIRECT (O_CREAT with mode 0600 when `create`).
absl::StatusOr<int> open_direct(const std::string& path, bool create);

inline size_t piece_count(size_t bytes, size_t block_size) {
  return (bytes + block_size - 1) / block_size;
}

// Counts requests accepted but not yet completed, for drain().
class InflightRequests {
 public:
  void add() {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_;
  }
  void remove() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--count_ == 0) cv_.notify_all();
  }
  void wait_zero() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return count_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t count_ = 0;
};

}  // namespace dsinf::nvme::internal
