// The device a run asks for (runtime_spec.h): with several ranks on a node,
// "cuda" and "auto" mean the GPU of the rank's place on its node, while
// "cuda:N" and the CPU are taken as written.
#include "trainer/config/runtime_spec.h"

#include <gtest/gtest.h>

namespace dsinf::trainer {
namespace {

actors::DeviceRequest request(const std::string& device, int local_rank,
                              std::optional<std::string> override_device = std::nullopt) {
  Config config;
  absl::StatusOr<DeviceConfig> parsed = parse_device(device);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  config.device = *parsed;
  RunEnvironment env;
  env.local_rank = local_rank;
  env.device = std::move(override_device);
  absl::StatusOr<actors::DeviceRequest> r = device_request(config, env);
  EXPECT_TRUE(r.ok()) << r.status();
  return *r;
}

TEST(DeviceRequest, EachRankOfANodeTakesItsOwnGpu) {
  EXPECT_EQ(request("cuda", 0).index, 0);
  EXPECT_EQ(request("cuda", 3).index, 3);
  EXPECT_EQ(request("auto", 2).index, 2);
  EXPECT_EQ(request("auto", 2).kind, actors::DeviceRequest::Kind::kAuto);
  // DSINF_DEVICE=cuda overrides the config and is placed the same way.
  EXPECT_EQ(request("cpu", 1, "cuda").index, 1);
}

TEST(DeviceRequest, AnExplicitIndexIsTakenAsWritten) {
  EXPECT_EQ(request("cuda:1", 0).index, 1);
  EXPECT_EQ(request("cuda:1", 5).index, 1);
  EXPECT_EQ(request("cpu", 4).kind, actors::DeviceRequest::Kind::kCpu);
  EXPECT_EQ(request("cpu", 4).index, 0);
}

}  // namespace
}  // namespace dsinf::trainer
