// The NVMe benchmark must not report bandwidth for data that was not read
// back: engines that claim success for reads they skipped or misplaced are
// caught by the per-block stamps (kDataLoss), and a read error is reported as
// the engine's error. A faithful engine passes.
#include <memory>
#include <string>

#include "bench/nvme_io.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace dsinf::bench {
namespace {

enum class Misbehaviour { kNone, kSkipReads, kShiftReads, kFailReads };

// Forwards to a thread-pool engine, except that reads misbehave as told.
class MisbehavingEngine : public nvme::IoEngine {
 public:
  MisbehavingEngine(std::unique_ptr<nvme::IoEngine> inner, Misbehaviour how, uint64_t size_bytes)
      : inner_(std::move(inner)), how_(how), size_bytes_(size_bytes) {}
  std::string name() const override { return "misbehaving"; }
  const nvme::EngineOptions& options() const override { return inner_->options(); }
  absl::StatusOr<nvme::FileId> open_file(const std::string& path, bool create) override {
    return inner_->open_file(path, create);
  }
  absl::Status close_file(nvme::FileId file) override { return inner_->close_file(file); }
  absl::Status register_buffer(std::byte* data, size_t bytes) override {
    return inner_->register_buffer(data, bytes);
  }
  absl::Status submit(const nvme::IoRequest& request, nvme::IoCallback done) override {
    if (request.op != nvme::IoOp::kRead || how_ == Misbehaviour::kNone) {
      return inner_->submit(request, std::move(done));
    }
    if (how_ == Misbehaviour::kSkipReads) {
      done(nvme::IoResult{absl::OkStatus(), request.bytes});
      return absl::OkStatus();
    }
    if (how_ == Misbehaviour::kFailReads) {
      done(nvme::IoResult{absl::DataLossError("injected EIO"), 0});
      return absl::OkStatus();
    }
    nvme::IoRequest shifted = request;  // the neighbouring block's data: valid, misplaced
    shifted.offset = (request.offset + request.bytes) % size_bytes_;
    return inner_->submit(shifted, std::move(done));
  }
  void drain() override { inner_->drain(); }
  nvme::EngineStats stats() const override { return inner_->stats(); }

 private:
  std::unique_ptr<nvme::IoEngine> inner_;
  Misbehaviour how_;
  uint64_t size_bytes_;
};

absl::Status measure(Misbehaviour how) {
  testing::TempDir dir;
  absl::StatusOr<ScratchDir> scratch = ScratchDir::create(dir.path(), 4 << 20);
  if (!scratch.ok()) return scratch.status();
  NvmeRun run;
  run.kind = nvme::EngineKind::kThreads;
  run.options.block_size = 256 << 10;
  run.options.queue_depth = 4;
  run.size_bytes = 4 << 20;
  absl::StatusOr<std::unique_ptr<nvme::IoEngine>> inner = nvme::make_thread_engine(run.options);
  if (!inner.ok()) return inner.status();
  MisbehavingEngine engine(std::move(*inner), how, run.size_bytes);
  std::string note;
  return measure_nvme_with(engine, *scratch, run, &note).status();
}

bool direct_io_refused(const absl::Status& s) {
  return s.message().find("O_DIRECT") != std::string::npos;
}

TEST(NvmeVerify, FaithfulEnginePasses) {
  const absl::Status s = measure(Misbehaviour::kNone);
  if (direct_io_refused(s)) GTEST_SKIP() << s;
  EXPECT_TRUE(s.ok()) << s;
}

TEST(NvmeVerify, SkippedReadsAreDataLoss) {
  const absl::Status s = measure(Misbehaviour::kSkipReads);
  if (direct_io_refused(s)) GTEST_SKIP() << s;
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
}

TEST(NvmeVerify, MisplacedReadsAreDataLoss) {
  const absl::Status s = measure(Misbehaviour::kShiftReads);
  if (direct_io_refused(s)) GTEST_SKIP() << s;
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
}

TEST(NvmeVerify, ReadErrorsAreReported) {
  const absl::Status s = measure(Misbehaviour::kFailReads);
  if (direct_io_refused(s)) GTEST_SKIP() << s;
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("injected EIO"), std::string::npos) << s;
}

}  // namespace
}  // namespace dsinf::bench
