#include "memory/residency.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "memory/util/check.h"

namespace dsinf::memory {
namespace {

size_t index(Residency state) { return static_cast<size_t>(state); }

}  // namespace

const char* residency_name(Residency state) {
  switch (state) {
    case Residency::kAbsent:
      return "absent";
    case Residency::kOnNvme:
      return "on_nvme";
    case Residency::kReading:
      return "reading";
    case Residency::kOnHost:
      return "on_host";
    case Residency::kUploading:
      return "uploading";
    case Residency::kOnDevice:
      return "on_device";
    case Residency::kDownloading:
      return "downloading";
    case Residency::kWriting:
      return "writing";
  }
  return "invalid";
}

bool is_legal(Residency from, Residency to) {
  using R = Residency;
  switch (from) {
    case R::kAbsent:  // a copy made on the host or device, or found on NVMe at start
      return to == R::kOnHost || to == R::kOnDevice || to == R::kOnNvme;
    case R::kOnNvme:
      return to == R::kReading || to == R::kAbsent;
    case R::kReading:
      return to == R::kOnHost || to == R::kOnNvme;  // done, or failed
    case R::kOnHost:
      return to == R::kUploading || to == R::kWriting || to == R::kAbsent;
    case R::kUploading:
      return to == R::kOnDevice;
    case R::kOnDevice:
      return to == R::kDownloading || to == R::kAbsent;
    case R::kDownloading:
      return to == R::kOnHost;
    case R::kWriting:
      return to == R::kOnNvme || to == R::kOnHost;  // done, or failed
  }
  return false;
}

ResidencyTable::ResidencyTable(size_t entries) : states_(entries) {
  for (auto& state : states_) state.store(Residency::kAbsent, std::memory_order_relaxed);
}

ResidencyTable::ResidencyTable(std::vector<std::string> names) : ResidencyTable(names.size()) {
  names_ = std::move(names);
}

absl::Status ResidencyTable::transition(size_t id, Residency from, Residency to) {
  DSINF_CHECK_MSG(id < states_.size(), "residency id out of range");
  if (!is_legal(from, to)) {
    return absl::FailedPreconditionError(
        absl::StrCat(entry_label(id), ": illegal residency edge ", residency_name(from), " -> ",
                     residency_name(to), " (state is ", residency_name(state(id)), ")"));
  }
  // acq_rel: the thread that wins an edge sees the data written by the thread
  // that made the previous one (e.g. the reader's bytes before kOnHost).
  Residency actual = from;
  if (!states_[id].compare_exchange_strong(actual, to, std::memory_order_acq_rel)) {
    return absl::FailedPreconditionError(absl::StrCat(
        entry_label(id), ": residency is ", residency_name(actual), ", not ", residency_name(from),
        ", for edge ", residency_name(from), " -> ", residency_name(to)));
  }
  edge_counts_[index(from)][index(to)].fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

Residency ResidencyTable::state(size_t id) const {
  DSINF_CHECK_MSG(id < states_.size(), "residency id out of range");
  return states_[id].load(std::memory_order_acquire);
}

uint64_t ResidencyTable::count(Residency from, Residency to) const {
  return edge_counts_[index(from)][index(to)].load(std::memory_order_relaxed);
}

std::string ResidencyTable::entry_label(size_t id) const {
  if (names_.empty() || names_[id].empty()) return absl::StrCat("entry ", id);
  return absl::StrCat("entry ", id, " (", names_[id], ")");
}

}  // namespace dsinf::memory
