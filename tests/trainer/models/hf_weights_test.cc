// Writing and reading Hugging Face weight directories: shard plans and names
// as transformers makes them, the index, 16-bit storage rounded to nearest
// even (checked against rounding computed from the definitions), failures
// that leave no temporary file, and every inconsistency between index and
// shards refused naming file and tensor.
#include "trainer/models/hf_weights.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "tests/test_util.h"
#include "tests/trainer/models/device_chunks.h"
#include "tests/trainer/models/rounding_reference.h"
#include "trainer/models/gpt2/gpt2.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::vector<float> values(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    v[i] = std::ldexp(static_cast<float>(seed >> 8) / 16777216.0f - 0.5f, (seed & 15) - 8);
  }
  return v;
}

size_t numel(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

absl::Status write_all(const std::string& dir, const std::vector<HfTensorInfo>& plan,
                       const std::vector<std::vector<float>>& data, TensorDtype dtype,
                       uint64_t max_shard, std::map<std::string, std::string> metadata = {}) {
  absl::StatusOr<HfShardWriter> w =
      HfShardWriter::create(dir, plan, dtype, max_shard, std::move(metadata));
  if (!w.ok()) return w.status();
  for (size_t i = 0; i < plan.size(); ++i) {
    if (absl::Status s = w->write(plan[i].name, data[i].data()); !s.ok()) return s;
  }
  return w->finish();
}

bool contains(const absl::Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

size_t elem_bytes(TensorDtype dtype) { return dtype == TensorDtype::kF32 ? 4 : 2; }

float stored(TensorDtype dtype, float x) {
  if (dtype == TensorDtype::kBF16) return testing::nearest_bf16(x);
  if (dtype == TensorDtype::kF16) return testing::nearest_f16(x);
  return x;
}

class ShardRoundTrip : public ::testing::TestWithParam<TensorDtype> {};

// 100, 100, 150, 7 and 60 elements, at most 200 elements a shard:
// {a, b}, {c, d}, {e}.
TEST_P(ShardRoundTrip, ThreeShardsNamedAndIndexedAsTransformersAndReadBackRounded) {
  const TensorDtype dtype = GetParam();
  const std::vector<HfTensorInfo> plan = {
      {"a", {10, 10}}, {"b", {100}}, {"c", {3, 50}}, {"d", {7}}, {"e", {2, 30}}};
  std::vector<std::vector<float>> data;
  for (size_t i = 0; i < plan.size(); ++i) data.push_back(values(numel(plan[i].shape), 7 + i));
  // Ties (bf16, then half), NaN, inf, signed zero, a half subnormal.
  data[3] = {1.0f + std::ldexp(1.0f, -8),
             1.0f + 3 * std::ldexp(1.0f, -8),
             1.0f + std::ldexp(1.0f, -11),
             NAN,
             -INFINITY,
             -0.0f,
             3e-6f};
  const uint64_t max_shard = 200 * elem_bytes(dtype);
  TempDir dir;
  ASSERT_TRUE(write_all(dir.path(), plan, data, dtype, max_shard, {{"format", "pt"}}).ok());
  const std::string s1 = "model-00001-of-00003.safetensors";
  const std::string s2 = "model-00002-of-00003.safetensors";
  const std::string s3 = "model-00003-of-00003.safetensors";
  EXPECT_EQ(testing::list_dir(dir.path()),
            (std::vector<std::string>{s1, s2, s3, "model.safetensors.index.json"}));
  // Byte for byte what json.dumps(index, indent=2, sort_keys=True) + "\n" gives.
  const std::string index = absl::StrCat(
      "{\n  \"metadata\": {\n    \"total_size\": ", 417 * elem_bytes(dtype),
      "\n  },\n  \"weight_map\": {\n", "    \"a\": \"", s1, "\",\n    \"b\": \"", s1,
      "\",\n    \"c\": \"", s2, "\",\n    \"d\": \"", s2, "\",\n    \"e\": \"", s3, "\"\n  }\n}\n");
  EXPECT_EQ(testing::read_text(dir / "model.safetensors.index.json"), index);

  auto w = HfWeights::open(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->names(), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  EXPECT_EQ((*w)->where(), dir.path());
  EXPECT_EQ((*w)->file_of("d"), dir / s2);
  EXPECT_EQ((*w)->file_of("nope"), dir.path());
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ((*w)->find(plan[i].name)->dtype, tensor_dtype_name(dtype));
    auto got = (*w)->read_f32(plan[i].name, plan[i].shape);
    ASSERT_TRUE(got.ok()) << got.status();
    for (size_t k = 0; k < got->size(); ++k) {
      const float want = stored(dtype, data[i][k]);
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan((*got)[k])) << plan[i].name << "[" << k << "]";
      } else {
        ASSERT_EQ(std::bit_cast<uint32_t>((*got)[k]), std::bit_cast<uint32_t>(want))
            << plan[i].name << "[" << k << "] " << (*got)[k] << " want " << want;
      }
    }
  }
  auto shard = SafetensorsFile::open(dir / s3);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));

  // Written twice, the same bytes.
  TempDir again;
  ASSERT_TRUE(write_all(again.path(), plan, data, dtype, max_shard, {{"format", "pt"}}).ok());
  for (const std::string& f : testing::list_dir(dir.path())) {
    EXPECT_TRUE(testing::read_text(dir / f) == testing::read_text(again / f)) << f;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ShardRoundTrip,
                         ::testing::Values(TensorDtype::kF32, TensorDtype::kBF16,
                                           TensorDtype::kF16),
                         [](const auto& info) {
                           return std::string(tensor_dtype_name(info.param));
                         });

