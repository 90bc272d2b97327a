#include "trainer/models/safetensors.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "tests/test_util.h"
#include "tests/trainer/models/rounding_reference.h"

namespace dsinf::trainer {
namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // Files in the test directory, to check that no temporary is left behind.
  std::vector<std::string> list_dir() const { return dsinf::testing::list_dir(dir_); }

  dsinf::testing::TempDir tmp_;
  const std::string dir_ = tmp_.path();
};

std::string read_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

// A safetensors file from a header text and a data section, byte by byte.
std::string craft(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

template <typename T>
std::string raw(const std::vector<T>& values) {
  std::string s(values.size() * sizeof(T), '\0');
  std::memcpy(s.data(), values.data(), s.size());  // the test host is little-endian
  return s;
}

bool same_bits(float a, float b) {
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

TEST_F(SafetensorsTest, RoundTripKeepsOrderValuesAndMetadata) {
  const std::vector<float> wte = {1.5f, -2.25f, 3.0f, 1e-30f, -0.0f, INFINITY};  // (3, 2)
  const std::vector<float> bias = {0.1f, 0.2f, 0.3f, 0.4f};                      // (4)
  const float scalar = 42.0f;                                                    // ()
  const std::vector<TensorToWrite> tensors = {
      {"wte", {3, 2}, wte.data()},
      {"h.0.bias", {4}, bias.data()},
      {"empty", {0, 5}, nullptr},
      {"step", {}, &scalar},
  };
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"iteration", "100"}};
  const std::string p = path("model.safetensors");
  ASSERT_TRUE(write_safetensors(p, tensors, meta).ok());
  EXPECT_EQ(list_dir(), std::vector<std::string>{"model.safetensors"});

  // Byte-level: header length a multiple of 8, entries in the given order.
  const std::string bytes = read_bytes(p);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + header_len + (6 + 4 + 1) * 4);
  const std::string header = bytes.substr(8, header_len);
  EXPECT_EQ(header[0], '{');
  EXPECT_LT(header.find("\"__metadata__\""), header.find("\"wte\""));
  EXPECT_LT(header.find("\"wte\""), header.find("\"h.0.bias\""));
  EXPECT_LT(header.find("\"h.0.bias\""), header.find("\"empty\""));
  EXPECT_LT(header.find("\"empty\""), header.find("\"step\""));

  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(p);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->metadata(), meta);
  ASSERT_EQ(f->entries().size(), 4u);
  const SafetensorsEntry& e_wte = f->entries().at("wte");
  EXPECT_EQ(e_wte.dtype, "F32");
  EXPECT_EQ(e_wte.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(e_wte.begin, 0u);
  EXPECT_EQ(e_wte.end, 24u);
  EXPECT_EQ(f->entries().at("h.0.bias").begin, 24u);
  EXPECT_EQ(f->entries().at("empty").begin, 40u);
  EXPECT_EQ(f->entries().at("empty").end, 40u);
  EXPECT_EQ(f->entries().at("step").begin, 40u);
  EXPECT_EQ(f->entries().at("step").end, 44u);

  absl::StatusOr<std::vector<float>> got = f->read_f32("wte", {3, 2});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), wte.size());
  for (size_t i = 0; i < wte.size(); ++i) EXPECT_TRUE(same_bits((*got)[i], wte[i])) << i;
  EXPECT_EQ(*f->read_f32("h.0.bias", {}), bias);
  EXPECT_EQ(*f->read_f32("step", {}), std::vector<float>{42.0f});
  EXPECT_TRUE(f->read_f32("empty", {0, 5})->empty());
}

TEST_F(SafetensorsTest, NoMetadataMeansNoMetadataKeyAndOverwriteReplaces) {
  const std::vector<float> a = {1, 2};
  const std::string p = path("a.safetensors");
  ASSERT_TRUE(write_safetensors(p, {{"a", {2}, a.data()}}, {{"k", "v"}}).ok());
  ASSERT_TRUE(write_safetensors(p, {{"b", {1}, a.data()}}, {}).ok());
  EXPECT_EQ(read_bytes(p).find("__metadata__"), std::string::npos);
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(p);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->metadata().empty());
  EXPECT_EQ(f->entries().count("a"), 0u);
  EXPECT_EQ(*f->read_f32("b", {1}), std::vector<float>{1});
  EXPECT_EQ(list_dir(), std::vector<std::string>{"a.safetensors"});
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  const std::string p = path("nope.safetensors");
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(p);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(f.status().message().find(p), std::string::npos) << f.status();
  EXPECT_NE(f.status().message().find(std::strerror(ENOENT)), std::string::npos) << f.status();
}

