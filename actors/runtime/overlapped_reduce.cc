#include "actors/runtime/overlapped_reduce.h"

#include <utility>

#include "memory/util/check.h"

namespace dsinf::actors {

namespace comm = kernels::comm;

OverlappedReduce::OverlappedReduce(comm::Communicator* comm, std::vector<std::byte*> pool,
                                   AddParts add)
    : comm_(comm), free_(std::move(pool)), add_(std::move(add)) {
  DSINF_CHECK_MSG(free_.size() >= static_cast<size_t>(comm_->size()),
                  "the overlapped reduction's pool holds fewer buffers than one owner needs");
}

OverlappedReduce::~OverlappedReduce() {
  for (Reduction& r : in_flight_) {
    for (std::unique_ptr<comm::Request>& request : r.requests) {
      if (request) (void)request.release();
    }
  }
}

absl::Status OverlappedReduce::start(size_t c, int owner, size_t bytes, const Fill& fill) {
  const int ranks = comm_->size();
  const int me = comm_->rank();
  const size_t needed = owner == me ? static_cast<size_t>(ranks) : 1;
  while (free_.size() < needed) {
    if (absl::Status s = complete_oldest(); !s.ok()) return s;
  }
  Reduction r;
  r.chunk = c;
  r.owner = owner == me;
  std::byte* mine = free_.back();
  free_.pop_back();
  if (absl::Status s = fill(mine); !s.ok()) {
    free_.push_back(mine);
    return s;
  }
  auto post = [&](absl::StatusOr<std::unique_ptr<comm::Request>> request) {
    if (!request.ok()) return request.status();
    r.requests.push_back(*std::move(request));
    return absl::OkStatus();
  };
  absl::Status posted;
  if (!r.owner) {
    r.parts.push_back(mine);
    posted = post(comm_->send(mine, bytes, owner));
  } else {
    r.parts.assign(static_cast<size_t>(ranks), nullptr);
    for (int from = 0; from < ranks && posted.ok(); ++from) {
      if (from == me) {
        r.parts[static_cast<size_t>(from)] = mine;
        continue;
      }
      std::byte* into = free_.back();
      free_.pop_back();
      r.parts[static_cast<size_t>(from)] = into;
      posted = post(comm_->receive(into, bytes, from));
    }
  }
  // Whatever was posted stays tracked, so a failure abandons it with the rest.
  in_flight_.push_back(std::move(r));
  if (!posted.ok()) return posted;
  return poll();
}

absl::Status OverlappedReduce::poll() {
  while (!in_flight_.empty()) {
    for (std::unique_ptr<comm::Request>& request : in_flight_.front().requests) {
      absl::StatusOr<bool> done = request->test();
      if (!done.ok()) return done.status();
      if (!*done) return absl::OkStatus();
    }
    if (absl::Status s = complete_oldest(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status OverlappedReduce::drain() {
  while (!in_flight_.empty()) {
    if (absl::Status s = complete_oldest(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status OverlappedReduce::complete_oldest() {
  Reduction& r = in_flight_.front();
  for (std::unique_ptr<comm::Request>& request : r.requests) {
    if (absl::Status s = request->wait(); !s.ok()) return s;
    request.reset();
  }
  r.requests.clear();
  absl::Status added;
  if (r.owner) {
    added = add_(r.chunk, std::vector<const std::byte*>(r.parts.begin(), r.parts.end()));
  }
  for (std::byte* part : r.parts) free_.push_back(part);
  in_flight_.pop_front();
  return added;
}

}  // namespace dsinf::actors
