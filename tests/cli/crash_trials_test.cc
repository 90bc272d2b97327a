// The short crash trials of CI: scripts/crash-trials.sh with 3 trials per
// placement (in memory, ZeRO-3 on NVMe, LoRA over an NVMe base, and a 2-rank
// ZeRO-3 NVMe job where mpirun is installed): every trial killed with SIGKILL
// at random moments and restarted ends with the uninterrupted run's final
// checkpoint, byte for byte, and leaves no swap directory behind.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "tests/test_util.h"

namespace dsinf::testing {
namespace {

TEST(CrashTrials, KilledRunsEndWithTheUninterruptedCheckpoint) {
  TempDir dir;
  std::vector<std::string> placements = {"memory", "nvme", "lora"};
  if (std::system("command -v mpirun >/dev/null 2>&1") == 0) placements.push_back("ranks");
  const CommandResult r = run_command(
      "DSINF_BIN=" + dsinf_binary() + " CRASH_SEED=11 bash " + std::string(DSINF_SOURCE_DIR) +
          "/scripts/crash-trials.sh 3 " + absl::StrJoin(placements, " "),
      dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const std::string& placement : placements) {
    EXPECT_NE(r.out.find(placement + ": 3 trials"), std::string::npos) << r.out;
  }
  EXPECT_EQ(r.out.find("FAILED"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace dsinf::testing