struct Malformed {
  const char* what;
  std::string bytes;
  const char* tensor;  // expected in the message as (tensor 'x'); "" for none
};

TEST_F(SafetensorsTest, MalformedFilesAreInvalidArgumentNamingFileAndTensor) {
  const std::string d8(8, '\0');
  const std::vector<Malformed> cases = {
      {"empty file", "", ""},
      {"7 bytes", std::string(7, '\0'), ""},
      {"header past end", le64(100) + "{}", ""},
      {"header over 100MB", le64(200ull << 20) + std::string(64, ' '), ""},
      {"huge header length", le64(~0ull) + "{}", ""},
      {"not json", craft("{\"a\": ", ""), ""},
      {"json array", craft("[1, 2]", ""), ""},
      {"entry not object", craft(R"({"a": 3})", ""), "a"},
      {"missing dtype", craft(R"({"a": {"shape": [2], "data_offsets": [0, 8]}})", d8), "a"},
      {"dtype not string",
       craft(R"({"a": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}})", d8), "a"},
      {"unknown dtype",
       craft(R"({"a": {"dtype": "F31", "shape": [2], "data_offsets": [0, 8]}})", d8), "a"},
      {"shape not array",
       craft(R"({"a": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}})", d8), "a"},
      {"negative dim",
       craft(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", d8), "a"},
      {"float dim", craft(R"({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}})", d8),
       "a"},
      {"missing offsets", craft(R"({"a": {"dtype": "F32", "shape": [2]}})", d8), "a"},
      {"one offset", craft(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", d8),
       "a"},
      {"negative offset",
       craft(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [-1, -1]}})", d8), "a"},
      {"begin after end",
       craft(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", d8), "a"},
      {"end past data",
       craft(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", d8), "a"},
      {"size mismatch",
       craft(R"({"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 8]}})", d8), "a"},
      {"numel overflow",
       craft(
           R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})",
           d8),
       "a"},
      {"overlap",
       craft(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                 "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
             d8),
       "b"},
      {"name twice",
       craft(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                 "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
             d8),
       "a"},
      {"metadata not object", craft(R"({"__metadata__": [1]})", ""), ""},
      {"metadata value not string", craft(R"({"__metadata__": {"k": 1}})", ""), ""},
  };
  for (const Malformed& c : cases) {
    const std::string p = path("bad.safetensors");
    write_bytes(p, c.bytes);
    absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(p);
    ASSERT_FALSE(f.ok()) << c.what;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument)
        << c.what << ": " << f.status();
    EXPECT_EQ(f.status().message().rfind(p + ": ", 0), 0u) << c.what << ": " << f.status();
    if (c.tensor[0] != '\0') {
      EXPECT_NE(f.status().message().find(std::string("(tensor '") + c.tensor + "')"),
                std::string::npos)
          << c.what << ": " << f.status();
    }
  }
}

TEST_F(SafetensorsTest, WellFormedEdgeCasesAreAccepted) {
  // Padding spaces after the JSON, an empty tensor sharing an offset with a
  // full one, unused bytes after the last tensor, entries out of order.
  const std::string data = raw(std::vector<float>{1, 2, 3});
  const std::string header =
      std::string(R"({"b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
       "z": {"dtype": "I64", "shape": [0], "data_offsets": [4, 4]},
       "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})") +
      "     ";
  const std::string p = path("ok.safetensors");
  write_bytes(p, craft(header, data + "junk"));
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(p);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*f->read_f32("a", {2}), (std::vector<float>{1, 2}));
  EXPECT_EQ(*f->read_f32("b", {1}), (std::vector<float>{3}));
  EXPECT_TRUE(f->read_int("z")->empty());
}

