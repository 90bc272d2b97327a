// Whether a process id names a live process: the one test behind every
// clean-up of files a dead run left (swap directories, checkpoint temporaries).
#pragma once

#include <sys/types.h>

namespace dsinf::util {

// False when no process has `pid`, or when it is a zombie: a killed process
// whose parent died is reparented to pid 1, which in a container often never
// reaps it, so kill(pid, 0) alone would keep its files forever. True when the
// process exists but is not ours to signal (EPERM): its files are left alone.
bool process_alive(pid_t pid);

}  // namespace dsinf::util
