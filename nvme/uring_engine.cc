// The io_uring engine: intra_op_parallelism rings, each owned by one thread
// that both submits and reaps. submit() splits a request into block-sized
// pieces and hands each to the least loaded ring through a bounded queue; the
// ring thread moves queued pieces into a fixed pool of queue_depth slots, turns
// each into one SQE (the slot index is its user_data) and sleeps in the kernel
// until a completion arrives. New work wakes a sleeping ring through an
// eventfd whose read is kept armed in the ring, so nothing polls and nothing
// waits on a timeout. Files and buffers are registered with every ring where
// the kernel allows it; where it refuses, plain fds and buffers serve.
//
// A registered buffer must stay allocated while the engine lives: the kernel
// pinned its pages, and a new allocation at the same address would not be them.
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
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

constexpr int kMaxRetries = 100;      // EAGAIN/EINTR on one piece before giving up
constexpr int kMaxQueueDepth = 4096;  // pieces in flight per ring
constexpr int kMaxRings = 64;
constexpr int kMaxEnterFailures = 1000;  // consecutive failed io_uring_enter calls before aborting
constexpr unsigned kMaxFixedFiles = 256;
constexpr unsigned kMaxFixedBuffers = 1024;
constexpr size_t kMaxFixedBufferBytes = size_t{1} << 30;  // the kernel's limit per buffer
constexpr size_t kMaxSqeBytes = size_t{1} << 30;          // longer pieces go in several SQEs
constexpr unsigned kReapBatch = 64;
constexpr uint64_t kWakeTag = ~uint64_t{0};  // user_data of the armed eventfd read

// A piece on its way to a ring; `file` is its FileId (the registered index).
struct Work {
  Piece piece;
  FileId file = -1;
};

// A piece owned by the ring thread from the moment it leaves the queue until
// it completes; its index in the pool is the user_data of its SQEs.
struct Slot {
  Work work;
  size_t done_bytes = 0;  // transferred so far; a short transfer continues from here
  int retries = 0;
  int buffer_index = -1;  // registered buffer holding the whole piece, or -1
  bool fixed_file = false;
};

struct FixedRegion {
  uintptr_t begin, end;
  int index;
};

// What the rings share with the engine: the file table and the drain count.
struct Shared {
  internal::InflightRequests inflight;
  mutable std::mutex files_mu;
  std::vector<int> fds;  // by FileId; -1 once closed
  std::vector<std::string> paths;

  std::string describe(FileId file, uint64_t offset) const {
    std::lock_guard<std::mutex> lock(files_mu);
    const std::string& path = paths.at(static_cast<size_t>(file));
    return absl::StrCat(path, " at offset ", offset);
  }
};

// A registration for the ring thread to make: a SINGLE_ISSUER ring takes
// io_uring_register calls from its own thread only.
struct Control {
  enum Kind : uint8_t { kFile, kBuffer } kind;
  unsigned index;
  int fd;     // kFile: the file, or -1 to unregister
  iovec iov;  // kBuffer
  bool done = false;
};

class Ring {
 public:
  static absl::StatusOr<std::unique_ptr<Ring>> create(const EngineOptions& options,
                                                      Shared* shared) {
    std::unique_ptr<Ring> ring(new Ring(options, shared));
    // The SQ holds every piece slot plus the eventfd read; the CQ is twice that.
    const unsigned entries = static_cast<unsigned>(options.queue_depth) + 1;
    // As fio does: no IPIs (this thread reaps when it waits), one issuer, and
    // completion work deferred until the thread waits. R_DISABLED lets the ring
    // thread enable the ring and so become its issuer. Older kernels: less.
    const unsigned flag_sets[] = {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
                                      IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
                                  IORING_SETUP_COOP_TASKRUN, 0};
    int rc = -EINVAL;
    for (unsigned flags : flag_sets) {
      io_uring_params params{};
      params.flags = flags;
      rc = io_uring_queue_init_params(entries, &ring->ring_, &params);
      ring->enable_in_thread_ = (flags & IORING_SETUP_R_DISABLED) != 0;
      if (rc != -EINVAL) break;
    }
    if (rc < 0) {
      return absl::UnavailableError(
          absl::StrCat("io_uring_queue_init failed: ", std::strerror(-rc)));
    }
    ring->ring_ready_ = true;
    ring->wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (ring->wake_fd_ < 0) {
      return absl::UnavailableError(absl::StrCat("eventfd failed: ", std::strerror(errno)));
    }
    // Registration only saves work per I/O; without it plain fds and buffers serve.
    ring->files_registered_ = io_uring_register_files_sparse(&ring->ring_, kMaxFixedFiles) == 0;
    ring->buffers_registered_ =
        io_uring_register_buffers_sparse(&ring->ring_, kMaxFixedBuffers) == 0;
    return ring;
  }