TEST_F(SafetensorsTest, ReadF32ErrorsNameTensorAndShapes) {
  const std::vector<float> w = {1, 2, 3, 4, 5, 6};
  const std::string p = path("w.safetensors");
  ASSERT_TRUE(write_safetensors(p, {{"w", {2, 3}, w.data()}}, {}).ok());
  write_bytes(path("i.safetensors"),
              craft(R"({"i": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})",
                    std::string("\1\0\0\0", 4)));
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(p);
  ASSERT_TRUE(f.ok()) << f.status();

  absl::StatusOr<std::vector<float>> wrong = f->read_f32("w", {3, 2});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(wrong.status().message());
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 2]"), std::string::npos) << msg;

  absl::StatusOr<std::vector<float>> missing = f->read_f32("v", {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("'v'"), std::string::npos) << missing.status();

  absl::StatusOr<SafetensorsFile> ints = SafetensorsFile::open(path("i.safetensors"));
  ASSERT_TRUE(ints.ok()) << ints.status();
  EXPECT_EQ(ints->read_f32("i", {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f->read_int("w").status().code(), absl::StatusCode::kInvalidArgument);
}

// Independent F16 decode: sign * mantissa * 2^exponent, straight from the definition.
float f16_reference(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1F;
  const int mant = h & 0x3FF;
  if (exp == 0x1F) return mant == 0 ? sign * INFINITY : NAN;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -24);
  return sign * std::ldexp(static_cast<float>(1024 + mant), exp - 25);
}

TEST_F(SafetensorsTest, F16AndBf16AndF64ConvertExactly) {
  std::vector<uint16_t> all_f16(65536);
  for (uint32_t i = 0; i < 65536; ++i) all_f16[i] = static_cast<uint16_t>(i);
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC0A0, 0x7F80, 0xFF80, 0x0001, 0x8000, 0x4049};
  const std::vector<double> f64 = {0.1, -1e300, 1e-300, 3.0};
  const std::vector<int64_t> i64 = {-5, 1ll << 40};
  const std::vector<int32_t> i32 = {-7, 2147483647};
  std::string data = raw(all_f16);
  const std::string header =
      R"({"h": {"dtype": "F16", "shape": [256, 256], "data_offsets": [0, 131072]},)"
      R"( "b": {"dtype": "BF16", "shape": [7], "data_offsets": [131072, 131086]},)"
      R"( "d": {"dtype": "F64", "shape": [4], "data_offsets": [131086, 131118]},)"
      R"( "l": {"dtype": "I64", "shape": [2], "data_offsets": [131118, 131134]},)"
      R"( "i": {"dtype": "I32", "shape": [2], "data_offsets": [131134, 131142]}})";
  data += raw(bf16) + raw(f64) + raw(i64) + raw(i32);
  const std::string p = path("conv.safetensors");
  write_bytes(p, craft(header, data));
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(p);
  ASSERT_TRUE(f.ok()) << f.status();

  absl::StatusOr<std::vector<float>> h = f->read_f32("h", {256, 256});
  ASSERT_TRUE(h.ok()) << h.status();
  for (uint32_t i = 0; i < 65536; ++i) {
    const float want = f16_reference(static_cast<uint16_t>(i));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan((*h)[i])) << std::hex << i;
    } else {
      ASSERT_TRUE(same_bits((*h)[i], want)) << std::hex << i << " got " << (*h)[i];
    }
  }
  // A few by value, for the reader.
  EXPECT_EQ((*h)[0x3C00], 1.0f);
  EXPECT_EQ((*h)[0xC000], -2.0f);
  EXPECT_EQ((*h)[0x7BFF], 65504.0f);
  EXPECT_EQ((*h)[0x0001], std::ldexp(1.0f, -24));
  EXPECT_EQ((*h)[0x03FF], std::ldexp(1023.0f, -24));
  EXPECT_EQ((*h)[0x0400], std::ldexp(1.0f, -14));
  EXPECT_EQ((*h)[0x3555], 0.333251953125f);
  EXPECT_TRUE(std::signbit((*h)[0x8000]) && (*h)[0x8000] == 0.0f);
  EXPECT_EQ((*h)[0xFC00], -INFINITY);
  EXPECT_TRUE(std::isnan((*h)[0x7E00]));

  absl::StatusOr<std::vector<float>> b = f->read_f32("b", {7});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)[0], 1.0f);
  EXPECT_EQ((*b)[1], -5.0f);
  EXPECT_EQ((*b)[2], INFINITY);
  EXPECT_EQ((*b)[3], -INFINITY);
  EXPECT_EQ((*b)[4], std::ldexp(1.0f, -133));  // smallest bf16 subnormal
  EXPECT_TRUE(std::signbit((*b)[5]));
  EXPECT_EQ((*b)[6], 3.140625f);

  absl::StatusOr<std::vector<float>> dd = f->read_f32("d", {});
  ASSERT_TRUE(dd.ok()) << dd.status();
  EXPECT_EQ(*dd, (std::vector<float>{0.1f, -INFINITY, 0.0f, 3.0f}));
  EXPECT_EQ(*f->read_int("l"), i64);
  EXPECT_EQ(*f->read_int("i"), (std::vector<int64_t>{-7, 2147483647}));
}

