// The atomic file writer: the committed file's mode follows the umask, and a
// link planted at the temporary's name is replaced, never followed.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "memory/util/atomic_file.h"

namespace dsinf::util {
namespace {

std::string temp_dir() {
  std::string templ = (std::filesystem::temp_directory_path() / "dsinf-atomic-XXXXXX").string();
  return ::mkdtemp(templ.data());
}

TEST(AtomicFile, TheModeFollowsTheUmask) {
  const std::string dir = temp_dir();
  const mode_t old = ::umask(0027);
  absl::StatusOr<AtomicFileWriter> w = AtomicFileWriter::open(dir + "/f");
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->write("x").ok());
  ASSERT_TRUE(w->commit().ok());
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  std::filesystem::remove_all(dir);
}

TEST(AtomicFile, ALinkAtTheTemporaryNameIsNotFollowed) {
  const std::string dir = temp_dir();
  const std::string victim = dir + "/victim";
  std::ofstream(victim) << "keep";
  const std::string tmp = dir + "/.f.tmp." + std::to_string(::getpid());
  ASSERT_EQ(::symlink(victim.c_str(), tmp.c_str()), 0);
  absl::StatusOr<AtomicFileWriter> w = AtomicFileWriter::open(dir + "/f");
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->write("new").ok());
  ASSERT_TRUE(w->commit().ok());
  std::ifstream in(victim);
  std::string text;
  in >> text;
  EXPECT_EQ(text, "keep");
  std::ifstream f(dir + "/f");
  f >> text;
  EXPECT_EQ(text, "new");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsinf::util
