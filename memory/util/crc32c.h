// CRC32C (Castagnoli), the checksum on every block dsinf writes: swapped
// chunks, checkpoints, TensorBoard records. Uses the SSE4.2 instruction when
// the CPU has it (checked at run time), a table otherwise; both give the same
// value.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dsinf::util {

// Extends `crc` (0 to start) over `bytes` bytes of `data`.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t bytes);
inline uint32_t crc32c(const void* data, size_t bytes) { return crc32c_extend(0, data, bytes); }

namespace detail {
// The two implementations crc32c_extend chooses between, exposed so tests can
// check each; the hardware one needs crc32c_hardware_available().
uint32_t crc32c_extend_software(uint32_t crc, const void* data, size_t bytes);
uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t bytes);
bool crc32c_hardware_available();
}  // namespace detail

// TensorBoard's / LevelDB's masked form of a CRC32C.
inline uint32_t crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

}  // namespace dsinf::util
