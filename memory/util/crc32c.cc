#include "memory/util/crc32c.h"

#include <array>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace dsinf::util {

namespace {

constexpr uint32_t kPolyReflected = 0x82F63B78u;

// Slicing-by-8 tables: kTables[0] is the classic byte table; kTables[k][b] is
// the CRC of byte b followed by k zero bytes.
constexpr std::array<std::array<uint32_t, 256>, 8> make_tables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c & 1u) ? (c >> 1) ^ kPolyReflected : c >> 1;
    t[0][b] = c;
  }
  for (uint32_t b = 0; b < 256; ++b) {
    for (size_t k = 1; k < 8; ++k) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
  }
  return t;
}

constexpr auto kTables = make_tables();

// Loads 4 bytes as a little-endian word regardless of host order.
inline uint32_t load_le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

#if defined(__x86_64__)
// The CRC register after `n` more zero bytes, as the instruction computes it.
__attribute__((target("sse4.2"))) uint32_t zeros_sse42(uint32_t state, size_t n) {
  uint64_t c = state;
  for (size_t i = 0; i < n; i += 8) c = _mm_crc32_u64(c, 0);
  return static_cast<uint32_t>(c);
}

// Three chains run over three adjacent lanes at once (one chain waits on
// each instruction's latency; three keep the unit busy), then join: the CRC
// register is linear, so the state after A then B is the state after A moved
// past |B| zero bytes, xor the state after B from zero. Moving a state past
// one or two lanes is a table lookup per state byte.
constexpr size_t kLane = 4096;

struct LaneShifts {
  uint32_t one[4][256];  // by kLane bytes
  uint32_t two[4][256];  // by 2 kLane bytes
};

const LaneShifts& lane_shifts() {
  static const LaneShifts shifts = [] {
    LaneShifts t{};
    for (int k = 0; k < 4; ++k) {
      for (uint32_t b = 0; b < 256; ++b) {
        t.one[k][b] = zeros_sse42(b << (8 * k), kLane);
        t.two[k][b] = zeros_sse42(t.one[k][b], kLane);
      }
    }
    return t;
  }();
  return shifts;
}

inline uint32_t shift(const uint32_t (&table)[4][256], uint32_t state) {
  return table[0][state & 0xFFu] ^ table[1][(state >> 8) & 0xFFu] ^
         table[2][(state >> 16) & 0xFFu] ^ table[3][state >> 24];
}

inline uint64_t load64(const unsigned char* p) {
  uint64_t word;
  std::memcpy(&word, p, 8);
  return word;
}

__attribute__((target("sse4.2"))) uint32_t extend_sse42(uint32_t crc, const unsigned char* p,
                                                        size_t n) {
  uint64_t c = ~crc;
  // Align to 8 bytes so the 64-bit loads never split a cache line.
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7u) != 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
    --n;
  }
  if (n >= 3 * kLane) {
    const LaneShifts& t = lane_shifts();
    while (n >= 3 * kLane) {
      uint64_t a = c, b = 0, d = 0;
      for (size_t i = 0; i < kLane; i += 8) {
        a = _mm_crc32_u64(a, load64(p + i));
        b = _mm_crc32_u64(b, load64(p + kLane + i));
        d = _mm_crc32_u64(d, load64(p + 2 * kLane + i));
      }
      c = shift(t.two, static_cast<uint32_t>(a)) ^ shift(t.one, static_cast<uint32_t>(b)) ^
          static_cast<uint32_t>(d);
      p += 3 * kLane;
      n -= 3 * kLane;
    }
  }
  while (n >= 8) {
    c = _mm_crc32_u64(c, load64(p));
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
    --n;
  }
  return ~static_cast<uint32_t>(c);
}
#endif

using ExtendFn = uint32_t (*)(uint32_t, const void*, size_t);

ExtendFn choose_extend() {
  return detail::crc32c_hardware_available() ? detail::crc32c_extend_hardware
                                             : detail::crc32c_extend_software;
}

}  // namespace

namespace detail {

uint32_t crc32c_extend_software(uint32_t crc, const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  while (bytes >= 8) {
    const uint32_t lo = load_le32(p) ^ c;
    const uint32_t hi = load_le32(p + 4);
    c = kTables[7][lo & 0xFFu] ^ kTables[6][(lo >> 8) & 0xFFu] ^ kTables[5][(lo >> 16) & 0xFFu] ^
        kTables[4][lo >> 24] ^ kTables[3][hi & 0xFFu] ^ kTables[2][(hi >> 8) & 0xFFu] ^
        kTables[1][(hi >> 16) & 0xFFu] ^ kTables[0][hi >> 24];
    p += 8;
    bytes -= 8;
  }
  while (bytes > 0) {
    c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xFFu];
    --bytes;
  }
  return ~c;
}

bool crc32c_hardware_available() {
#if defined(__x86_64__)
  static const bool available = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return available;
#else
  return false;
#endif
}

uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t bytes) {
#if defined(__x86_64__)
  if (crc32c_hardware_available()) {
    return extend_sse42(crc, static_cast<const unsigned char*>(data), bytes);
  }
#endif
  return crc32c_extend_software(crc, data, bytes);
}

}  // namespace detail

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t bytes) {
  static const ExtendFn extend = choose_extend();
  return extend(crc, data, bytes);
}

}  // namespace dsinf::util