  ~Ring() {
    if (thread_.joinable()) {
      stop();
      thread_.join();
    }
    if (ring_ready_) io_uring_queue_exit(&ring_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  // Starts the ring thread; fails if it cannot enable the ring.
  absl::Status start() {
    thread_ = std::thread([this] {
      const int rc = enable_in_thread_ ? enable_ring() : 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        start_errno_ = rc;
      }
      control_cv_.notify_all();
      if (rc == 0) run();
    });
    std::unique_lock<std::mutex> lock(mu_);
    control_cv_.wait(lock, [&] { return start_errno_ >= 0; });
    if (start_errno_ == 0) return absl::OkStatus();
    lock.unlock();
    thread_.join();
    return absl::UnavailableError(
        absl::StrCat("enabling the io_uring ring failed: ", std::strerror(start_errno_)));
  }

  // Only once nothing is in flight (the engine drained): the thread exits
  // after the eventfd read it keeps armed has completed.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    wake();
  }

  // Pieces queued or in flight here: submit() hands new ones to the least loaded ring.
  int load() const { return load_.load(std::memory_order_relaxed); }

  // Queues a piece; blocks while the queue is full.
  void push(Work work) {
    bool wake_ring;
    {
      std::unique_lock<std::mutex> lock(mu_);
      space_cv_.wait(lock, [&] { return queued_ < queue_.size(); });
      queue_[(head_ + queued_) % queue_.size()] = std::move(work);
      ++queued_;
      load_.fetch_add(1, std::memory_order_relaxed);
      wake_ring = waiting_;
      waiting_ = false;
    }
    if (wake_ring) wake();
  }

  void register_file(FileId file, int fd) {
    if (!files_registered_ || static_cast<unsigned>(file) >= kMaxFixedFiles) return;
    Control control{Control::kFile, static_cast<unsigned>(file), fd, {}};
    run_control(&control);
  }
  // Only while no piece of `file` is queued or in flight.
  void unregister_file(FileId file) { register_file(file, -1); }

  void register_buffer(int index, std::byte* data, size_t bytes) {
    if (!buffers_registered_) return;
    Control control{Control::kBuffer, static_cast<unsigned>(index), -1, iovec{data, bytes}};
    run_control(&control);
  }

  void add_stats(EngineStats* stats) const {
    stats->requests += requests_.load(std::memory_order_relaxed);
    stats->pieces += pieces_.load(std::memory_order_relaxed);
    stats->resubmits += resubmits_.load(std::memory_order_relaxed);
    stats->bytes_read += bytes_read_.load(std::memory_order_relaxed);
    stats->bytes_written += bytes_written_.load(std::memory_order_relaxed);
  }

 private:
  Ring(const EngineOptions& options, Shared* shared)
      : options_(options),
        shared_(shared),
        queue_(static_cast<size_t>(options.queue_depth)),
        fixed_files_(kMaxFixedFiles, 0),
        slots_(static_cast<size_t>(options.queue_depth)) {
    free_.reserve(slots_.size());
    for (size_t i = slots_.size(); i-- > 0;) free_.push_back(static_cast<int>(i));
    ready_.reserve(slots_.size());
  }

  void wake() {
    const uint64_t one = 1;
    for (int attempt = 0;; ++attempt) {
      if (::write(wake_fd_, &one, sizeof(one)) == sizeof(one)) return;
      DSINF_CHECK_MSG(errno == EINTR && attempt < kMaxRetries, "eventfd write failed");
    }
  }