// Open descriptors of this process.
size_t open_fds() { return dsinf::testing::list_dir("/proc/self/fd").size(); }

TEST_F(SafetensorsTest, DataIsReadWhenAskedThroughOneDescriptorSharedByCopies) {
  const std::vector<float> a = {1, 2, 3, 4};
  const std::string p = path("s.safetensors");
  ASSERT_TRUE(write_safetensors(p, {{"a", {4}, a.data()}}, {}).ok());
  const size_t fds_before = open_fds();
  std::optional<SafetensorsFile> copy;
  {
    absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(p);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(open_fds(), fds_before + 1);
    copy.emplace(*f);
    EXPECT_EQ(open_fds(), fds_before + 1);
  }
  EXPECT_EQ(open_fds(), fds_before + 1);  // the copy keeps the descriptor
  // The data is read at read_f32, not at open: change a value in place, then
  // unlink the file; the open descriptor still reads it.
  const float seven = 7.0f;
  const int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const off_t second = static_cast<off_t>(read_bytes(p).size()) - 12;
  ASSERT_EQ(::pwrite(fd, &seven, sizeof(seven), second), static_cast<ssize_t>(sizeof(seven)));
  ::close(fd);
  ASSERT_EQ(::unlink(p.c_str()), 0);
  EXPECT_EQ(*copy->read_f32("a", {4}), (std::vector<float>{1, 7, 3, 4}));
  copy.reset();
  EXPECT_EQ(open_fds(), fds_before);
}

TEST_F(SafetensorsTest, TruncatedFileIsRefusedAtOpenAndOneThatShrinksLaterIsDataLoss) {
  const std::vector<float> a = {1, 2, 3, 4};
  const std::string p = path("w.safetensors");
  ASSERT_TRUE(write_safetensors(p, {{"a", {4}, a.data()}, {"b", {4}, a.data()}}, {}).ok());
  const std::string bytes = read_bytes(p);
  const std::string cut = path("cut.safetensors");
  write_bytes(cut, bytes.substr(0, bytes.size() - 4));
  absl::StatusOr<SafetensorsFile> refused = SafetensorsFile::open(cut);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_EQ(refused.status().message().rfind(cut + ": ", 0), 0u) << refused.status();
  EXPECT_NE(refused.status().message().find("(tensor 'b')"), std::string::npos) << refused.status();

  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(p);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(::truncate(p.c_str(), static_cast<off_t>(bytes.size() - 4)), 0);
  EXPECT_EQ(*f->read_f32("a", {4}), a);
  absl::StatusOr<std::vector<float>> shrunk = f->read_f32("b", {4});
  EXPECT_EQ(shrunk.status().code(), absl::StatusCode::kDataLoss) << shrunk.status();
  EXPECT_EQ(shrunk.status().message().rfind(p + ": ", 0), 0u) << shrunk.status();
}

