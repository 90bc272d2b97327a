// The TCP rendezvous of a torchrun-style launch (rendezvous.h): a star around
// rank 0, one connection per other rank. A connection opens with a hello
// (magic, version, rank, world size) that rank 0 checks and answers; then
// every message is its length (8 bytes) and its bytes.
#include "kernels/comm/rendezvous.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace dsinf::kernels::comm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMagic = 0x44534942;  // "DSIB"
constexpr uint32_t kVersion = 1;

struct Hello {
  uint32_t magic = kMagic;
  uint32_t version = kVersion;
  uint32_t rank = 0;
  uint32_t world = 0;
};

absl::Status errno_error(const std::string& what, int error) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(error)));
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd_ = o.release();
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) (void)::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Whole transfers; a peer that closed, or sent nothing within the socket's
// timeout, is an error naming it.
absl::Status send_all(int fd, const void* data, size_t bytes, const std::string& peer) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::send(fd, p, bytes, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(absl::StrCat("rendezvous: sending to ", peer), errno);
    p += n;
    bytes -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status receive_all(int fd, void* data, size_t bytes, const std::string& peer) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::recv(fd, p, bytes, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return absl::DeadlineExceededError(
          absl::StrCat("rendezvous: nothing from ", peer, " within the timeout"));
    }
    if (n < 0) return errno_error(absl::StrCat("rendezvous: receiving from ", peer), errno);
    if (n == 0) {
      return absl::UnavailableError(
          absl::StrCat("rendezvous: ", peer, " closed its connection (it failed or stopped)"));
    }
    p += n;
    bytes -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status send_message(int fd, const void* data, size_t bytes, const std::string& peer) {
  const uint64_t length = bytes;
  if (absl::Status s = send_all(fd, &length, sizeof(length), peer); !s.ok()) return s;
  return send_all(fd, data, bytes, peer);
}

absl::Status receive_message(int fd, void* data, size_t bytes, const std::string& peer) {
  uint64_t length = 0;
  if (absl::Status s = receive_all(fd, &length, sizeof(length), peer); !s.ok()) return s;
  if (length != bytes) {
    // The stream is out of step: closed, so the peer's wait ends too.
    (void)::shutdown(fd, SHUT_RDWR);
    return absl::InternalError(absl::StrCat("rendezvous: ", peer, " sent ", length,
                                            " bytes where this rank expects ", bytes,
                                            " (the ranks run different operations)"));
  }
  return receive_all(fd, data, bytes, peer);
}

absl::Status set_timeout(int fd, double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  for (int option : {SO_RCVTIMEO, SO_SNDTIMEO}) {
    if (::setsockopt(fd, SOL_SOCKET, option, &tv, sizeof(tv)) != 0) {
      return errno_error("rendezvous: setsockopt", errno);
    }
  }
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return absl::OkStatus();
}

std::string rank_name(int r) { return absl::StrCat("rank ", r); }

class RendezvousCommunicator final : public Communicator {
 public:
  RendezvousCommunicator(const TorchrunEnv& env, std::vector<Fd> peers)
      : env_(env), peers_(std::move(peers)) {}

  int rank() const override { return env_.rank; }
  int size() const override { return env_.world; }
  std::string describe() const override {
    return absl::StrCat("tcp rendezvous ", env_.master_addr, ":", env_.master_port, ", rank ",
                        env_.rank, " of ", env_.world);
  }

  absl::StatusOr<std::unique_ptr<Request>> broadcast(void* data, size_t bytes, int root) override {
    if (root < 0 || root >= size()) return absl::InvalidArgumentError("broadcast: root is not a rank");
    return done(broadcast_now(data, bytes, root));
  }
  absl::StatusOr<std::unique_ptr<Request>> all_gather_bytes(const void* in, size_t bytes,
                                                            void* out) override {
    return done(all_gather_now(in, bytes, out));
  }
  absl::StatusOr<std::unique_ptr<Request>> barrier() override {
    std::vector<char> all(static_cast<size_t>(size()));
    const char mine = 1;
    return done(all_gather_now(&mine, 1, all.data()));
  }
  absl::StatusOr<std::unique_ptr<Request>> all_reduce(float*, size_t) override {
    return unsupported("all_reduce");
  }
  absl::StatusOr<std::unique_ptr<Request>> reduce_scatter(const float*, float*, size_t) override {
    return unsupported("reduce_scatter");
  }
  absl::StatusOr<std::unique_ptr<Request>> all_gather(float*, size_t) override {
    return unsupported("all_gather");
  }
  absl::StatusOr<std::unique_ptr<Request>> send(const void*, size_t, int) override {
    return unsupported("send");
  }
  absl::StatusOr<std::unique_ptr<Request>> receive(void*, size_t, int) override {
    return unsupported("receive");
  }
  // The other ranks' next operation fails on the closed connections; the
  // launcher (torchrun) ends them when this process exits non-zero.
  void abort(int) override {
    for (Fd& fd : peers_) fd.reset();
  }

 private:
  class Done final : public Request {
   public:
    explicit Done(absl::Status s) : status_(std::move(s)) {}
    absl::Status wait() override { return status_; }
    absl::StatusOr<bool> test() override { return true; }

   private:
    absl::Status status_;
  };
  static absl::StatusOr<std::unique_ptr<Request>> done(absl::Status s) {
    return std::unique_ptr<Request>(std::make_unique<Done>(std::move(s)));
  }
  static absl::StatusOr<std::unique_ptr<Request>> unsupported(const char* what) {
    return absl::UnimplementedError(absl::StrCat(
        what, ": the rendezvous carries NCCL's bootstrap only (broadcast, all_gather_bytes, "
              "barrier)"));
  }
  int fd_of(int r) const { return peers_[static_cast<size_t>(r)].get(); }

  absl::Status broadcast_now(void* data, size_t bytes, int root) {
    if (rank() != 0) {
      if (rank() == root) return send_message(fd_of(0), data, bytes, rank_name(0));
      return receive_message(fd_of(0), data, bytes, rank_name(0));
    }
    if (root != 0) {
      if (absl::Status s = receive_message(fd_of(root), data, bytes, rank_name(root)); !s.ok()) {
        return s;
      }
    }
    for (int r = 1; r < size(); ++r) {
      if (r == root) continue;
      if (absl::Status s = send_message(fd_of(r), data, bytes, rank_name(r)); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status all_gather_now(const void* in, size_t bytes, void* out) {
    const size_t total = bytes * static_cast<size_t>(size());
    char* all = static_cast<char*>(out);
    if (rank() != 0) {
      if (absl::Status s = send_message(fd_of(0), in, bytes, rank_name(0)); !s.ok()) return s;
      return receive_message(fd_of(0), out, total, rank_name(0));
    }
    if (bytes > 0 && in != out) std::memmove(all, in, bytes);
    for (int r = 1; r < size(); ++r) {
      if (absl::Status s = receive_message(fd_of(r), all + r * bytes, bytes, rank_name(r));
          !s.ok()) {
        return s;
      }
    }
    for (int r = 1; r < size(); ++r) {
      if (absl::Status s = send_message(fd_of(r), out, total, rank_name(r)); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  TorchrunEnv env_;
  std::vector<Fd> peers_;  // rank 0: one per rank (its own empty); others: rank 0's at [0]
};

double seconds_left(Clock::time_point deadline) {
  return std::chrono::duration<double>(deadline - Clock::now()).count();
}

absl::StatusOr<Fd> listen_on(int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int e = ::getaddrinfo(nullptr, service.c_str(), &hints, &found); e != 0) {
    return absl::UnavailableError(absl::StrCat("rendezvous: port ", port, ": ", gai_strerror(e)));
  }
  absl::Status last = absl::UnavailableError(absl::StrCat("rendezvous: port ", port, ": no address"));
  Fd listener;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (fd.get() < 0) continue;
    const int one = 1;
    (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd.get(), 128) != 0) {
      last = errno_error(absl::StrCat("rendezvous: listening on MASTER_PORT ", port), errno);
      continue;
    }
    listener = std::move(fd);
    break;
  }
  ::freeaddrinfo(found);
  if (listener.get() < 0) return last;
  return listener;
}

// Rank 0: every other rank's connection, checked.
absl::StatusOr<std::vector<Fd>> accept_ranks(const TorchrunEnv& env, double timeout_s) {
  absl::StatusOr<Fd> listener = listen_on(env.master_port);
  if (!listener.ok()) return listener.status();
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(timeout_s));
  std::vector<Fd> peers(static_cast<size_t>(env.world));
  int arrived = 0;
  while (arrived < env.world - 1) {
    const double left = seconds_left(deadline);
    pollfd p{listener->get(), POLLIN, 0};
    const int ready = left > 0 ? ::poll(&p, 1, static_cast<int>(left * 1000) + 1) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return errno_error("rendezvous: poll", errno);
    if (ready == 0) {
      return absl::DeadlineExceededError(absl::StrCat(
          "rendezvous on MASTER_PORT ", env.master_port, ": ", arrived, " of the ",
          env.world - 1, " other ranks (WORLD_SIZE=", env.world, ") connected within ",
          timeout_s, " s"));
    }
    Fd fd(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (fd.get() < 0) continue;  // the peer went away already
    // A rank says hello at once; a silent connection is dropped after a while.
    if (absl::Status s = set_timeout(fd.get(), std::clamp(seconds_left(deadline), 1.0, 10.0));
        !s.ok()) {
      return s;
    }
    Hello hello;
    if (!receive_all(fd.get(), &hello, sizeof(hello), "a connecting rank").ok() ||
        hello.magic != kMagic || hello.version != kVersion) {
      continue;  // not a dsinf rank of this version: ignored
    }
    if (static_cast<int>(hello.world) != env.world) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rendezvous: rank ", hello.rank, " says WORLD_SIZE=", hello.world, ", rank 0 has ",
          env.world, " (every rank must be told the same WORLD_SIZE)"));
    }
    if (hello.rank == 0 || hello.rank >= hello.world || peers[hello.rank].get() >= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rendezvous: two processes say RANK=", hello.rank, " (each rank must be unique)"));
    }
    if (absl::Status s = set_timeout(fd.get(), timeout_s); !s.ok()) return s;
    peers[hello.rank] = std::move(fd);
    ++arrived;
  }
  for (int r = 1; r < env.world; ++r) {
    const Hello ack{kMagic, kVersion, 0, static_cast<uint32_t>(env.world)};
    if (absl::Status s = send_all(peers[r].get(), &ack, sizeof(ack), rank_name(r)); !s.ok()) {
      return s;
    }
  }
  return peers;
}

// Rank r > 0: a connection to rank 0, retried until it listens.
absl::StatusOr<Fd> connect_to_rank0(const TorchrunEnv& env, double timeout_s) {
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(timeout_s));
  const std::string where = absl::StrCat(env.master_addr, ":", env.master_port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int e = ::getaddrinfo(env.master_addr.c_str(), std::to_string(env.master_port).c_str(),
                                  &hints, &found);
      e != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MASTER_ADDR=", env.master_addr, ": ", gai_strerror(e)));
  }
  int last_errno = 0;
  Fd fd;
  while (fd.get() < 0) {
    for (addrinfo* a = found; a != nullptr && fd.get() < 0; a = a->ai_next) {
      Fd s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
      if (s.get() < 0) continue;
      if (::connect(s.get(), a->ai_addr, a->ai_addrlen) == 0) {
        fd = std::move(s);
      } else {
        last_errno = errno;
      }
    }
    if (fd.get() >= 0) break;
    if (seconds_left(deadline) <= 0) {
      ::freeaddrinfo(found);
      return absl::DeadlineExceededError(
          absl::StrCat("rendezvous: rank 0 did not answer at MASTER_ADDR:MASTER_PORT ", where,
                       " within ", timeout_s, " s (last: ", std::strerror(last_errno), ")"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::freeaddrinfo(found);
  if (absl::Status s = set_timeout(fd.get(), timeout_s); !s.ok()) return s;
  const Hello hello{kMagic, kVersion, static_cast<uint32_t>(env.rank),
                    static_cast<uint32_t>(env.world)};
  if (absl::Status s = send_all(fd.get(), &hello, sizeof(hello), rank_name(0)); !s.ok()) return s;
  Hello ack;
  if (absl::Status s = receive_all(fd.get(), &ack, sizeof(ack), rank_name(0)); !s.ok()) return s;
  if (ack.magic != kMagic || ack.version != kVersion ||
      static_cast<int>(ack.world) != env.world) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous: ", where, " is not rank 0 of this dsinf launch"));
  }
  return fd;
}

absl::StatusOr<int> env_int(const char* name, int least, int most) {
  const char* text = std::getenv(name);
  if (text == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " is not set (a torchrun-style launch needs RANK, WORLD_SIZE, "
                           "MASTER_ADDR and MASTER_PORT)"));
  }
  int value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < least || value > most) {
    return absl::InvalidArgumentError(absl::StrCat(name, "=", text, ": expected an integer from ",
                                                   least, " to ", most));
  }
  return value;
}

}  // namespace

