// The utilities of no layer: the argument parser, the byte and duration
// formats, the errno map and the exit-code map.
#include <cerrno>

#include "gtest/gtest.h"
#include "memory/util/args.h"
#include "memory/util/errno_status.h"
#include "memory/util/exit_code.h"
#include "memory/util/format.h"

namespace dsinf::util {
namespace {

TEST(Args, ByteCountsAndFormats) {
  EXPECT_EQ(parse_byte_count("131072"), 131072u);
  EXPECT_EQ(parse_byte_count("128K"), 131072u);
  EXPECT_EQ(parse_byte_count("8MiB"), 8388608u);
  EXPECT_EQ(parse_byte_count("1G"), 1073741824u);
  EXPECT_FALSE(parse_byte_count("1.5M").has_value());
  EXPECT_FALSE(parse_byte_count("M").has_value());
  EXPECT_FALSE(parse_byte_count("99999999999999999999").has_value());
  EXPECT_FALSE(parse_byte_count("8 ").has_value());
  EXPECT_EQ(format_bytes(131072), "128 KiB");
  EXPECT_EQ(format_bytes(8388608), "8 MiB");
  EXPECT_EQ(format_bytes(12288), "12 KiB");
  EXPECT_EQ(format_bytes(1000), "1000 B");
  EXPECT_EQ(format_bytes(1536 * 1024), "1.5 MiB");
  EXPECT_EQ(format_bytes(815105), "796.0 KiB");
  // What format_bytes writes of a whole number of units reads back.
  for (uint64_t bytes : {uint64_t{4096}, uint64_t{131072}, uint64_t{1} << 30, uint64_t{1000}}) {
    EXPECT_EQ(parse_byte_count(format_bytes(bytes)), bytes) << format_bytes(bytes);
  }
  EXPECT_EQ(format_bytes_exact(815104), "815104 bytes (796 KiB)");
  EXPECT_EQ(format_bytes_exact(812), "812 bytes");
}

TEST(Args, OptionsFlagsAndPositionals) {
  const Args::Spec spec{{"--out", "--steps"}, {"--json", "--help"}, 1};
  absl::StatusOr<Args> a = Args::parse({"config.json", "--out=x", "--steps", "3", "--json"}, spec);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->positional(), std::vector<std::string>{"config.json"});
  EXPECT_EQ(a->text("--out"), "x");
  EXPECT_EQ(a->integer("--steps", 10, 1, 1000).value_or(0), 3);
  EXPECT_TRUE(a->flag("--json"));
  EXPECT_FALSE(a->flag("--help"));
  EXPECT_TRUE(Args::parse({"-h"}, spec)->flag("--help"));
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"a", "b"}, {"--frobnicate"}, {"--out"}, {"--out="}, {"--json=1"}}) {
    EXPECT_EQ(Args::parse(bad, spec).status().code(), absl::StatusCode::kInvalidArgument)
        << bad.front();
  }
  absl::StatusOr<Args> range = Args::parse({"--steps", "0"}, spec);
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->integer("--steps", 10, 1, 1000).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(range->integer("--missing", 10, 1, 1000).value_or(0), 10);
}

TEST(Format, Durations) {
  EXPECT_EQ(format_duration(42.4), "42s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(7620), "2h07m");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_seconds(1.2344), "1.234 s");
  EXPECT_EQ(format_seconds(0.012345), "12.345 ms");
  EXPECT_EQ(format_seconds(3e-6), "3.000 us");
}

TEST(ErrnoStatus, OneMapForFilesAndSwapIo) {
  using enum IoDirection;
  EXPECT_EQ(errno_status(ENOSPC, "f").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(errno_status(EDQUOT, "f", kWrite).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(errno_status(EIO, "f", kRead).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(errno_status(EIO, "f", kWrite).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(errno_status(EIO, "f").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(errno_status(EAGAIN, "f", kRead).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(errno_status(EINVAL, "f", kRead).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(errno_status(EROFS, "f").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(errno_status(ENOENT, "f").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(errno_status(EISDIR, "f").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(errno_status(ELOOP, "f").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(errno_status(EIO, "swap.0", kRead).message(),
            "swap.0: read failed: Input/output error");
  EXPECT_EQ(errno_status(ENOENT, "x.json").message(), "x.json: No such file or directory");
}

TEST(ExitCode, EveryStatusHasOneExitCode) {
  EXPECT_EQ(exit_code(absl::OkStatus()), 0);
  for (const absl::Status& bad_input :
       {absl::InvalidArgumentError(""), absl::NotFoundError(""), absl::DataLossError(""),
        absl::FailedPreconditionError(""), absl::OutOfRangeError(""), absl::UnavailableError(""),
        absl::ResourceExhaustedError(""), absl::PermissionDeniedError("")}) {
    EXPECT_EQ(exit_code(bad_input), 2) << bad_input;
  }
  EXPECT_EQ(exit_code(absl::CancelledError("")), 130);
  EXPECT_EQ(exit_code(absl::InternalError("")), 1);
  EXPECT_EQ(exit_code(absl::UnknownError("")), 1);
}

}  // namespace
}  // namespace dsinf::util