TEST_F(SafetensorsTest, F32BytesAreExactlyTheFormatCheckpointsHold) {
  const std::vector<float> a = {1.0f, -2.0f};
  const std::string p = path("a.safetensors");
  ASSERT_TRUE(write_safetensors(p, {{"a", {2}, a.data()}}, {{"k", "v"}}).ok());
  std::string header =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  EXPECT_EQ(read_bytes(p), le64(header.size()) + header + raw(a));
}

TEST_F(SafetensorsTest, Bf16AndF16AreWrittenRoundedToNearestEvenAndReadBack) {
  // Ties both ways, overflow, subnormals, NaN, inf, signed zero, and values
  // spread over the exponent range.
  std::vector<float> x = {1.0f + std::ldexp(1.0f, -8),
                          1.0f + 3 * std::ldexp(1.0f, -8),
                          1.0f + std::ldexp(1.0f, -11),
                          1.0f + 3 * std::ldexp(1.0f, -11),
                          65519.0f,
                          65520.0f,
                          3e-6f,
                          -1e-8f,
                          3e38f,
                          -0.0f,
                          NAN,
                          -INFINITY};
  for (int i = 0; i < 4000; ++i) {
    x.push_back(std::ldexp(std::sin(static_cast<float>(i) * 12.9898f), (i % 60) - 40));
  }
  const int64_t n = static_cast<int64_t>(x.size());
  for (TensorDtype dtype : {TensorDtype::kBF16, TensorDtype::kF16}) {
    const std::string p = path("r.safetensors");
    ASSERT_TRUE(write_safetensors(p, {{"x", {n}, x.data()}}, {}, dtype).ok());
    absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(p);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->find("x")->dtype, tensor_dtype_name(dtype));
    EXPECT_EQ(f->find("x")->end, static_cast<uint64_t>(2 * n));
    absl::StatusOr<std::vector<float>> got = f->read_f32("x", {n});
    ASSERT_TRUE(got.ok()) << got.status();
    for (size_t i = 0; i < x.size(); ++i) {
      const float want = dtype == TensorDtype::kBF16 ? dsinf::testing::nearest_bf16(x[i])
                                                     : dsinf::testing::nearest_f16(x[i]);
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan((*got)[i])) << tensor_dtype_name(dtype) << " " << i;
      } else {
        ASSERT_TRUE(same_bits((*got)[i], want))
            << tensor_dtype_name(dtype) << " x[" << i << "] = " << x[i] << ": got " << (*got)[i]
            << ", want " << want;
      }
    }
  }
  // The ties, by value: even mantissa wins.
  EXPECT_EQ(dsinf::testing::nearest_bf16(x[0]), 1.0f);
  EXPECT_EQ(dsinf::testing::nearest_bf16(x[1]), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(dsinf::testing::nearest_f16(x[2]), 1.0f);
  EXPECT_EQ(dsinf::testing::nearest_f16(x[3]), 1.0f + std::ldexp(1.0f, -9));
  EXPECT_EQ(dsinf::testing::nearest_f16(x[4]), 65504.0f);
  EXPECT_EQ(dsinf::testing::nearest_f16(x[5]), INFINITY);
}

