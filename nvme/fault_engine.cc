// The fault-injecting engine. Each submitted request draws one fault from the
// plan (a fixed schedule first, then the seeded probabilities), keyed by the
// submission index so a seed always gives the same faults in the same order.
//
// Failures that must not touch the disk (EIO, ENOSPC) and delayed completions
// are completed by one completion thread owned by this engine, ordered by due
// time; a callback therefore never runs inside submit(), and the inner
// engine's threads only hand a delayed result over instead of sleeping.
//
// Faults apply to files opened through this engine; requests for other file
// ids go to the inner engine untouched (and are normally rejected there).
// stats() are the inner engine's: a short transfer counts as two requests.
#include "nvme/fault_engine.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "memory/util/check.h"

namespace dsinf::nvme {
namespace {

using Clock = std::chrono::steady_clock;

// Requests accepted but not yet completed to the caller; submit() blocks above
// this so the completion queue stays bounded.
constexpr size_t kMaxOutstandingRequests = 4096;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The fault of one request and the seeded value that parameterises it (the
// split point of a short transfer, the bit to flip).
struct Draw {
  Fault fault = Fault::kNone;
  uint64_t param = 0;
};

class FaultEngineImpl : public FaultEngine {
 public:
  FaultEngineImpl(std::unique_ptr<IoEngine> inner, FaultPlan plan)
      : inner_(std::move(inner)), plan_(std::move(plan)) {
    completer_ = std::thread([this] { run_completions(); });
  }

  ~FaultEngineImpl() override {
    drain();
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    completer_.join();
    // inner_ drains again and closes its files when it goes.
  }

  std::string name() const override { return "fault(" + inner_->name() + ")"; }
  const EngineOptions& options() const override { return inner_->options(); }

  absl::StatusOr<FileId> open_file(const std::string& path, bool create) override {
    absl::StatusOr<FileId> file = inner_->open_file(path, create);
    if (file.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      open_files_.insert(*file);
    }
    return file;
  }

  absl::Status close_file(FileId file) override {
    drain();  // this engine's own pending completions too
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_files_.erase(file);
    }
    return inner_->close_file(file);
  }

  absl::Status register_buffer(std::byte* data, size_t bytes) override {
    return inner_->register_buffer(data, bytes);
  }

  absl::Status submit(const IoRequest& request, IoCallback done) override {
    // Malformed requests and files not opened through this engine are the
    // inner engine's to reject (its status goes back unchanged); they draw no
    // fault and take no place in the schedule.
    if (!validate_request(request).ok() || !is_open(request.file)) {
      return inner_->submit(request, std::move(done));
    }
    const Draw draw = next_draw(request);
    switch (draw.fault) {
      case Fault::kEio:
      case Fault::kEnospc:
        return submit_failure(request, draw.fault, std::move(done));
      case Fault::kShort:
        return submit_short(request, draw.param, std::move(done));
      case Fault::kDelay:
        return submit_delayed(request, std::move(done));
      case Fault::kBitFlip:
        return submit_bit_flip(request, draw.param, std::move(done));
      case Fault::kNone:
        break;
    }
    return forward(request, std::move(done));
  }

  void drain() override {
    {
      std::unique_lock<std::mutex> lock(outstanding_mu_);
      outstanding_cv_.wait(lock, [&] { return outstanding_ == 0; });
    }
    inner_->drain();
  }

  EngineStats stats() const override { return inner_->stats(); }

  FaultCounts counts() const override {
    FaultCounts c;
    for (size_t i = 0; i < 6; ++i) c.injected[i] = injected_[i].load(std::memory_order_relaxed);
    return c;
  }

 private:
  struct Pending {
    IoCallback done;
    IoResult result;
  };

  // Picks this request's fault; faults that do not apply to the operation (or
  // a short transfer of a single page) become kNone and are not counted.
  Draw next_draw(const IoRequest& request) {
    uint64_t n, n_of_op;
    {
      std::lock_guard<std::mutex> lock(mu_);
      n = submitted_++;
      n_of_op = submitted_of_op_[static_cast<int>(request.op)]++;
    }
    const uint64_t h = splitmix64(plan_.seed ^ splitmix64(n));
    Draw draw{Fault::kNone, splitmix64(h)};
    const bool counted = !plan_.schedule_op || *plan_.schedule_op == request.op;
    const uint64_t index = plan_.schedule_op ? n_of_op : n;
    if (counted && index < plan_.schedule.size()) {
      draw.fault = plan_.schedule[index];
    } else if (plan_.schedule_op && !plan_.schedule.empty()) {
      // A schedule for one operation: no random faults besides it.
    } else {
      const double u = static_cast<double>(h >> 11) * 0x1.0p-53;  // [0, 1)
      double cumulative = 0;
      for (size_t f = 1; f < 6; ++f) {
        cumulative += plan_.probability[f];
        if (u < cumulative) {
          draw.fault = static_cast<Fault>(f);
          break;
        }
      }
    }
    const bool read = request.op == IoOp::kRead;
    if ((draw.fault == Fault::kEnospc && read) || (draw.fault == Fault::kBitFlip && !read) ||
        (draw.fault == Fault::kShort && request.bytes < 2 * kDirectIoAlignment)) {
      draw.fault = Fault::kNone;
    }
    return draw;
  }

  bool is_open(FileId file) {
    std::lock_guard<std::mutex> lock(mu_);
    return open_files_.contains(file);
  }

  void count(Fault f) { injected_[static_cast<size_t>(f)].fetch_add(1, std::memory_order_relaxed); }

  // Takes a slot among the outstanding requests (blocking at the bound).
  void begin_request() {
    std::unique_lock<std::mutex> lock(outstanding_mu_);
    outstanding_cv_.wait(lock, [&] { return outstanding_ < kMaxOutstandingRequests; });
    ++outstanding_;
  }

  // Completes a request to its caller and frees its slot.
  void finish(const IoCallback& done, const IoResult& result) {
    done(result);
    std::lock_guard<std::mutex> lock(outstanding_mu_);
    --outstanding_;
    outstanding_cv_.notify_all();
  }

  // Submits to the inner engine; `on_done` runs on the inner engine's thread.
  // If the inner engine rejects the request its status goes back unchanged.
  absl::Status forward(const IoRequest& request, IoCallback on_done) {
    begin_request();
    absl::Status s = inner_->submit(
        request, [this, on_done = std::move(on_done)](const IoResult& r) { finish(on_done, r); });
    if (!s.ok()) abandon_request();
    return s;
  }

  void abandon_request() {
    std::lock_guard<std::mutex> lock(outstanding_mu_);
    --outstanding_;
    outstanding_cv_.notify_all();
  }

  // EIO or ENOSPC without performing the I/O: a failed write must not land.
  absl::Status submit_failure(const IoRequest& request, Fault fault, IoCallback done) {
    const int err = fault == Fault::kEio ? EIO : ENOSPC;
    IoResult result{
        util::errno_status(err, absl::StrCat("offset ", request.offset, " (injected fault)"),
                           direction(request.op)),
        0};
    begin_request();
    count(fault);
    enqueue(Clock::now(), Pending{std::move(done), std::move(result)});
    return absl::OkStatus();
  }

  // One request as two inner requests, an aligned prefix and the rest, both
  // submitted here (never from a callback); the caller sees one result.
  absl::Status submit_short(const IoRequest& request, uint64_t param, IoCallback done) {
    const size_t pages = request.bytes / kDirectIoAlignment;
    const size_t prefix_bytes = (1 + param % (pages - 1)) * kDirectIoAlignment;
    struct Joined {
      std::mutex mu;
      int remaining = 2;
      IoResult result;
      IoCallback done;
    };
    auto joined = std::make_shared<Joined>();
    joined->done = std::move(done);
    // Returns true for the part that completes the request.
    auto part_done = [joined](const absl::Status& status, size_t bytes) {
      std::lock_guard<std::mutex> lock(joined->mu);
      if (!status.ok() && joined->result.status.ok()) joined->result.status = status;
      joined->result.bytes += bytes;
      return --joined->remaining == 0;
    };
    begin_request();
    auto on_part = [this, joined, part_done](const IoResult& r) {
      if (part_done(r.status, r.bytes)) finish(joined->done, joined->result);
    };
    IoRequest head = request;
    head.bytes = prefix_bytes;
    IoRequest tail = request;
    tail.offset += prefix_bytes;
    tail.buffer += prefix_bytes;
    tail.bytes -= prefix_bytes;
    if (absl::Status s = inner_->submit(head, on_part); !s.ok()) {
      abandon_request();
      return s;  // nothing accepted: the rejection goes back unchanged
    }
    count(Fault::kShort);
    if (absl::Status s = inner_->submit(tail, on_part); !s.ok()) {
      // The head is in flight, so the request was accepted: report it through done.
      if (part_done(s, 0)) finish(joined->done, joined->result);
    }
    return absl::OkStatus();
  }

  absl::Status submit_delayed(const IoRequest& request, IoCallback done) {
    const auto delay = std::chrono::microseconds(plan_.delay_us);
    begin_request();
    absl::Status s =
        inner_->submit(request, [this, delay, done = std::move(done)](const IoResult& r) {
          enqueue(Clock::now() + delay, Pending{done, r});
        });
    if (!s.ok()) {
      abandon_request();
      return s;
    }
    count(Fault::kDelay);
    return absl::OkStatus();
  }

  absl::Status submit_bit_flip(const IoRequest& request, uint64_t param, IoCallback done) {
    std::byte* buffer = request.buffer;
    const uint64_t bit = param % (static_cast<uint64_t>(request.bytes) * 8);
    return forward(request, [this, buffer, bit, done = std::move(done)](const IoResult& r) {
      if (r.status.ok()) {
        buffer[bit / 8] ^= std::byte{static_cast<unsigned char>(1u << (bit % 8))};
        count(Fault::kBitFlip);
      }
      done(r);
    });
  }

  void enqueue(Clock::time_point due, Pending pending) {
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      queue_.emplace(std::make_pair(due, next_sequence_++), std::move(pending));
    }
    queue_cv_.notify_one();
  }

