#include "memory/util/trace.h"

#include <algorithm>
#include <mutex>
#include <sstream>

namespace dsinf::trace {
namespace {

constexpr size_t kMaxSpans = size_t{1} << 20;
std::atomic<bool> g_capturing{false};
std::mutex g_mu;
std::vector<Span>* g_spans = new std::vector<Span>();  // never freed: used until exit

}  // namespace

const char* lane_name(Lane lane) {
  switch (lane) {
    case Lane::kCompute:
      return "compute";
    case Lane::kCopyIn:
      return "copy in (host->device)";
    case Lane::kCopyOut:
      return "copy out (device->host)";
    case Lane::kAdam:
      return "cpu adam";
    case Lane::kNvmeRead:
      return "nvme read";
    case Lane::kNvmeWrite:
      return "nvme write";
    case Lane::kWait:
      return "model waits for a chunk";
  }
  return "?";
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool capturing() { return g_capturing.load(std::memory_order_relaxed); }

void begin_capture() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_spans->clear();
  g_capturing.store(true, std::memory_order_relaxed);
}

std::vector<Span> end_capture() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_capturing.store(false, std::memory_order_relaxed);
  std::vector<Span> out;
  out.swap(*g_spans);
  return out;
}

void record(Lane lane, const char* name, int64_t chunk, int64_t begin_ns, int64_t end_ns) {
  if (!capturing()) return;
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_spans->size() < kMaxSpans) g_spans->push_back({lane, name, chunk, begin_ns, end_ns});
}

std::string chrome_trace_json(const std::vector<Span>& spans) {
  int64_t origin = spans.empty() ? 0 : spans.front().begin_ns;
  for (const Span& s : spans) origin = std::min(origin, s.begin_ns);
  std::ostringstream out;
  out << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  for (int lane = 0; lane < kNumLanes; ++lane) {
    out << "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":" << lane
        << ",\"args\":{\"name\":\"" << lane_name(static_cast<Lane>(lane)) << "\"}},\n";
  }
  for (size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    out << "{\"name\":\"" << s.name
        << "\",\"ph\":\"X\",\"pid\":1,\"tid\":" << static_cast<int>(s.lane)
        << ",\"ts\":" << (s.begin_ns - origin) / 1000.0
        << ",\"dur\":" << std::max<int64_t>(s.end_ns - s.begin_ns, 0) / 1000.0;
    if (s.chunk >= 0) out << ",\"args\":{\"chunk\":" << s.chunk << "}";
    out << "}" << (i + 1 < spans.size() ? ",\n" : "\n");
  }
  out << "]}\n";
  return out.str();
}

}  // namespace dsinf::trace
