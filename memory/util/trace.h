// A step's timeline, lane by lane (one per resource), for `dsinf bench step`:
// spans recorded only while a capture is on, from any thread, and written as
// Chrome/Perfetto trace JSON (one thread row per lane). Off, a span costs one
// relaxed atomic load.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace dsinf::trace {

enum class Lane : int {
  kCompute = 0,  // forward, backward, recompute
  kCopyIn,       // host -> device (parameter uploads)
  kCopyOut,      // device -> host (gradient visits) and their host accumulation
  kAdam,         // the optimizer's arithmetic
  kNvmeRead,
  kNvmeWrite,
  kWait,  // the model's thread waiting for a chunk
};
inline constexpr int kNumLanes = 7;
const char* lane_name(Lane lane);

struct Span {
  Lane lane;
  const char* name;  // a string literal
  int64_t chunk;     // -1: none
  int64_t begin_ns;  // steady clock
  int64_t end_ns;
};

int64_t now_ns();
bool capturing();
// Starts a capture (clearing what was recorded) / ends it and returns the spans.
void begin_capture();
std::vector<Span> end_capture();
// Records a span when capturing (bounded: at most 1<<20 spans a capture).
void record(Lane lane, const char* name, int64_t chunk, int64_t begin_ns, int64_t end_ns);

// Records [construction, destruction) as a span.
class Scope {
 public:
  Scope(Lane lane, const char* name, int64_t chunk = -1)
      : lane_(lane), name_(name), chunk_(chunk), begin_ns_(capturing() ? now_ns() : -1) {}
  ~Scope() {
    if (begin_ns_ >= 0) record(lane_, name_, chunk_, begin_ns_, now_ns());
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Lane lane_;
  const char* name_;
  int64_t chunk_;
  int64_t begin_ns_;
};

// Chrome trace event JSON ("traceEvents", complete events, microseconds from the
// first span), one named thread per lane.
std::string chrome_trace_json(const std::vector<Span>& spans);

}  // namespace dsinf::trace
