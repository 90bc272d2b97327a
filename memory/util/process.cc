#include "memory/util/process.h"

#include <signal.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <string>

namespace dsinf::util {
namespace {

// The state letter of /proc/<pid>/stat ("pid (comm) S ..."), or 0 when it
// cannot be read. comm may hold spaces and parentheses: the state follows the
// last ')'.
char proc_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return 0;
  const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return 0;
  return stat[close + 2];
}

}  // namespace

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) == -1 && errno == ESRCH) return false;
  const char state = proc_state(pid);
  return state != 'Z' && state != 'X';
}

}  // namespace dsinf::util
