// A real full disk under the output directory: a small tmpfs, mounted by the
// test where the machine lets it (root with CAP_SYS_ADMIN), skipped with the
// reason elsewhere. The save that does not fit is exit 2 naming the
// directory and the shortfall, before anything is written; the previous
// checkpoint stays the newest, and training resumes from it once there is room.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "tests/cli/train_util.h"
#include "tests/test_util.h"

namespace dsinf::testing {
namespace {

using json = nlohmann::json;

TEST(DiskFull, ASaveThatDoesNotFitIsExitTwoAndThePreviousCheckpointStays) {
  TempDir dir;
  // One checkpoint's size, measured on an ordinary directory.
  json config = base_config(dir, dir / "probe", 2);
  config["train"]["save_interval"] = 2;
  const CommandResult probe = run_config(dir, "train", "probe", config);
  ASSERT_EQ(probe.exit_code, 0) << probe.err;
  const uint64_t one = std::filesystem::file_size(dir / "probe/ckpt-00000002.dsinf");
  // Room for one checkpoint and the writer's header margin (1 MiB), not two.
  const std::string small = dir / "small";
  std::filesystem::create_directories(small);
  const uint64_t size = (one + (1u << 20) + one / 2 + 4095) / 4096 * 4096;
  const std::string options = "size=" + std::to_string(size);
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, options.c_str()) != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << ")";
  }
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{small};
  const std::string out = small + "/out";
  config = base_config(dir, out, 4);
  config["train"]["save_interval"] = 2;
  const CommandResult full = run_config(dir, "train", "full", config);
  EXPECT_EQ(full.exit_code, 2) << full.err;
  EXPECT_NE(full.err.find(out + ": a checkpoint needs "), std::string::npos) << full.err;
  EXPECT_NE(full.err.find(" short)"), std::string::npos) << full.err;
  EXPECT_EQ(read_text(out + "/latest"), "ckpt-00000002.dsinf\n");
  EXPECT_FALSE(std::filesystem::exists(out + "/ckpt-00000004.dsinf"));
  for (const std::string& name : list_dir(out)) {
    EXPECT_EQ(name.find(".tmp."), std::string::npos) << name;
  }
  // With room again (the tmpfs grown), the run resumes from step 2 and finishes.
  ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", MS_REMOUNT,
                    ("size=" + std::to_string(4 * size)).c_str()),
            0)
      << std::strerror(errno);
  const CommandResult resumed = run_config(dir, "train", "full", config);
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(read_text(out + "/latest"), "ckpt-00000004.dsinf\n");
}

}  // namespace
}  // namespace dsinf::testing
