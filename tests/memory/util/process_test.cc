#include "memory/util/process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace dsinf::util {
namespace {

TEST(ProcessAlive, RunningZombieAndReaped) {
  EXPECT_TRUE(process_alive(::getpid()));
  EXPECT_FALSE(process_alive(0));
  EXPECT_FALSE(process_alive(-1));
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipe_fds[1]);
    char c;
    (void)::read(pipe_fds[0], &c, 1);  // runs until the parent closes the pipe
    std::_Exit(0);
  }
  ::close(pipe_fds[0]);
  EXPECT_TRUE(process_alive(child));
  ::close(pipe_fds[1]);
  // Exited, not yet reaped: a zombie, which holds its pid but runs nothing.
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, child, &info, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(process_alive(child));
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(process_alive(child));
}

}  // namespace
}  // namespace dsinf::util