TEST_F(SafetensorsTest, InvalidTensorsToWriteAreRejected) {
  const std::vector<float> a = {1};
  const std::string p = path("x.safetensors");
  EXPECT_EQ(write_safetensors(p, {{"a", {1}, a.data()}, {"a", {1}, a.data()}}, {}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(write_safetensors(p, {{"__metadata__", {1}, a.data()}}, {}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(write_safetensors(p, {{"a", {-1}, a.data()}}, {}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(write_safetensors(p, {{"a", {1}, nullptr}}, {}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(list_dir().empty());
}

TEST_F(SafetensorsTest, WriteIntoMissingDirectoryIsNotFound) {
  const std::vector<float> a = {1};
  const std::string p = path("no/such/dir/x.safetensors");
  absl::Status s = write_safetensors(p, {{"a", {1}, a.data()}}, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find(p), std::string::npos) << s;
}

TEST_F(SafetensorsTest, FailedRenameRemovesTheTemporary) {
  // The target is a non-empty directory: the write succeeds, the rename fails.
  const std::string p = path("taken");
  ASSERT_EQ(::mkdir(p.c_str(), 0755), 0);
  write_bytes(p + "/file", "x");
  const std::vector<float> a = {1, 2};
  absl::Status s = write_safetensors(p, {{"a", {2}, a.data()}}, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find(std::strerror(EISDIR)), std::string::npos) << s;
  EXPECT_EQ(list_dir(), std::vector<std::string>{"taken"});
}

TEST_F(SafetensorsTest, FileSizeLimitIsResourceExhaustedAndRemovesTheTemporary) {
  // RLIMIT_FSIZE makes write() fail with EFBIG part-way, like a full disk.
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  const std::vector<float> big(1 << 16, 1.0f);  // 256 KiB
  struct sigaction ignore = {}, old_action;
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGXFSZ, &ignore, &old_action), 0);
  struct rlimit small = old_limit;
  small.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  absl::Status s = write_safetensors(path("big.safetensors"), {{"w", {1 << 16}, big.data()}}, {});
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::sigaction(SIGXFSZ, &old_action, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find(".tmp."), std::string::npos) << s;
  EXPECT_TRUE(list_dir().empty());
}

// Interoperability with an independent writer/reader: Python's struct+json
// (no safetensors package here) and torch for the F16/BF16 rounding.
TEST_F(SafetensorsTest, PythonInterop) {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "no /usr/bin/python3 with torch";
  }
  const std::vector<float> ours = {0.5f, -1.25f, 3e-8f, 7.0f};
  const std::string ours_path = path("ours.safetensors");
  ASSERT_TRUE(write_safetensors(ours_path, {{"v", {2, 2}, ours.data()}}, {{"who", "dsinf"}}).ok());
  const std::string py_path = path("py.safetensors");
  const std::string script = R"PY(
import json, struct, sys, torch
ours, out = sys.argv[1], sys.argv[2]
b = open(ours, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
assert n % 8 == 0, n
h = json.loads(b[8:8 + n])
assert h['__metadata__'] == {'who': 'dsinf'}, h
e = h['v']
assert e['dtype'] == 'F32' and e['shape'] == [2, 2], e
vals = list(struct.unpack('<4f', b[8 + n + e['data_offsets'][0]:8 + n + e['data_offsets'][1]]))
assert vals == [0.5, -1.25, struct.unpack('<f', struct.pack('<f', 3e-8))[0], 7.0], vals
x = torch.linspace(-70000, 70000, 1001) * torch.rand(1001, generator=torch.manual_seed(0))
x[:6] = torch.tensor([6e-8, -3e-5, 1e-40, float('inf'), 0.1, 65519.0])
parts = {'f16': x.half().view(torch.int16).numpy().tobytes(),
         'f16_as_f32': x.half().float().numpy().tobytes(),
         'bf16': x.bfloat16().view(torch.int16).numpy().tobytes(),
         'bf16_as_f32': x.bfloat16().float().numpy().tobytes()}
dtypes = {'f16': 'F16', 'f16_as_f32': 'F32', 'bf16': 'BF16', 'bf16_as_f32': 'F32'}
header, data = {}, b''
for k, v in parts.items():
    header[k] = {'dtype': dtypes[k], 'shape': [1001], 'data_offsets': [len(data), len(data) + len(v)]}
    data += v
hb = json.dumps(header).encode()
open(out, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
)PY";
  write_bytes(path("interop.py"), script);
  const std::string cmd =
      "/usr/bin/python3 '" + path("interop.py") + "' '" + ours_path + "' '" + py_path + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "python could not read our file: " << cmd;

  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(py_path);
  ASSERT_TRUE(f.ok()) << f.status();
  for (const char* kind : {"f16", "bf16"}) {
    absl::StatusOr<std::vector<float>> got = f->read_f32(kind, {1001});
    absl::StatusOr<std::vector<float>> want = f->read_f32(std::string(kind) + "_as_f32", {1001});
    ASSERT_TRUE(got.ok() && want.ok());
    for (size_t i = 0; i < 1001; ++i) {
      ASSERT_TRUE(same_bits((*got)[i], (*want)[i])) << kind << "[" << i << "] " << (*got)[i];
    }
  }
}

}  // namespace
}  // namespace dsinf::trainer
