#include "trainer/plan/plan_ranks.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actors/runtime/partition.h"
#include "memory/util/format.h"

namespace dsinf::trainer {

using ojson = nlohmann::ordered_json;

namespace {

struct RankBytes {
  long first = -1, last = -1;  // the chunks the rank owns
  size_t params = 0, grads = 0, optimizer = 0;
};

RankBytes class_bytes(const actors::Placement& p, const std::vector<memory::ChunkLayout>& all,
                      const std::vector<memory::ChunkLayout>& mine, int rank,
                      const std::vector<int>& owners) {
  RankBytes b;
  for (size_t c = 0; c < mine.size(); ++c) {
    if (owners[c] == rank) {
      if (b.first < 0) b.first = static_cast<long>(c);
      b.last = static_cast<long>(c);
    }
    if (!mine[c].remote()) b.params += p.working_bytes(all[c]);
    if (!mine[c].trainable()) continue;
    b.grads += mine[c].bytes();
    b.optimizer += (p.master_is_working_copy() ? 2 : 3) * mine[c].bytes();
  }
  return b;
}

}  // namespace

absl::StatusOr<ojson> plan_ranks(const actors::Placement& placement,
                                 const actors::MemoryBudgets& budgets,
                                 const std::vector<memory::ChunkLayout>& layouts,
                                 size_t activation_bytes, const actors::ExchangeStaging& exchange,
                                 int world, int stage, std::ostream& out) {
  const std::vector<int> owners = actors::chunk_owners(layouts, world);
  const bool partition_params = stage == 3;
  out << absl::StrFormat("%d ranks, zero stage %d: what each rank holds\n", world, stage);
  out << absl::StrFormat(
      "  host staging of each rank's exchanges: %d buffers of %s (send, receive%s%s) = %s\n",
      exchange.fixed + exchange.in_flight, util::format_bytes(exchange.buffer_bytes),
      exchange.fixed > 2 ? ", earlier visits of a chunk visited twice" : "",
      exchange.in_flight > 0
          ? absl::StrFormat(", %d visits in flight: overlap_comm, reduce_bucket_size",
                            exchange.in_flight)
          : std::string(),
      util::format_bytes(exchange.bytes()));
  if (exchange.device_bytes > 0) {
    out << absl::StrFormat(
        "  and on the device, an area of %s that gradient parts from other ranks are added from\n",
        util::format_bytes(exchange.device_bytes));
  }
  ojson ranks = ojson::array();
  for (int r = 0; r < world; ++r) {
    const std::vector<memory::ChunkLayout> mine =
        actors::rank_layouts(layouts, r, world, stage, partition_params);
    absl::StatusOr<actors::MemoryPlan> plan =
        actors::plan_memory(placement, budgets, mine, activation_bytes, exchange);
    if (!plan.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", r, ": ", plan.status().message()));
    }
    const RankBytes b = class_bytes(placement, layouts, mine, r, owners);
    const size_t device = plan->device_bytes;
    out << absl::StrFormat(
        "  rank %d: chunks %s | parameters %s, gradients %s, optimizer %s | device %s%s, host "
        "%s, nvme %s\n",
        r, b.first < 0 ? std::string("none") : absl::StrFormat("%d-%d", b.first, b.last),
        util::format_bytes(b.params), util::format_bytes(b.grads), util::format_bytes(b.optimizer),
        util::format_bytes(device),
        plan->slots > 0 ? absl::StrFormat(" (%d parameter slots)", plan->slots) : std::string(),
        util::format_bytes(plan->host_bytes),
        util::format_bytes(plan->nvme_bytes));
    ranks.push_back({{"rank", r},
                     {"chunks", b.first < 0 ? ojson(nullptr) : ojson::array({b.first, b.last})},
                     {"param_bytes", b.params},
                     {"grad_bytes", b.grads},
                     {"optimizer_bytes", b.optimizer},
                     {"device_bytes", device},
                     {"parameter_slots", plan->slots},
                     {"host_bytes", plan->host_bytes},
                     {"exchange_bytes", plan->exchange_bytes},
                     {"nvme_bytes", plan->nvme_bytes}});
  }
  return ranks;
}

}  // namespace dsinf::trainer