absl::StatusOr<std::optional<TorchrunEnv>> torchrun_env() {
  if (std::getenv("WORLD_SIZE") == nullptr) return std::nullopt;
  TorchrunEnv env;
  absl::StatusOr<int> world = env_int("WORLD_SIZE", 1, 1 << 20);
  if (!world.ok()) return world.status();
  if (*world == 1) return std::nullopt;
  env.world = *world;
  absl::StatusOr<int> rank = env_int("RANK", 0, env.world - 1);
  if (!rank.ok()) return rank.status();
  env.rank = *rank;
  if (std::getenv("LOCAL_RANK") != nullptr) {
    absl::StatusOr<int> local = env_int("LOCAL_RANK", 0, env.world - 1);
    if (!local.ok()) return local.status();
    env.local_rank = *local;
  }
  const char* addr = std::getenv("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0') {
    return absl::InvalidArgumentError(
        "MASTER_ADDR is not set (a torchrun-style launch needs RANK, WORLD_SIZE, MASTER_ADDR and "
        "MASTER_PORT)");
  }
  env.master_addr = addr;
  absl::StatusOr<int> port = env_int("MASTER_PORT", 1, 65535);
  if (!port.ok()) return port.status();
  env.master_port = *port;
  if (std::getenv("DSINF_RENDEZVOUS_TIMEOUT") != nullptr) {
    absl::StatusOr<int> timeout = env_int("DSINF_RENDEZVOUS_TIMEOUT", 1, 86400);
    if (!timeout.ok()) return timeout.status();
    env.timeout_s = *timeout;
  }
  return env;
}

absl::StatusOr<std::unique_ptr<Communicator>> make_rendezvous(const TorchrunEnv& env) {
  const double timeout_s = env.timeout_s;
  std::vector<Fd> peers;
  if (env.rank == 0) {
    absl::StatusOr<std::vector<Fd>> accepted = accept_ranks(env, timeout_s);
    if (!accepted.ok()) return accepted.status();
    peers = *std::move(accepted);
  } else {
    absl::StatusOr<Fd> fd = connect_to_rank0(env, timeout_s);
    if (!fd.ok()) return fd.status();
    peers.push_back(*std::move(fd));
  }
  return std::unique_ptr<Communicator>(
      std::make_unique<RendezvousCommunicator>(env, std::move(peers)));
}

}  // namespace dsinf::kernels::comm