  // liburing 2.3 declares io_uring_enable_rings but does not export it.
  int enable_ring() {
    const long rc =
        ::syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
    return rc == 0 ? 0 : errno;
  }

  // Hands a registration to the ring thread and waits until it is made.
  void run_control(Control* control) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      controls_.push_back(control);
    }
    wake();
    std::unique_lock<std::mutex> lock(mu_);
    control_cv_.wait(lock, [&] { return control->done; });
  }

  // On the ring thread. A failed registration only loses the optimization.
  void apply_controls() {
    for (Control* c : applying_) {
      if (c->kind == Control::kFile) {
        const bool fixed = io_uring_register_files_update(&ring_, c->index, &c->fd, 1) == 1;
        std::lock_guard<std::mutex> lock(mu_);
        fixed_files_[c->index] = fixed && c->fd >= 0;
        continue;
      }
      if (io_uring_register_buffers_update_tag(&ring_, c->index, &c->iov, nullptr, 1) != 1) {
        continue;
      }
      const auto begin = reinterpret_cast<uintptr_t>(c->iov.iov_base);
      const FixedRegion region{begin, begin + c->iov.iov_len, static_cast<int>(c->index)};
      std::lock_guard<std::mutex> lock(mu_);
      regions_.insert(first_region_after(begin), region);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (Control* c : applying_) c->done = true;
    }
    applying_.clear();
    control_cv_.notify_all();
  }

  // The ring thread: take queued pieces into free slots, issue them, sleep
  // until something completes (or new work is signalled), handle completions.
  void run() {
    arm_wake();
    int enter_failures = 0;
    for (;;) {
      bool took = false, queued_low = false, stop = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        applying_.swap(controls_);
        // overlap_events false: a batch is reaped completely before the next is taken.
        const bool may_take = options_.overlap_events || free_.size() == slots_.size();
        while (may_take && queued_ > 0 && !free_.empty()) {
          take_locked();
          took = true;
        }
        queued_low = queued_ <= queue_.size() / 2;
        const bool idle_slots =
            !free_.empty() && (options_.overlap_events || free_.size() == slots_.size());
        // Ask submit() for an eventfd wake only when new work could be issued.
        waiting_ = queued_ == 0 && idle_slots;
        stop = stopping_ && queued_ == 0 && free_.size() == slots_.size() && !wake_armed_ &&
               applying_.empty();
      }
      // Submitters blocked on a full queue wake once it is half empty, not per piece.
      if (took && queued_low) space_cv_.notify_all();
      if (!applying_.empty()) apply_controls();
      if (stop) return;
      for (int slot : ready_) {
        prepare(slot);
        if (options_.single_submit) enter(0, &enter_failures);
      }
      ready_.clear();
      enter(1, &enter_failures);
      reap();
    }
  }

  std::vector<FixedRegion>::iterator first_region_after(uintptr_t address) {
    return std::upper_bound(regions_.begin(), regions_.end(), address,
                            [](uintptr_t a, const FixedRegion& r) { return a < r.begin; });
  }

  void take_locked() {
    const int index = free_.back();
    free_.pop_back();
    Slot& slot = slots_[static_cast<size_t>(index)];
    slot.work = std::move(queue_[head_]);
    head_ = (head_ + 1) % queue_.size();
    --queued_;
    slot.done_bytes = 0;
    slot.retries = 0;
    const auto file = static_cast<size_t>(slot.work.file);
    slot.fixed_file = file < fixed_files_.size() && fixed_files_[file];
    slot.buffer_index = -1;
    const auto begin = reinterpret_cast<uintptr_t>(slot.work.piece.buffer);
    auto it = first_region_after(begin);
    if (it != regions_.begin() && begin + slot.work.piece.bytes <= std::prev(it)->end) {
      slot.buffer_index = std::prev(it)->index;
    }
    ready_.push_back(index);
  }

  // Submits what is prepared and waits for `wait_nr` completions. A failure of
  // io_uring_enter itself is transient (EINTR, EAGAIN, EBUSY: the loop reaps
  // and tries again); a persistent one is a broken ring, which aborts.
  void enter(unsigned wait_nr, int* failures) {
    const int rc = io_uring_submit_and_wait(&ring_, wait_nr);
    if (rc >= 0) {
      *failures = 0;
      return;
    }
    DSINF_CHECK_MSG(++*failures < kMaxEnterFailures, "io_uring_enter keeps failing");
    if (rc == -EAGAIN || rc == -EBUSY) std::this_thread::yield();
  }

  // Between two enters at most every slot plus the eventfd read is prepared,
  // and the SQ has room for that many.
  io_uring_sqe* get_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    DSINF_CHECK_MSG(sqe != nullptr, "io_uring submission queue full");
    return sqe;
  }

  void arm_wake() {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof(wake_value_), 0);
    io_uring_sqe_set_data64(sqe, kWakeTag);
    wake_armed_ = true;
  }

  // The one place a piece (or its remainder) becomes an SQE.
  void prepare(int index) {
    Slot& slot = slots_[static_cast<size_t>(index)];
    const Piece& piece = slot.work.piece;
    std::byte* buffer = piece.buffer + slot.done_bytes;
    const auto bytes = static_cast<unsigned>(std::min(piece.bytes - slot.done_bytes, kMaxSqeBytes));
    const uint64_t offset = piece.offset + slot.done_bytes;
    const int fd = slot.fixed_file ? slot.work.file : piece.fd;
    io_uring_sqe* sqe = get_sqe();
    if (piece.op == IoOp::kRead) {
      if (slot.buffer_index >= 0) {
        io_uring_prep_read_fixed(sqe, fd, buffer, bytes, offset, slot.buffer_index);
      } else {
        io_uring_prep_read(sqe, fd, buffer, bytes, offset);
      }
    } else if (slot.buffer_index >= 0) {
      io_uring_prep_write_fixed(sqe, fd, buffer, bytes, offset, slot.buffer_index);
    } else {
      io_uring_prep_write(sqe, fd, buffer, bytes, offset);
    }
    if (slot.fixed_file) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(index));
  }

  void reap() {
    io_uring_cqe* cqes[kReapBatch];
    for (;;) {
      const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, kReapBatch);
      if (n == 0) return;
      for (unsigned i = 0; i < n; ++i) complete(cqes[i]->user_data, cqes[i]->res);
      io_uring_cq_advance(&ring_, n);
    }
  }

  // Handles one cqe->res: done, short (continue), retryable, or failed.
  void complete(uint64_t user_data, int res) {
    if (user_data == kWakeTag) {
      wake_armed_ = false;
      // EAGAIN/EINTR/ECANCELED only mean: arm it again. Anything else repeating would spin.
      if (res < 0 && res != -EAGAIN && res != -EINTR && res != -ECANCELED) {
        DSINF_CHECK_MSG(++wake_failures_ < kMaxRetries, "the eventfd read keeps failing");
      } else {
        wake_failures_ = 0;
      }
      bool stopping;
      {
        std::lock_guard<std::mutex> lock(mu_);
        stopping = stopping_;
      }
      if (!stopping) arm_wake();
      return;
    }
    DSINF_CHECK(user_data < slots_.size());
    const int index = static_cast<int>(user_data);
    Slot& slot = slots_[user_data];
    const Piece& piece = slot.work.piece;
    const uint64_t offset = piece.offset + slot.done_bytes;
    if (res < 0) {
      if ((res == -EAGAIN || res == -EINTR) && ++slot.retries <= kMaxRetries) {
        resubmits_.fetch_add(1, std::memory_order_relaxed);
        ready_.push_back(index);
        return;
      }
      finish(index, util::errno_status(-res, shared_->describe(slot.work.file, offset),
                                       direction(piece.op)));
      return;
    }
    DSINF_CHECK(static_cast<size_t>(res) <= piece.bytes - slot.done_bytes);
    slot.done_bytes += static_cast<size_t>(res);
    if (slot.done_bytes == piece.bytes) {
      finish(index, absl::OkStatus());
      return;
    }
    // A read returning nothing, or stopping off a block boundary (O_DIRECT does
    // that only where the file ends), is past the end of the file.
    if (piece.op == IoOp::kRead && (res == 0 || slot.done_bytes % kDirectIoAlignment != 0)) {
      finish(index, absl::OutOfRangeError(absl::StrCat("read of ",
                                                       shared_->describe(slot.work.file, offset),
                                                       " is past the end of the file")));
      return;
    }
    if (res == 0) {
      finish(index,
             absl::UnavailableError(absl::StrCat(
                 "write of ", shared_->describe(slot.work.file, offset), " transferred 0 bytes")));
      return;
    }
    resubmits_.fetch_add(1, std::memory_order_relaxed);
    ready_.push_back(index);
  }

  void finish(int index, const absl::Status& status) {
    Slot& slot = slots_[static_cast<size_t>(index)];
    std::shared_ptr<internal::RequestTracker> tracker = std::move(slot.work.piece.tracker);
    const IoOp op = slot.work.piece.op;
    const bool last = tracker->piece_done(status, slot.done_bytes);
    pieces_.fetch_add(1, std::memory_order_relaxed);
    if (status.ok()) {
      (op == IoOp::kRead ? bytes_read_ : bytes_written_)
          .fetch_add(slot.done_bytes, std::memory_order_relaxed);
    }
    if (last) requests_.fetch_add(1, std::memory_order_relaxed);
    free_.push_back(index);
    load_.fetch_sub(1, std::memory_order_relaxed);
    if (last) {
      tracker->finish();
      shared_->inflight.remove();
    }
  }

  const EngineOptions options_;
  Shared* const shared_;
  io_uring ring_{};
  bool ring_ready_ = false;
  int wake_fd_ = -1;
  bool enable_in_thread_ = false;  // created disabled: the ring thread enables it
  bool files_registered_ = false, buffers_registered_ = false;
  std::thread thread_;
  std::atomic<int> load_{0};
  std::atomic<uint64_t> requests_{0}, pieces_{0}, resubmits_{0}, bytes_read_{0}, bytes_written_{0};

  // Shared between submit() and the ring thread.
  std::mutex mu_;
  std::condition_variable space_cv_;
  std::vector<Work> queue_;  // circular, queue_depth entries
  size_t head_ = 0, queued_ = 0;
  bool waiting_ = false;  // the ring thread may sleep: push() must write the eventfd
  bool stopping_ = false;
  std::condition_variable control_cv_;
  int start_errno_ = -1;              // set by the ring thread: 0 running, else why not
  std::vector<Control*> controls_;    // registrations waiting for the ring thread
  std::vector<uint8_t> fixed_files_;  // by FileId: registered with this ring
  std::vector<FixedRegion> regions_;  // registered buffers, sorted by begin

  // The ring thread's own.
  std::vector<Slot> slots_;
  std::vector<int> free_;   // indices of free slots
  std::vector<int> ready_;  // slots to issue (new pieces, remainders, retries)
  std::vector<Control*> applying_;
  uint64_t wake_value_ = 0;
  bool wake_armed_ = false;
  int wake_failures_ = 0;
};

