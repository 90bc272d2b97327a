// Writing and reading Hugging Face weight directories: shard plans and names
// as transformers makes them, the index, 16-bit storage rounded to nearest
// even (checked against rounding computed here from the bit patterns), and
// every inconsistency between index and shards refused naming file and tensor.
#include "trainer/models/hf_weights.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <filesystem>

#include "tests/test_util.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

// Nearest bf16 by exhaustive comparison of the two neighbours (ties: even mantissa).
float nearest_bf16(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const float down = std::bit_cast<float>(bits & 0xFFFF0000u);
  const float up = std::bit_cast<float>((bits & 0xFFFF0000u) + 0x10000u);
  const double dd = std::abs(static_cast<double>(x) - down);
  const double du = std::abs(static_cast<double>(up) - x);
  if (dd != du) return dd < du ? down : up;
  return ((bits >> 16) & 1u) == 0 ? down : up;
}

std::vector<float> values(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    v[i] = std::ldexp(static_cast<float>(seed >> 8) / 16777216.0f - 0.5f, (seed & 15) - 8);
  }
  return v;
}

absl::Status write_all(const std::string& dir, const std::vector<HfTensorInfo>& plan,
                       const std::vector<std::vector<float>>& data, TensorDtype dtype,
                       uint64_t max_shard) {
  absl::StatusOr<HfShardWriter> w = HfShardWriter::create(dir, plan, dtype, max_shard, {});
  if (!w.ok()) return w.status();
  for (size_t i = 0; i < plan.size(); ++i) {
    if (absl::Status s = w->write(plan[i].name, data[i].data()); !s.ok()) return s;
  }
  return w->finish();
}

