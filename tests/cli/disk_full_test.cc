// Real full disks: a small tmpfs under the output directory and a small
// loop-mounted ext4 image as the swap path, mounted by the tests where the
// machine lets them (root with CAP_SYS_ADMIN), skipped with the reason
// elsewhere. The save that does not fit is exit 2 naming the
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

// An ext4 image of `mib` MiB loop-mounted at `point` (O_DIRECT works there,
// unlike tmpfs), unmounted and detached when it goes out of scope.
class LoopMount {
 public:
  LoopMount(const TempDir& dir, const std::string& point, int mib) : point_(point) {
    const std::string image = point + ".img";
    std::filesystem::create_directories(point);
    const CommandResult r = run_command(
        "truncate -s " + std::to_string(mib) + "M " + image + " && mkfs.ext4 -q -F " + image +
            " && mount -o loop " + image + " " + point + " && chmod 0777 " + point,
        dir.path());
    if (r.exit_code == 0) {
      mounted_ = true;
    } else {
      why_not_ = r.err.empty() ? r.out : r.err;
    }
  }
  ~LoopMount() {
    if (mounted_) (void)run_command("umount -d " + point_, "/");
  }
  bool mounted() const { return mounted_; }
  const std::string& why_not() const { return why_not_; }

 private:
  std::string point_;
  bool mounted_ = false;
  std::string why_not_;
};

// The swap path on a file system too small for the swap: exit 2 naming the
// path and the shortfall before any step runs; nothing is left in the swap
// path or written to the output directory. With room, the same run trains
// on the loop-mounted disk and removes its swap directory at the end.
TEST(DiskFull, ASwapPathWithoutRoomIsExitTwoNamingItAndTheShortfall) {
  TempDir dir;
  const LoopMount small(dir, dir / "small", 4);
  if (!small.mounted()) GTEST_SKIP() << "cannot loop-mount an ext4 image here: " << small.why_not();
  json config = base_config(dir, dir / "out", 2);
  config["zero_optimization"] = {{"stage", 3},
                                 {"offload_param", offload("nvme", dir / "small")},
                                 {"offload_optimizer", offload("nvme", dir / "small")}};
  const CommandResult full = run_config(dir, "train", "full", config);
  EXPECT_EQ(full.exit_code, 2) << full.err;
  EXPECT_NE(full.err.find(dir / "small" + " has "), std::string::npos) << full.err;
  EXPECT_NE(full.err.find("free but the swap needs"), std::string::npos) << full.err;
  EXPECT_NE(full.err.find("(short by "), std::string::npos) << full.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "out/latest"));
  for (const std::string& name : list_dir(dir / "small")) {
    EXPECT_EQ(name.find("dsinf-swap-"), std::string::npos) << name;
  }

  const LoopMount roomy(dir, dir / "roomy", 32);
  ASSERT_TRUE(roomy.mounted()) << roomy.why_not();
  config["zero_optimization"]["offload_param"]["nvme_path"] = dir / "roomy";
  config["zero_optimization"]["offload_optimizer"]["nvme_path"] = dir / "roomy";
  const CommandResult fits = run_config(dir, "train", "fits", config);
  EXPECT_EQ(fits.exit_code, 0) << fits.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "out/ckpt-00000002.dsinf"));
  for (const std::string& name : list_dir(dir / "roomy")) {
    EXPECT_EQ(name.find("dsinf-swap-"), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace dsinf::testing
