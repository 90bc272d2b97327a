// Ctrl-C during a benchmark: the first SIGINT or SIGTERM only sets a flag that
// the measurement loops poll, so they drain the engine and remove their scratch
// files; a second signal takes the default action and ends the process.
#pragma once

#include <csignal>

namespace dsinf::bench {

class InterruptGuard {
 public:
  InterruptGuard();   // installs the handlers and clears the flag
  ~InterruptGuard();  // restores the previous handlers
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
};

bool interrupted();

}  // namespace dsinf::bench