TEST(HfWeights, ShardsIndexAndBf16RoundingAsTransformersWritesThem) {
  TempDir dir;
  const std::vector<HfTensorInfo> plan = {
      {"a", {10, 10}}, {"b", {100}}, {"c", {3, 50}}, {"d", {7}}};
  std::vector<std::vector<float>> data;
  for (size_t i = 0; i < plan.size(); ++i)
    data.push_back(values(
        plan[i].shape.size() == 2 ? plan[i].shape[0] * plan[i].shape[1] : plan[i].shape[0], 7 + i));
  // bf16: a 200, b 200, c 300, d 14 bytes; at most 400 a shard: {a, b}, {c, d}.
  ASSERT_TRUE(write_all(dir.path(), plan, data, TensorDtype::kBF16, 400).ok());
  EXPECT_EQ(testing::list_dir(dir.path()),
            (std::vector<std::string>{"model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors",
                                      "model.safetensors.index.json"}));
  const nlohmann::json index =
      nlohmann::json::parse(testing::read_text(dir / "model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], 714);
  EXPECT_EQ(index["weight_map"]["b"], "model-00001-of-00002.safetensors");
  EXPECT_EQ(index["weight_map"]["c"], "model-00002-of-00002.safetensors");
  EXPECT_EQ(index["weight_map"]["d"], "model-00002-of-00002.safetensors");
  auto w = HfWeights::open(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->names(), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ((*w)->find("c")->dtype, "BF16");
  for (size_t i = 0; i < plan.size(); ++i) {
    auto got = (*w)->read_f32(plan[i].name, plan[i].shape);
    ASSERT_TRUE(got.ok()) << got.status();
    for (size_t k = 0; k < got->size(); ++k) {
      ASSERT_EQ((*got)[k], nearest_bf16(data[i][k])) << plan[i].name << "[" << k << "]";
    }
  }
  // Written twice, the same bytes.
  TempDir again;
  ASSERT_TRUE(write_all(again.path(), plan, data, TensorDtype::kBF16, 400).ok());
  for (const std::string& f : testing::list_dir(dir.path())) {
    EXPECT_TRUE(testing::read_text(dir / f) == testing::read_text(again / f)) << f;
  }
}

TEST(HfWeights, OneShardIsModelSafetensorsAndF32IsExact) {
  TempDir dir;
  const std::vector<float> a = values(64, 3);
  ASSERT_TRUE(write_all(dir.path(), {{"a", {8, 8}}}, {a}, TensorDtype::kF32, 1 << 20).ok());
  EXPECT_EQ(testing::list_dir(dir.path()), std::vector<std::string>{"model.safetensors"});
  auto w = open_weights(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(*(*w)->read_f32("a", {8, 8}), a);
}

TEST(HfWeights, OutOfOrderWriteFailsAndLeavesNoTemporaryFile) {
  TempDir dir;
  auto w = HfShardWriter::create(dir.path(), {{"a", {4}}, {"b", {4}}}, TensorDtype::kF32, 8, {});
  ASSERT_TRUE(w.ok());
  const std::vector<float> x(4, 1.0f);
  EXPECT_EQ(w->write("b", x.data()).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(w->write("a", x.data()).ok());
  EXPECT_EQ(w->finish().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(testing::list_dir(dir.path()),
            std::vector<std::string>{"model-00001-of-00002.safetensors"});
}

TEST(HfWeights, IndexAndShardsThatDisagreeAreRefusedNamingFileAndTensor) {
  TempDir dir;
  const std::vector<float> x(4, 1.0f);
  ASSERT_TRUE(write_all(dir.path(), {{"a", {4}}, {"b", {4}}}, {x, x}, TensorDtype::kF32, 16).ok());
  const std::string index = dir / "model.safetensors.index.json";
  const std::string good = testing::read_text(index);
  struct Case {
    std::string index_text;
    std::string said;
  };
  const Case cases[] = {
      {R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}})",
       "has no tensor 'b'"},
      {R"({"weight_map": {"a": "missing.safetensors", "b": "model-00002-of-00002.safetensors"}})",
       "lists shard 'missing.safetensors'"},
      {R"({"weight_map": {"a": "/etc/passwd"}})", "not a file name inside the directory"},
      {R"({"weight_map": []})", "no \"weight_map\" object"},
  };
  for (const Case& c : cases) {
    testing::write_text(index, c.index_text);
    auto w = HfWeights::open(dir.path());
    ASSERT_FALSE(w.ok()) << c.index_text;
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(w.status().message().find(c.said), std::string::npos) << w.status();
  }
  // A shard holding a tensor the index does not place there.
  TempDir one;
  ASSERT_TRUE(write_all(one.path(), {{"a", {4}}, {"b", {4}}}, {x, x}, TensorDtype::kF32, 64).ok());
  testing::write_text(one / "model.safetensors.index.json",
                      R"({"weight_map": {"a": "model.safetensors"}})");
  auto extra = HfWeights::open(one.path());
  ASSERT_FALSE(extra.ok());
  EXPECT_NE(extra.status().message().find("holds tensor 'b'"), std::string::npos) << extra.status();

  testing::write_text(index, good);
  fs::remove(index);
  fs::remove(dir / "model-00001-of-00002.safetensors");
  fs::remove(dir / "model-00002-of-00002.safetensors");
  testing::write_text(dir / "pytorch_model.bin", "x");
  auto bin = HfWeights::open(dir.path());
  ASSERT_FALSE(bin.ok());
  EXPECT_NE(bin.status().message().find("safetensors only"), std::string::npos) << bin.status();
}

}  // namespace
}  // namespace dsinf::trainer

namespace dsinf::trainer {
namespace {

TEST(HfWeights, F16StorageRoundsToNearestEven) {
  TempDir dir;
  const std::vector<float> in = {1.0f, 1.0f / 3.0f, 65504.0f, 70000.0f, 6e-8f, -2.5f, 1e-9f};
  // IEEE half values, written out by hand: 1/3 is 0x3555, 6e-8 the least subnormal 2^-24.
  const std::vector<float> want = {1.0f,  0.333251953125f, 65504.0f, INFINITY,
                                   std::ldexp(1.0f, -24), -2.5f, 0.0f};
  ASSERT_TRUE(write_all(dir.path(), {{"h", {7}}}, {in}, TensorDtype::kF16, 1 << 20).ok());
  auto w = open_weights(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->find("h")->dtype, "F16");
  EXPECT_EQ(*(*w)->read_f32("h", {7}), want);
}

}  // namespace
}  // namespace dsinf::trainer
