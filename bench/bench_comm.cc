// `dsinf bench comm`: the collectives' bandwidth among the ranks of an MPI job,
// reported as nccl-tests does: algbw = bytes / time and busbw = algbw times
// 2(n-1)/n for all-reduce and (n-1)/n for reduce-scatter and all-gather (the
// bytes each rank's link carries), so figures compare across rank counts.
// Every operation's result is checked against the rank-order sum first.
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
#include "kernels/comm/communicator.h"
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
operation's result is checked bit for bit against the sum in rank order.

options:
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
};

enum class Op { kAllReduce, kReduceScatter, kAllGather };
const char* op_name(Op op) {
  return op == Op::kAllReduce ? "all_reduce" : op == Op::kReduceScatter ? "reduce_scatter"
                                                                         : "all_gather";
}
double bus_factor(Op op, int n) {
  if (n <= 1) return 0.0;
  return (op == Op::kAllReduce ? 2.0 : 1.0) * (n - 1) / n;
}

absl::StatusOr<CommPlan> make_plan(const Args& args) {
  CommPlan plan;
  plan.json = args.flag("--json");
  for (const auto& [key, out] : {std::pair{"--min-bytes", &plan.min_bytes},
                                 std::pair{"--max-bytes", &plan.max_bytes}}) {
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

// One operation over `n` elements of `buffer` (reduce-scatter writes `out`).
absl::Status run_once(Communicator& world, Op op, std::vector<float>& buffer,
                      std::vector<float>& out, size_t n) {
  absl::StatusOr<std::unique_ptr<Request>> request =
      op == Op::kAllReduce       ? world.all_reduce(buffer.data(), n)
      : op == Op::kReduceScatter ? world.reduce_scatter(buffer.data(), out.data(), n)
                                 : world.all_gather(buffer.data(), n);
  if (!request.ok()) return request.status();
  return (*request)->wait();
}

// The operation's result against every rank's data summed in rank order.
absl::Status verify(Communicator& world, Op op, size_t n) {
  const int size = world.size(), rank = world.rank();
  std::vector<float> buffer(n), out(partition(n, size, rank).count);
  for (size_t i = 0; i < n; ++i) buffer[i] = value(rank, i);
  if (absl::Status s = run_once(world, op, buffer, out, n); !s.ok()) return s;
  for (size_t i = 0; i < n; ++i) {
    float want = value(0, i);
    if (op == Op::kAllGather) {
      for (int r = 0; r < size; ++r) {
        const kernels::comm::Part p = partition(n, size, r);
        if (i >= p.offset && i < p.offset + p.count) want = value(r, i);
      }
    } else {
      for (int r = 1; r < size; ++r) want += value(r, i);
    }
    const kernels::comm::Part mine = partition(n, size, rank);
    const bool checked = op != Op::kReduceScatter || (i >= mine.offset && i < mine.offset + mine.count);
    const float got = op == Op::kReduceScatter && checked ? out[i - mine.offset] : buffer[i];
    if (checked && std::memcmp(&got, &want, sizeof(float)) != 0) {
      return absl::InternalError(absl::StrFormat("%s of %d elements: element %d is %g, not %g",
                                                 op_name(op), n, i, got, want));
    }
  }
  return absl::OkStatus();
}

// Seconds per operation on this rank, between barriers.
absl::StatusOr<double> time_op(Communicator& world, Op op, size_t n, int iters) {
  std::vector<float> buffer(n, 1.0f), out(partition(n, world.size(), world.rank()).count);
  for (int i = 0; i < 2; ++i) {
    if (absl::Status s = run_once(world, op, buffer, out, n); !s.ok()) return s;
  }
  absl::StatusOr<std::unique_ptr<Request>> barrier = world.barrier();
  if (!barrier.ok()) return barrier.status();
  if (absl::Status s = (*barrier)->wait(); !s.ok()) return s;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) {
    std::fill(buffer.begin(), buffer.end(), 1.0f);  // sums stay finite whatever the count
    if (absl::Status s = run_once(world, op, buffer, out, n); !s.ok()) return s;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return seconds / iters;
}

absl::Status run(const CommPlan& plan) {
  absl::StatusOr<std::unique_ptr<Communicator>> world = kernels::comm::make_world_communicator();
  if (!world.ok()) return world.status();
  Communicator& w = **world;
  const bool leader = w.rank() == 0;
  std::ostream& out = plan.json ? std::cerr : std::cout;
  if (leader) out << "bench comm: " << w.describe() << "\n";
  TextTable table({"op", "bytes", "time (us)", "algbw (GB/s)", "busbw (GB/s)"});
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (Op op : {Op::kAllReduce, Op::kReduceScatter, Op::kAllGather}) {
    if (absl::Status s = verify(w, op, 1001); !s.ok()) return s;
    for (uint64_t bytes = plan.min_bytes; bytes <= plan.max_bytes; bytes *= 2) {
      const size_t n = bytes / sizeof(float);
      absl::StatusOr<double> seconds = time_op(w, op, n, plan.iters);
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
                                        {"verified", true},
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
      plan_from_args(kName, kUsage, args, {"--min-bytes", "--max-bytes", "--iters"},
                     {"--json", "--help"}, make_plan, &exit_code);
  if (!plan) return exit_code;
  const absl::Status status = run(*plan);
  return status.ok() ? kExitOk : report_failure(kName, status);
}

}  // namespace dsinf::bench
