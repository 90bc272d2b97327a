// `dsinf bench comm`: the collectives' bandwidth among the ranks of an MPI job,
// reported as nccl-tests does: algbw = bytes / time and busbw = algbw times
// 2(n-1)/n for all-reduce and (n-1)/n for reduce-scatter and all-gather (the
// bytes each rank's link carries), so figures compare across rank counts.
// Every operation's result is checked against the rank-order sum first.
// --device cuda runs NCCL over device buffers (each rank on the GPU of its
// place on its node); the default runs MPI over host buffers.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/benchmarks.h"
#include "bench/report.h"
#include "kernels/backend.h"
#include "kernels/comm/communicator.h"
#include "kernels/comm/nccl_communicator.h"
#include "memory/util/args.h"
#include "memory/util/format.h"
#include "nlohmann/json.hpp"

namespace dsinf::bench {
namespace {

using kernels::comm::Communicator;
using kernels::comm::partition;
using kernels::comm::Request;

constexpr const char* kName = "comm";
constexpr const char* kUsage = R"(usage: [mpirun -np N] dsinf bench comm [options]

Measures all-reduce, reduce-scatter and all-gather of fp32 buffers among the
ranks of the MPI job the command runs in (alone, it is one rank and nothing
crosses a link). Sizes double from --min-bytes to --max-bytes; each is timed
over --iters operations after 2 warm-up ones, and reported by rank 0 as
nccl-tests reports: time, algbw = bytes / time, busbw = algbw x 2(n-1)/n
(all-reduce) or x (n-1)/n (reduce-scatter, all-gather). Before timing, each
operation's result is checked bit for bit against the sum in rank order
(with --device cuda and more than two ranks, within the rounding of NCCL's
own summation order).

options:
  --device D      cpu: MPI over host buffers (default); cuda: NCCL over device
                  buffers, each rank on GPU <its rank on the node>
  --min-bytes N   smallest buffer (default 4096)
  --max-bytes N   largest buffer (default 64M; K, M, G or KiB, MiB, GiB)
  --iters N       timed operations per size (default 20)
  --json          the table on stderr; the last stdout line of rank 0 is the JSON
)";

struct CommPlan {
  uint64_t min_bytes = 4096;
  uint64_t max_bytes = 64ull << 20;
  int iters = 20;
  bool json = false;
  bool cuda = false;  // NCCL over device buffers
};

enum class Op { kAllReduce, kReduceScatter, kAllGather };
const char* op_name(Op op) {
  return op == Op::kAllReduce       ? "all_reduce"
         : op == Op::kReduceScatter ? "reduce_scatter"
                                    : "all_gather";
}
double bus_factor(Op op, int n) {
  if (n <= 1) return 0.0;
  return (op == Op::kAllReduce ? 2.0 : 1.0) * (n - 1) / n;
}

absl::StatusOr<CommPlan> make_plan(const Args& args) {
  CommPlan plan;
  plan.json = args.flag("--json");
  for (const auto& [key, out] :
       {std::pair{"--min-bytes", &plan.min_bytes}, std::pair{"--max-bytes", &plan.max_bytes}}) {
    if (std::optional<std::string> text = args.text(key)) {
      std::optional<uint64_t> bytes = util::parse_byte_count(*text);
      if (!bytes || *bytes < 4 || *bytes > (uint64_t{1} << 32)) {
        return absl::InvalidArgumentError(
            absl::StrCat(key, " must be a byte count from 4 to 4G (e.g. 64M), got '", *text, "'"));
      }
      *out = *bytes;
    }
  }
  if (plan.min_bytes > plan.max_bytes) {
    return absl::InvalidArgumentError("--min-bytes is more than --max-bytes");
  }
  if (std::optional<std::string> device = args.text("--device")) {
    if (*device != "cpu" && *device != "cuda") {
      return absl::InvalidArgumentError(
          absl::StrCat("--device must be cpu or cuda, got '", *device, "'"));
    }
    plan.cuda = *device == "cuda";
  }
  if (std::optional<std::string> text = args.text("--iters")) {
    const int iters = std::atoi(text->c_str());
    if (iters < 1 || iters > 100000) {
      return absl::InvalidArgumentError(
          absl::StrCat("--iters must be from 1 to 100000, got '", *text, "'"));
    }
    plan.iters = iters;
  }
  return plan;
}

float value(int rank, size_t i) {
  return static_cast<float>(std::sin(0.37 * static_cast<double>(i) + 1.3 * rank));
}

// An operation's buffers: n elements (data) and this rank's part (out, for
// reduce-scatter), in host memory, or on the device (`device` not null) and
// filled and read through copies.
class Buffers {
 public:
  static absl::StatusOr<Buffers> make(kernels::Backend* device, size_t n, size_t part) {
    Buffers b;
    b.device_ = device;
    b.host_.assign(n, 0.0f);
    b.host_out_.assign(std::max<size_t>(part, 1), 0.0f);
    if (device == nullptr) return b;
    for (auto [ptr, bytes] : {std::pair{&b.data_, n * sizeof(float)},
                              std::pair{&b.out_, b.host_out_.size() * sizeof(float)}}) {
      absl::StatusOr<void*> p = device->allocate(bytes);
      if (!p.ok()) return p.status();
      *ptr = static_cast<float*>(*p);
    }
    return b;
  }
  Buffers() = default;
  Buffers(Buffers&& o) noexcept { *this = std::move(o); }
  Buffers& operator=(Buffers&& o) noexcept {
    std::swap(device_, o.device_);
    std::swap(data_, o.data_);
    std::swap(out_, o.out_);
    host_.swap(o.host_);
    host_out_.swap(o.host_out_);
    return *this;
  }
  ~Buffers() {
    if (device_ == nullptr) return;
    if (data_ != nullptr) device_->release(data_);
    if (out_ != nullptr) device_->release(out_);
  }
  float* data() { return device_ ? data_ : host_.data(); }
  float* out() { return device_ ? out_ : host_out_.data(); }
  // The host values into the operation's buffer (complete on return).
  std::vector<float>& host() { return host_; }
  absl::Status upload() {
    if (device_ == nullptr) return absl::OkStatus();
    if (absl::Status s = device_->copy_to_device(data_, host_.data(), host_.size() * sizeof(float),
                                                 kernels::Stream::kCompute);
        !s.ok()) {
      return s;
    }
    return device_->synchronize(kernels::Stream::kCompute);
  }
  // The results into host() and host_out().
  absl::Status download() {
    if (device_ == nullptr) return absl::OkStatus();
    for (auto [dst, src, count] : {std::tuple{host_.data(), data_, host_.size()},
                                   std::tuple{host_out_.data(), out_, host_out_.size()}}) {
      if (absl::Status s =
              device_->copy_to_host(dst, src, count * sizeof(float), kernels::Stream::kCompute);
          !s.ok()) {
        return s;
      }
    }
    return device_->synchronize(kernels::Stream::kCompute);
  }
  const std::vector<float>& host_out() const { return host_out_; }