  // The completion thread: runs each queued completion once it is due; on
  // shutdown the queue is already empty (the destructor drains first).
  void run_completions() {
    std::unique_lock<std::mutex> lock(queue_mu_);
    for (;;) {
      if (queue_.empty()) {
        if (stopping_) return;
        queue_cv_.wait(lock);
        continue;
      }
      const Clock::time_point due = queue_.begin()->first.first;
      if (Clock::now() < due) {
        queue_cv_.wait_until(lock, due);
        continue;
      }
      Pending pending = std::move(queue_.begin()->second);
      queue_.erase(queue_.begin());
      lock.unlock();
      finish(pending.done, pending.result);
      lock.lock();
    }
  }

  std::unique_ptr<IoEngine> inner_;
  const FaultPlan plan_;

  std::mutex mu_;  // guards submitted_ and open_files_
  uint64_t submitted_ = 0;
  uint64_t submitted_of_op_[2] = {0, 0};  // by IoOp
  std::set<FileId> open_files_;

  std::atomic<uint64_t> injected_[6] = {};

  std::mutex outstanding_mu_;
  std::condition_variable outstanding_cv_;
  size_t outstanding_ = 0;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::map<std::pair<Clock::time_point, uint64_t>, Pending> queue_;  // by (due, sequence)
  uint64_t next_sequence_ = 0;
  bool stopping_ = false;
  std::thread completer_;
};

}  // namespace

std::unique_ptr<FaultEngine> make_fault_engine(std::unique_ptr<IoEngine> inner, FaultPlan plan) {
  DSINF_CHECK_MSG(inner != nullptr, "make_fault_engine needs an inner engine");
  double sum = 0;
  for (size_t f = 1; f < 6; ++f) {
    DSINF_CHECK_MSG(plan.probability[f] >= 0, "fault probabilities must not be negative");
    sum += plan.probability[f];
  }
  DSINF_CHECK_MSG(sum <= 1.0 + 1e-9, "fault probabilities must sum to at most 1");
  return std::make_unique<FaultEngineImpl>(std::move(inner), std::move(plan));
}

}  // namespace dsinf::nvme
