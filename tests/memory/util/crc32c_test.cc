#include "memory/util/crc32c.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace dsinf::util {
namespace {

// Bit-at-a-time reference, independent of both implementations under test.
uint32_t crc32c_bitwise(const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < bytes; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

uint32_t crc_of(const std::string& s) { return crc32c(s.data(), s.size()); }

TEST(Crc32c, CheckValue) { EXPECT_EQ(crc_of("123456789"), 0xE3069283u); }

TEST(Crc32c, EmptyIsZero) {
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
  EXPECT_EQ(crc32c_extend(0x12345678u, nullptr, 0), 0x12345678u);
}

TEST(Crc32c, Rfc3720Vectors) {
  std::vector<unsigned char> buf(32, 0x00);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x8A9136AAu);
  std::fill(buf.begin(), buf.end(), 0xFF);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x46DD794Eu);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(31 - i);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x113FDB5Cu);
}

TEST(Crc32c, BothPathsGiveKnownVectors) {
  const std::string check = "123456789";
  EXPECT_EQ(detail::crc32c_extend_software(0, check.data(), check.size()), 0xE3069283u);
  EXPECT_EQ(detail::crc32c_extend_hardware(0, check.data(), check.size()), 0xE3069283u);
  std::vector<unsigned char> zeros(32, 0);
  EXPECT_EQ(detail::crc32c_extend_software(0, zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(detail::crc32c_extend_hardware(0, zeros.data(), zeros.size()), 0x8A9136AAu);
}

TEST(Crc32c, ExtendEqualsWhole) {
  const std::string a = "The quick brown fox ";
  const std::string b = "jumps over the lazy dog, then naps.";
  EXPECT_EQ(crc32c_extend(crc_of(a), b.data(), b.size()), crc_of(a + b));
  // Every split point of a longer buffer, on both paths.
  std::string s;
  for (int i = 0; i < 100; ++i) s.push_back(static_cast<char>(i * 37 + 11));
  const uint32_t whole = crc_of(s);
  for (size_t split = 0; split <= s.size(); ++split) {
    EXPECT_EQ(crc32c_extend(crc32c(s.data(), split), s.data() + split, s.size() - split), whole);
    const uint32_t sw = detail::crc32c_extend_software(0, s.data(), split);
    EXPECT_EQ(detail::crc32c_extend_software(sw, s.data() + split, s.size() - split), whole);
    const uint32_t hw = detail::crc32c_extend_hardware(0, s.data(), split);
    EXPECT_EQ(detail::crc32c_extend_hardware(hw, s.data() + split, s.size() - split), whole);
  }
}

TEST(Crc32c, HardwareMatchesSoftwareOnRandomData) {
  if (!detail::crc32c_hardware_available()) {
    GTEST_SKIP() << "no SSE4.2 on this CPU; the hardware path is the software one";
  }
  std::mt19937_64 rng(1234);
  std::vector<unsigned char> buf(4096 + 64);
  for (auto& x : buf) x = static_cast<unsigned char>(rng());
  for (size_t misalign = 0; misalign < 16; ++misalign) {
    for (size_t len : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{8}, size_t{9},
                       size_t{15}, size_t{16}, size_t{17}, size_t{31}, size_t{63}, size_t{64},
                       size_t{65}, size_t{255}, size_t{1000}, size_t{4096}}) {
      const unsigned char* p = buf.data() + misalign;
      const uint32_t seed = static_cast<uint32_t>(rng());
      const uint32_t sw = detail::crc32c_extend_software(seed, p, len);
      const uint32_t hw = detail::crc32c_extend_hardware(seed, p, len);
      ASSERT_EQ(sw, hw) << "len " << len << " misalign " << misalign;
    }
  }
}

// Long buffers take the hardware path's three interleaved lanes (4 KiB each)
// and their join: every length around a multiple of the 12 KiB stride, at
// every alignment, from any seed, equals the software path.
TEST(Crc32c, HardwareMatchesSoftwareAcrossInterleavedLanes) {
  if (!detail::crc32c_hardware_available()) {
    GTEST_SKIP() << "no SSE4.2 on this CPU; the hardware path is the software one";
  }
  std::mt19937_64 rng(77);
  std::vector<unsigned char> buf((size_t{1} << 20) + 64);
  for (auto& x : buf) x = static_cast<unsigned char>(rng());
  constexpr size_t kStride = 3 * 4096;
  std::vector<size_t> lengths = {size_t{1} << 20, (size_t{1} << 20) + 17};
  for (size_t strides : {1, 2, 5}) {
    for (size_t extra : {0, 1, 7, 8, 9, 4095, 4096, 8191, 8192, 12287}) {
      lengths.push_back(strides * kStride + extra);
      lengths.push_back(strides * kStride - 1 - extra % kStride);
    }
  }
  for (size_t misalign = 0; misalign < 8; ++misalign) {
    for (size_t len : lengths) {
      const unsigned char* p = buf.data() + misalign;
      const uint32_t seed = static_cast<uint32_t>(rng());
      ASSERT_EQ(detail::crc32c_extend_hardware(seed, p, len),
                detail::crc32c_extend_software(seed, p, len))
          << "len " << len << " misalign " << misalign;
    }
  }
}

TEST(Crc32c, MatchesBitwiseReferenceOnAllShortLengths) {
  std::mt19937 rng(99);
  std::vector<unsigned char> buf(300);
  for (auto& x : buf) x = static_cast<unsigned char>(rng());
  for (size_t len = 0; len <= 256; ++len) {
    for (size_t off = 0; off < 8; ++off) {
      const uint32_t want = crc32c_bitwise(buf.data() + off, len);
      ASSERT_EQ(detail::crc32c_extend_software(0, buf.data() + off, len), want) << len;
      ASSERT_EQ(detail::crc32c_extend_hardware(0, buf.data() + off, len), want) << len;
      ASSERT_EQ(crc32c(buf.data() + off, len), want) << len;
    }
  }
}

TEST(Crc32c, MaskKnownValues) {
  // ((crc >> 15) | (crc << 17)) + 0xa282ead8, computed by hand.
  EXPECT_EQ(crc32c_mask(0u), 0xa282ead8u);
  EXPECT_EQ(crc32c_mask(0xE3069283u), 0xC78AB0E5u);  // rotated: 0x2507C60D
  // TFRecord frame of an empty record: the masked CRC of 8 zero length bytes.
  const unsigned char zeros[8] = {};
  EXPECT_EQ(crc32c_mask(crc32c(zeros, 8)),
            ((crc32c_bitwise(zeros, 8) >> 15) | (crc32c_bitwise(zeros, 8) << 17)) + 0xa282ead8u);
}

}  // namespace
}  // namespace dsinf::util