 private:
  kernels::Backend* device_ = nullptr;
  float* data_ = nullptr;
  float* out_ = nullptr;
  std::vector<float> host_, host_out_;
};

// One operation over `n` elements of the buffers (reduce-scatter writes out).
absl::Status run_once(Communicator& world, Op op, Buffers& b, size_t n) {
  absl::StatusOr<std::unique_ptr<Request>> request =
      op == Op::kAllReduce       ? world.all_reduce(b.data(), n)
      : op == Op::kReduceScatter ? world.reduce_scatter(b.data(), b.out(), n)
                                 : world.all_gather(b.data(), n);
  if (!request.ok()) return request.status();
  return (*request)->wait();
}

// What element i of the operation's result is: every rank's data summed in
// rank order (or the owner's, gathered).
float expected(Op op, int size, size_t n, size_t i) {
  if (op == Op::kAllGather) {
    for (int r = 0; r < size; ++r) {
      const kernels::comm::Part p = partition(n, size, r);
      if (i >= p.offset && i < p.offset + p.count) return value(r, i);
    }
  }
  float want = value(0, i);
  for (int r = 1; r < size; ++r) want += value(r, i);
  return want;
}

// The operation's result against expected(): bit for bit, or (`exact`
// false) within the rounding of an N-term sum in another order.
absl::Status verify(Communicator& world, kernels::Backend* device, bool exact, Op op, size_t n) {
  const int size = world.size(), rank = world.rank();
  const kernels::comm::Part mine = partition(n, size, rank);
  absl::StatusOr<Buffers> b = Buffers::make(device, n, mine.count);
  if (!b.ok()) return b.status();
  for (size_t i = 0; i < n; ++i) b->host()[i] = value(rank, i);
  if (absl::Status s = b->upload(); !s.ok()) return s;
  if (absl::Status s = run_once(world, op, *b, n); !s.ok()) return s;
  if (absl::Status s = b->download(); !s.ok()) return s;
  for (size_t i = 0; i < n; ++i) {
    const bool checked =
        op != Op::kReduceScatter || (i >= mine.offset && i < mine.offset + mine.count);
    if (!checked) continue;
    const float want = expected(op, size, n, i);
    const float got = op == Op::kReduceScatter ? b->host_out()[i - mine.offset] : b->host()[i];
    const bool same = exact ? std::memcmp(&got, &want, sizeof(float)) == 0
                            // |values| <= 1: (N - 1) roundings of sums up to N.
                            : std::fabs(got - want) <= 2.4e-7f * static_cast<float>(size * size);
    if (!same) {
      return absl::InternalError(absl::StrFormat("%s of %d elements: element %d is %g, not %g",
                                                 op_name(op), n, i, got, want));
    }
  }
  return absl::OkStatus();
}

// Seconds per operation on this rank, between barriers.
absl::StatusOr<double> time_op(Communicator& world, kernels::Backend* device, Op op, size_t n,
                               int iters) {
  absl::StatusOr<Buffers> b =
      Buffers::make(device, n, partition(n, world.size(), world.rank()).count);
  if (!b.ok()) return b.status();
  std::fill(b->host().begin(), b->host().end(), 1.0f);
  if (absl::Status s = b->upload(); !s.ok()) return s;
  for (int i = 0; i < 2; ++i) {
    if (absl::Status s = run_once(world, op, *b, n); !s.ok()) return s;
  }
  absl::StatusOr<std::unique_ptr<Request>> barrier = world.barrier();
  if (!barrier.ok()) return barrier.status();
  if (absl::Status s = (*barrier)->wait(); !s.ok()) return s;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) {
    // Host sums stay finite whatever the count; on the device they may grow
    // to infinity, which costs NCCL nothing.
    if (device == nullptr) std::fill(b->host().begin(), b->host().end(), 1.0f);
    if (absl::Status s = run_once(world, op, *b, n); !s.ok()) return s;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return seconds / iters;
}

// With --device cuda: the GPU of this rank's place on its node (its backend,
// for the buffers) and NCCL among the ranks of `host_world`.
struct DeviceWorld {
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<Communicator> nccl;
};
absl::StatusOr<DeviceWorld> device_world(Communicator& host_world) {
  kernels::BackendOptions options;
  options.device_index = kernels::comm::launcher_local_rank();
  DeviceWorld d;
  absl::StatusOr<std::unique_ptr<kernels::Backend>> backend = kernels::make_cuda_backend(options);
  if (!backend.ok()) return backend.status();
  d.backend = *std::move(backend);
  absl::StatusOr<std::unique_ptr<Communicator>> nccl =
      kernels::comm::make_nccl_communicator(host_world, options.device_index);
  if (!nccl.ok()) return nccl.status();
  d.nccl = *std::move(nccl);
  return d;
}

absl::Status run(const CommPlan& plan) {
  absl::StatusOr<std::unique_ptr<Communicator>> world = kernels::comm::make_world_communicator();
  if (!world.ok()) return world.status();
  DeviceWorld device;
  if (plan.cuda) {
    absl::StatusOr<DeviceWorld> d = device_world(**world);
    if (!d.ok()) return d.status();
    device = *std::move(d);
  }
  Communicator& w = plan.cuda ? *device.nccl : **world;
  kernels::Backend* buffers_on = device.backend.get();
  // NCCL sums in its own order: the same bits as rank order for two terms.
  const bool exact = w.sums_in_rank_order() || w.size() <= 2;
  const bool leader = w.rank() == 0;
  std::ostream& out = plan.json ? std::cerr : std::cout;
  if (leader) out << "bench comm: " << w.describe() << "\n";
  TextTable table({"op", "bytes", "time (us)", "algbw (GB/s)", "busbw (GB/s)"});
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (Op op : {Op::kAllReduce, Op::kReduceScatter, Op::kAllGather}) {
    if (absl::Status s = verify(w, buffers_on, exact, op, 1001); !s.ok()) return s;
    for (uint64_t bytes = plan.min_bytes; bytes <= plan.max_bytes; bytes *= 2) {
      const size_t n = bytes / sizeof(float);
      absl::StatusOr<double> seconds = time_op(w, buffers_on, op, n, plan.iters);
      if (!seconds.ok()) return seconds.status();
      const double algbw = static_cast<double>(n * sizeof(float)) / *seconds / 1e9;
      const double busbw = algbw * bus_factor(op, w.size());
      table.add_row({op_name(op), util::format_bytes(n * sizeof(float)),
                     absl::StrFormat("%.1f", *seconds * 1e6), absl::StrFormat("%.3f", algbw),
                     absl::StrFormat("%.3f", busbw)});
      results.push_back({{"op", op_name(op)},
                         {"bytes", n * sizeof(float)},
                         {"time_us", *seconds * 1e6},
                         {"algbw_gbps", algbw},
                         {"busbw_gbps", busbw}});
    }
  }
  if (!leader) return absl::OkStatus();
  out << table.render();
  if (w.size() == 1) out << "one rank: nothing crosses a link (run under mpirun -np N)\n";
  if (plan.json) {
    std::cout << nlohmann::ordered_json{{"ranks", w.size()},
                                        {"communicator", w.describe()},
                                        {"device", plan.cuda ? "cuda" : "cpu"},
                                        {"verified", true},
                                        {"check", exact ? "bit for bit" : "within rounding"},
                                        {"results", results}}
                     .dump()
              << std::endl;
  }
  return absl::OkStatus();
}

}  // namespace

int comm_main(const std::vector<std::string>& args) {
  int exit_code = kExitOk;
  std::optional<CommPlan> plan =
      plan_from_args(kName, kUsage, args, {"--min-bytes", "--max-bytes", "--iters", "--device"},
                     {"--json", "--help"}, make_plan, &exit_code);
  if (!plan) return exit_code;
  const absl::Status status = run(*plan);
  return status.ok() ? kExitOk : report_failure(kName, status);
}

}  // namespace dsinf::bench