TEST(HfShardWriter, ATensorOverTheLimitGetsAShardOfItsOwn) {
  TempDir dir;
  auto w = HfShardWriter::create(dir.path(), {{"x", {10}}, {"big", {500}}, {"y", {10}}},
                                 TensorDtype::kF32, 200, {});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->num_shards(), 3u);
  EXPECT_EQ(w->total_bytes(), 520u * 4);
  EXPECT_EQ(w->files(), (std::vector<std::string>{
                            "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                            "model-00003-of-00003.safetensors", "model.safetensors.index.json"}));
  EXPECT_TRUE(testing::list_dir(dir.path()).empty());  // nothing before the first write
}

TEST(HfShardWriter, OneShardIsModelSafetensorsAndF32IsExact) {
  TempDir dir;
  const std::vector<float> a = values(64, 3);
  ASSERT_TRUE(write_all(dir.path(), {{"a", {8, 8}}}, {a}, TensorDtype::kF32, 1 << 20).ok());
  EXPECT_EQ(testing::list_dir(dir.path()), std::vector<std::string>{"model.safetensors"});
  auto w = open_weights(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(*(*w)->read_f32("a", {8, 8}), a);
}

TEST(HfShardWriter, OutOfOrderWriteRemovesTheShardBeingWrittenAndEndsTheWriter) {
  TempDir dir;
  // a and b share the first shard, c has the second.
  auto w = HfShardWriter::create(dir.path(), {{"a", {4}}, {"b", {4}}, {"c", {4}}},
                                 TensorDtype::kF32, 32, {});
  ASSERT_TRUE(w.ok()) << w.status();
  const std::vector<float> x(4, 1.0f);
  ASSERT_TRUE(w->write("a", x.data()).ok());
  const std::vector<std::string> during = testing::list_dir(dir.path());
  ASSERT_EQ(during.size(), 1u);
  EXPECT_EQ(during[0].rfind(".model-00001-of-00002.safetensors.tmp.", 0), 0u) << during[0];
  absl::Status s = w->write("c", x.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(contains(s, "'c' is not the next tensor of the plan ('b')")) << s;
  EXPECT_TRUE(testing::list_dir(dir.path()).empty());
  EXPECT_EQ(w->write("b", x.data()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(w->finish().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(testing::list_dir(dir.path()).empty());
}

TEST(HfShardWriter, FinishBeforeTheLastTensorOrNullDataLeavesNoTemporaryFile) {
  TempDir dir;
  const std::vector<float> x(4, 1.0f);
  auto early =
      HfShardWriter::create(dir.path(), {{"a", {4}}, {"b", {4}}}, TensorDtype::kBF16, 1 << 20, {});
  ASSERT_TRUE(early.ok()) << early.status();
  ASSERT_TRUE(early->write("a", x.data()).ok());
  absl::Status s = early->finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(contains(s, "1 tensors of the plan were not written")) << s;
  EXPECT_TRUE(testing::list_dir(dir.path()).empty());

  auto null = HfShardWriter::create(dir.path(), {{"a", {4}}}, TensorDtype::kF32, 1 << 20, {});
  ASSERT_TRUE(null.ok()) << null.status();
  EXPECT_EQ(null->write("a", nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(testing::list_dir(dir.path()).empty());
}

TEST(HfShardWriter, BadPlansAreRefusedBeforeAnythingIsWritten) {
  TempDir dir;
  const auto code = [&](const std::string& d, std::vector<HfTensorInfo> plan, uint64_t max) {
    return HfShardWriter::create(d, std::move(plan), TensorDtype::kF32, max, {}).status().code();
  };
  EXPECT_EQ(code(dir / "missing", {{"a", {1}}}, 64), absl::StatusCode::kNotFound);
  testing::write_text(dir / "file", "x");
  EXPECT_EQ(code(dir / "file", {{"a", {1}}}, 64), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(code(dir.path(), {}, 64), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(dir.path(), {{"a", {1}}}, 0), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(dir.path(), {{"a", {1}}, {"a", {2}}}, 64), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(dir.path(), {{"__metadata__", {1}}}, 64), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(dir.path(), {{"a", {-1}}}, 64), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(dir.path(), {{"a", {int64_t{1} << 40, int64_t{1} << 40}}}, 64),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(testing::list_dir(dir.path()), std::vector<std::string>{"file"});
}

TEST(HfShardWriter, RewritingADirectoryRemovesTheEarlierSavesWeightFiles) {
  TempDir dir;
  testing::write_text(dir / "config.json", "{}");
  const std::vector<float> x = values(4, 1), y = values(4, 2);
  const std::vector<HfTensorInfo> plan = {{"a", {4}}, {"b", {4}}, {"c", {4}}};
  ASSERT_TRUE(write_all(dir.path(), plan, {x, x, x}, TensorDtype::kF32, 16).ok());
  ASSERT_EQ(testing::list_dir(dir.path()).size(), 5u);
  // One shard now: the earlier index would otherwise win over model.safetensors.
  ASSERT_TRUE(write_all(dir.path(), plan, {y, y, y}, TensorDtype::kF32, 1 << 20).ok());
  EXPECT_EQ(testing::list_dir(dir.path()),
            (std::vector<std::string>{"config.json", "model.safetensors"}));
  auto w = HfWeights::open(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(*(*w)->read_f32("b", {4}), y);
  // Two shards: the single file goes.
  ASSERT_TRUE(write_all(dir.path(), plan, {x, x, x}, TensorDtype::kF32, 32).ok());
  EXPECT_EQ(testing::list_dir(dir.path()),
            (std::vector<std::string>{"config.json", "model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors",
                                      "model.safetensors.index.json"}));
}

// A directory of two shards holding a and b, for the index to be broken in.
struct TwoShards {
  TempDir dir;
  std::string index = dir / "model.safetensors.index.json";
  TwoShards() {
    const std::vector<float> x(4, 1.0f);
    EXPECT_TRUE(
        write_all(dir.path(), {{"a", {4}}, {"b", {4}}}, {x, x}, TensorDtype::kF32, 16).ok());
  }
  absl::Status open_with(const std::string& index_text) {
    testing::write_text(index, index_text);
    return HfWeights::open(dir.path()).status();
  }
};

TEST(HfWeights, IndexesThatDisagreeWithTheShardsAreRefusedNamingFileAndTensor) {
  TwoShards d;
  const std::string s1 = "model-00001-of-00002.safetensors";
  const std::string s2 = "model-00002-of-00002.safetensors";
  struct Case {
    std::string index_text;
    std::vector<std::string> said;
  };
  const Case cases[] = {
      {absl::StrCat(R"({"weight_map": {"a": ")", s1, R"(", "b": ")", s1, R"("}})"),
       {d.dir / s1, "has no tensor 'b'", d.index}},
      {absl::StrCat(R"({"weight_map": {"a": "missing.safetensors", "b": ")", s2, R"("}})"),
       {d.index, "lists shard 'missing.safetensors'", "'a'"}},
      {R"({"weight_map": {"a": "/etc/passwd"}})", {"not a file name inside the directory"}},
      {R"({"weight_map": {"a": "../x.safetensors"}})", {"not a file name inside the directory"}},
      {R"({"weight_map": {"a": "sub/x.safetensors"}})", {"not a file name inside the directory"}},
      {R"({"weight_map": {"a": ".."}})", {"not a file name inside the directory"}},
      {R"({"weight_map": {"a": 3}})", {"not a file name inside the directory"}},
      {R"({"weight_map": []})", {"no \"weight_map\" object"}},
      {R"({"weight_map": {}})", {"lists no tensor"}},
      {R"({"metadata": 1, "weight_map": {"a": "x"}})", {"\"metadata\" is not an object"}},
      {R"([1])", {"not a JSON object"}},
      {"{", {"not a JSON object"}},
  };
  for (const Case& c : cases) {
    absl::Status s = d.open_with(c.index_text);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.index_text << ": " << s;
    for (const std::string& text : c.said) {
      EXPECT_TRUE(contains(s, text)) << c.index_text << ": " << s << " lacks " << text;
    }
  }
}

TEST(HfWeights, ATensorInTwoShardsOrLeftOutOfTheIndexIsRefused) {
  TempDir dir;
  const std::vector<float> x(4, 1.0f);
  ASSERT_TRUE(write_safetensors(dir / "one.safetensors", {{"a", {4}, x.data()}}, {}).ok());
  ASSERT_TRUE(
      write_safetensors(dir / "two.safetensors", {{"a", {4}, x.data()}, {"b", {4}, x.data()}}, {})
          .ok());
  testing::write_text(dir / "model.safetensors.index.json",
                      R"({"weight_map": {"a": "one.safetensors", "b": "two.safetensors"}})");
  absl::Status s = HfWeights::open(dir.path()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(contains(s, dir / "two.safetensors")) << s;
  EXPECT_TRUE(contains(s, "holds tensor 'a'")) << s;
  // A listed shard holding a tensor the index leaves out.
  testing::write_text(dir / "model.safetensors.index.json",
                      R"({"weight_map": {"b": "two.safetensors"}})");
  absl::Status unlisted = HfWeights::open(dir.path()).status();
  EXPECT_EQ(unlisted.code(), absl::StatusCode::kInvalidArgument) << unlisted;
  EXPECT_TRUE(contains(unlisted, dir / "two.safetensors")) << unlisted;
  EXPECT_TRUE(contains(unlisted, "holds tensor 'a'")) << unlisted;
}

TEST(HfWeights, DirectoriesWithoutSafetensorsSayWhatWasLookedFor) {
  TempDir dir;
  testing::write_text(dir / "training_args.bin", "x");  // a Trainer's, not weights
  absl::Status empty = HfWeights::open(dir.path()).status();
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument) << empty;
  EXPECT_TRUE(contains(empty, dir.path())) << empty;
  EXPECT_TRUE(contains(empty, "model.safetensors.index.json")) << empty;
  EXPECT_TRUE(contains(empty, "nor model.safetensors")) << empty;
  EXPECT_FALSE(contains(empty, "safetensors only")) << empty;

  for (const char* bin : {"pytorch_model.bin", "pytorch_model-00001-of-00002.bin"}) {
    TempDir pickles;
    testing::write_text(pickles / bin, "x");
    absl::Status s = HfWeights::open(pickles.path()).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_TRUE(contains(s, "dsinf reads safetensors only")) << s;
  }

  testing::write_text(dir / "file", "x");
  absl::Status file = HfWeights::open(dir / "file").status();
  EXPECT_EQ(file.code(), absl::StatusCode::kInvalidArgument) << file;
  EXPECT_TRUE(contains(file, "is not a directory")) << file;
}

// Symbolic links are followed inside the directory, and inside a Hugging
// Face cache repository (snapshots/<rev>/x -> ../../blobs/<hash>), never out.
TEST(HfWeights, SymbolicLinksOutsideTheModelAreRefused) {
  TempDir root;
  const std::vector<float> x = values(4, 3);
  fs::create_directories(root / "elsewhere");
  ASSERT_TRUE(write_safetensors(root / "elsewhere/w.safetensors", {{"a", {4}, x.data()}}, {}).ok());

  fs::create_directories(root / "model");
  fs::create_symlink(root / "elsewhere/w.safetensors", root / "model/model.safetensors");
  absl::Status single = HfWeights::open(root / "model").status();
  EXPECT_EQ(single.code(), absl::StatusCode::kInvalidArgument) << single;
  EXPECT_TRUE(contains(single, "is a symbolic link to " + (root / "elsewhere/w.safetensors")))
      << single;
  EXPECT_TRUE(contains(single, "outside " + (root / "model"))) << single;

  fs::create_directories(root / "sharded");
  fs::create_symlink("../elsewhere/w.safetensors", root / "sharded/s1.safetensors");
  testing::write_text(root / "sharded/model.safetensors.index.json",
                      R"({"weight_map": {"a": "s1.safetensors"}})");
  absl::Status shard = HfWeights::open(root / "sharded").status();
  EXPECT_EQ(shard.code(), absl::StatusCode::kInvalidArgument) << shard;
  EXPECT_TRUE(contains(shard, root / "sharded/model.safetensors.index.json")) << shard;
  EXPECT_TRUE(contains(shard, "outside")) << shard;

  fs::create_symlink("nowhere.safetensors", root / "sharded/dangling.safetensors");
  testing::write_text(root / "sharded/model.safetensors.index.json",
                      R"({"weight_map": {"a": "dangling.safetensors"}})");
  EXPECT_EQ(HfWeights::open(root / "sharded").status().code(),
            absl::StatusCode::kInvalidArgument);

  // The cache's layout loads; a link inside a plain directory does too.
  const std::string repo = root / "models--org--name";
  fs::create_directories(repo + "/blobs");
  fs::create_directories(repo + "/snapshots/0123abc");
  ASSERT_TRUE(write_safetensors(repo + "/blobs/9f8e7d", {{"a", {4}, x.data()}}, {}).ok());
  fs::create_symlink("../../blobs/9f8e7d", repo + "/snapshots/0123abc/model.safetensors");
  auto cached = HfWeights::open(repo + "/snapshots/0123abc");
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(*(*cached)->read_f32("a", {4}), x);
  fs::rename(root / "elsewhere/w.safetensors", root / "model/real.safetensors");
  fs::remove(root / "model/model.safetensors");
  fs::create_symlink("real.safetensors", root / "model/model.safetensors");
  EXPECT_TRUE(HfWeights::open(root / "model").ok());
}

TEST(HfWeights, OpenWeightsTakesADirectoryOrOneFile) {
  TempDir dir;
  const std::vector<float> x = values(6, 5);
  ASSERT_TRUE(write_safetensors(dir / "w.safetensors", {{"t", {2, 3}, x.data()}}, {}).ok());
  auto file = open_weights(dir / "w.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->where(), dir / "w.safetensors");
  EXPECT_EQ((*file)->file_of("t"), dir / "w.safetensors");
  EXPECT_EQ(*(*file)->read_f32("t", {2, 3}), x);
  EXPECT_EQ(open_weights(dir / "missing").status().code(), absl::StatusCode::kNotFound);

  TwoShards d;
  auto shards = open_weights(d.dir.path());
  ASSERT_TRUE(shards.ok()) << shards.status();
  absl::Status absent = (*shards)->read_f32("zz", {}).status();
  EXPECT_EQ(absent.code(), absl::StatusCode::kInvalidArgument) << absent;
  EXPECT_TRUE(contains(absent, d.dir.path()) && contains(absent, "'zz'")) << absent;
  absl::Status shape = (*shards)->read_f32("b", {2, 2}).status();
  EXPECT_EQ(shape.code(), absl::StatusCode::kInvalidArgument) << shape;
  EXPECT_TRUE(contains(shape, d.dir / "model-00002-of-00002.safetensors")) << shape;
}

ModelConfig tiny_gpt2() {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.n_positions = 8;
  c.vocab_size = 64;
  return c;
}

// GPT-2 exported through the shard writer into several shards loads back
// through HfWeights to the same parameters; an unexpected tensor is named
// with the shard that holds it.
TEST(HfWeights, Gpt2LoadsFromShardsAndNamesTheShardOfAnUnexpectedTensor) {
  const ModelConfig config = tiny_gpt2();
  const Gpt2Model model(config);
  auto backend = kernels::make_cpu_backend({});
  testing::DeviceChunks source(backend.get(), model.layouts());
  ASSERT_TRUE(model.init_random(5, source).ok());
  auto exported = model.export_hf(source, /*gradients=*/false);
  ASSERT_TRUE(exported.ok()) << exported.status();
  std::vector<HfTensorInfo> plan;
  std::vector<std::vector<float>> data;
  for (const HostTensor& t : *exported) {
    plan.push_back({t.name, t.shape});
    data.push_back(t.data);
  }
  TempDir dir;
  ASSERT_TRUE(write_all(dir.path(), plan, data, TensorDtype::kF32, 8192).ok());
  auto weights = HfWeights::open(dir.path());
  ASSERT_TRUE(weights.ok()) << weights.status();
  testing::DeviceChunks loaded(backend.get(), model.layouts());
  ASSERT_TRUE(model.load_hf(**weights, loaded).ok());
  auto again = model.export_hf(loaded, /*gradients=*/false);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->size(), exported->size());
  for (size_t i = 0; i < again->size(); ++i) {
    EXPECT_EQ((*again)[i].data, (*exported)[i].data) << (*again)[i].name;
  }

  plan.push_back({"transformer.h.7.ln_1.weight", {16}});
  data.push_back(std::vector<float>(16, 1.0f));
  TempDir extra;
  ASSERT_TRUE(write_all(extra.path(), plan, data, TensorDtype::kF32, 8192).ok());
  auto with_extra = HfWeights::open(extra.path());
  ASSERT_TRUE(with_extra.ok()) << with_extra.status();
  const std::string shard = (*with_extra)->file_of("transformer.h.7.ln_1.weight");
  EXPECT_NE(shard, extra.path());
  absl::Status s = model.load_hf(**with_extra, loaded);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(s.message().rfind(shard + ": tensor 'transformer.h.7.ln_1.weight'", 0), 0u) << s;
}

}  // namespace
}  // namespace dsinf::trainer