class UringEngine : public IoEngine {
 public:
  explicit UringEngine(const EngineOptions& options) : options_(options) {}

  ~UringEngine() override {
    drain();
    for (auto& ring : rings_) ring->stop();
    rings_.clear();  // joins the threads, io_uring_queue_exit, before the files close
    for (int fd : shared_.fds) {
      if (fd >= 0) ::close(fd);
    }
  }

  absl::Status add_rings() {
    for (int i = 0; i < options_.intra_op_parallelism; ++i) {
      absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::create(options_, &shared_);
      if (!ring.ok()) return ring.status();
      rings_.push_back(*std::move(ring));
    }
    for (auto& ring : rings_) {
      if (absl::Status s = ring->start(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  std::string name() const override { return "uring"; }
  const EngineOptions& options() const override { return options_; }

  absl::StatusOr<FileId> open_file(const std::string& path, bool create) override {
    absl::StatusOr<int> fd = internal::open_direct(path, create);
    if (!fd.ok()) return fd.status();
    FileId file;
    {
      std::lock_guard<std::mutex> lock(shared_.files_mu);
      file = static_cast<FileId>(shared_.fds.size());
      shared_.fds.push_back(*fd);
      shared_.paths.push_back(path);
    }
    for (auto& ring : rings_) ring->register_file(file, *fd);
    return file;
  }

  absl::Status close_file(FileId file) override {
    drain();
    int fd;
    {
      std::lock_guard<std::mutex> lock(shared_.files_mu);
      if (file < 0 || static_cast<size_t>(file) >= shared_.fds.size() || shared_.fds[file] < 0) {
        return absl::InvalidArgumentError(absl::StrCat("close of unknown file id ", file));
      }
      fd = shared_.fds[file];
      shared_.fds[file] = -1;
    }
    for (auto& ring : rings_) ring->unregister_file(file);
    if (::close(fd) != 0) {
      return util::errno_status(errno, shared_.describe(file, 0), direction(IoOp::kWrite));
    }
    return absl::OkStatus();
  }

  absl::Status register_buffer(std::byte* data, size_t bytes) override {
    std::lock_guard<std::mutex> lock(buffers_mu_);
    // The kernel takes at most 1 GiB per buffer: a larger region becomes several.
    for (size_t done = 0; data != nullptr && done < bytes; done += kMaxFixedBufferBytes) {
      if (next_buffer_index_ >= static_cast<int>(kMaxFixedBuffers)) break;
      const size_t n = std::min(kMaxFixedBufferBytes, bytes - done);
      for (auto& ring : rings_) ring->register_buffer(next_buffer_index_, data + done, n);
      ++next_buffer_index_;
    }
    return absl::OkStatus();
  }

  absl::Status submit(const IoRequest& request, IoCallback done) override {
    if (absl::Status s = validate_request(request); !s.ok()) return s;
    int fd;
    {
      std::lock_guard<std::mutex> lock(shared_.files_mu);
      if (request.file < 0 || static_cast<size_t>(request.file) >= shared_.fds.size() ||
          shared_.fds[request.file] < 0) {
        return absl::InvalidArgumentError(absl::StrCat("I/O on unknown file id ", request.file));
      }
      fd = shared_.fds[request.file];
    }
    auto tracker = std::make_shared<internal::RequestTracker>(
        std::move(done), internal::piece_count(request.bytes, options_.block_size));
    shared_.inflight.add();
    internal::split_request(request, fd, options_.block_size, tracker, [&](Piece piece) {
      pick_ring().push(Work{std::move(piece), request.file});
    });
    return absl::OkStatus();
  }

  void drain() override { shared_.inflight.wait_zero(); }

  EngineStats stats() const override {
    EngineStats stats;
    for (const auto& ring : rings_) ring->add_stats(&stats);
    return stats;
  }

 private:
  Ring& pick_ring() {
    const size_t n = rings_.size();
    if (n == 1) return *rings_[0];
    const size_t start = next_ring_.fetch_add(1, std::memory_order_relaxed) % n;
    size_t best = start;
    for (size_t i = 1; i < n; ++i) {
      const size_t r = (start + i) % n;
      if (rings_[r]->load() < rings_[best]->load()) best = r;
    }
    return *rings_[best];
  }

  const EngineOptions options_;
  Shared shared_;
  std::vector<std::unique_ptr<Ring>> rings_;
  std::atomic<size_t> next_ring_{0};
  std::mutex buffers_mu_;
  int next_buffer_index_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<IoEngine>> make_uring_engine(const EngineOptions& options) {
  if (options.block_size == 0 || options.block_size % kDirectIoAlignment != 0 ||
      options.queue_depth < 1 || options.queue_depth > kMaxQueueDepth ||
      options.intra_op_parallelism < 1 || options.intra_op_parallelism > kMaxRings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine options: block_size must be a positive multiple of 4096, queue_depth 1 to ",
        kMaxQueueDepth, ", intra_op_parallelism 1 to ", kMaxRings));
  }
  auto engine = std::make_unique<UringEngine>(options);
  if (absl::Status s = engine->add_rings(); !s.ok()) return s;
  return std::unique_ptr<IoEngine>(std::move(engine));
}

}  // namespace dsinf::nvme
