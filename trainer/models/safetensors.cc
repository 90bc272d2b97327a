#include "trainer/models/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "memory/util/atomic_file.h"
#include "memory/util/errno_status.h"
#include "nlohmann/json.hpp"

namespace dsinf::trainer {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

// Bytes per element of every fixed-width safetensors dtype.
size_t dtype_bytes(const std::string& dtype) {
  static const std::pair<const char*, size_t> kDtypes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
      {"F32", 4},  {"I64", 8}, {"U64", 8}, {"F64", 8},     {"C64", 8}};
  for (const auto& [name, bytes] : kDtypes) {
    if (dtype == name) return bytes;
  }
  return 0;
}

template <typename U>
U load_le(const char* p) {
  U v = 0;
  for (size_t i = 0; i < sizeof(U); ++i)
    v |= static_cast<U>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

void store_le64(uint64_t v, char* p) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status invalid(const std::string& path, const std::string& what, const std::string& tensor) {
  if (tensor.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what, " (tensor '", tensor, "')"));
}

// Reads exactly `bytes` at `offset` of `fd` (short reads and EINTR retried).
// Open checked every range against the file's size, so an early end means the
// file shrank since: kDataLoss, like an EIO.
absl::Status pread_exact(int fd, const std::string& path, uint64_t offset, char* out,
                         size_t bytes) {
  constexpr size_t kMaxReadBytes = size_t{1} << 30;  // Linux transfers at most ~2 GiB a call
  size_t done = 0;
  while (done < bytes) {
    const size_t want = std::min(bytes - done, kMaxReadBytes);
    const ssize_t n = ::pread(fd, out + done, want, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return util::errno_status(errno, absl::StrCat(path, ": at byte ", offset + done),
                                util::IoDirection::kRead);
    }
    if (n == 0) {
      return absl::DataLossError(absl::StrCat(path, ": file ended at byte ", offset + done,
                                              " (truncated since it was opened?)"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// numel * elem_bytes, or false on overflow or a negative dimension.
bool checked_bytes(const std::vector<int64_t>& shape, size_t elem_bytes, uint64_t& bytes) {
  uint64_t n = elem_bytes;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  }
  bytes = n;
  return true;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf, or nan with its payload
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal: value = mant * 2^-24; normalise the mantissa.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3FFu) << 13);
  }
  return std::bit_cast<float>(bits);
}

float bf16_to_f32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// Round to nearest, ties to even; NaN stays a (quiet) NaN.
uint16_t f32_to_bf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

// IEEE half, round to nearest even; overflow to inf, NaN kept.
uint16_t f32_to_f16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return sign | 0x7E00u;
  if (abs >= 0x477FF000u) return sign | 0x7C00u;  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                        // below 2^-14: subnormal half or zero
    const float scaled = std::bit_cast<float>(abs) * 16777216.0f;  // x 2^24, exact
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));   // current mode: to even
  }
  const uint32_t rounded = abs + 0xFFFu + ((abs >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded - 0x38000000u) >> 13);
}

size_t stored_bytes(TensorDtype dtype) { return dtype == TensorDtype::kF32 ? 4 : 2; }

// Little-endian bytes of `n` floats stored as `dtype`.
void encode(const float* src, size_t n, TensorDtype dtype, char* out) {
  for (size_t i = 0; i < n; ++i) {
    if (dtype == TensorDtype::kF32) {
      const uint32_t v = std::bit_cast<uint32_t>(src[i]);
      for (int k = 0; k < 4; ++k) out[4 * i + k] = static_cast<char>((v >> (8 * k)) & 0xFFu);
    } else {
      const uint16_t v = dtype == TensorDtype::kBF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
      out[2 * i] = static_cast<char>(v & 0xFFu);
      out[2 * i + 1] = static_cast<char>(v >> 8);
    }
  }
}

}  // namespace

namespace {

// One tensor's entry: dtype, shape and data offsets, checked against the data
// section of `data_bytes`.
absl::StatusOr<SafetensorsEntry> parse_entry(const std::string& path, const std::string& name,
                                             const nlohmann::json& value, uint64_t data_bytes) {
  if (!value.is_object()) return invalid(path, "entry is not an object", name);
  SafetensorsEntry entry;
  const auto dtype = value.find("dtype");
  if (dtype == value.end() || !dtype->is_string()) {
    return invalid(path, "missing or non-string dtype", name);
  }
  entry.dtype = dtype->get<std::string>();
  const size_t elem_bytes = dtype_bytes(entry.dtype);
  if (elem_bytes == 0)
    return invalid(path, absl::StrCat("unknown dtype '", entry.dtype, "'"), name);
  const auto shape = value.find("shape");
  if (shape == value.end() || !shape->is_array()) return invalid(path, "missing shape array", name);
  for (const auto& d : *shape) {
    // nlohmann stores every non-negative integer literal as unsigned.
    if (!d.is_number_unsigned()) {
      return invalid(path, "shape has a non-integer or negative dimension", name);
    }
    if (d.get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()}) {
      return invalid(path, "shape dimension out of range", name);
    }
    entry.shape.push_back(d.get<int64_t>());
  }
  const auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    return invalid(path, "data_offsets is not a pair of non-negative integers", name);
  }
  entry.begin = (*offsets)[0].get<uint64_t>();
  entry.end = (*offsets)[1].get<uint64_t>();
  if (entry.begin > entry.end || entry.end > data_bytes) {
    return invalid(path,
                   absl::StrCat("data_offsets [", entry.begin, ", ", entry.end,
                                "] outside the data section of ", data_bytes, " bytes"),
                   name);
  }
  uint64_t want_bytes = 0;
  if (!checked_bytes(entry.shape, elem_bytes, want_bytes)) {
    return invalid(path, "shape size overflows", name);
  }
  if (entry.end - entry.begin != want_bytes) {
    return invalid(path,
                   absl::StrCat("data_offsets span ", entry.end - entry.begin, " bytes but ",
                                entry.dtype, " ", shape_str(entry.shape), " needs ", want_bytes),
                   name);
  }
  return entry;
}

// No two tensors' data overlap: sorted by start, each non-empty range begins
// at or after the end of the previous one.
absl::Status check_overlaps(const std::string& path,
                            const std::map<std::string, SafetensorsEntry>& entries) {
  std::vector<std::pair<const std::string*, const SafetensorsEntry*>> by_begin;
  for (const auto& [name, e] : entries) {
    if (e.end > e.begin) by_begin.emplace_back(&name, &e);
  }
  std::sort(by_begin.begin(), by_begin.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  for (size_t i = 1; i < by_begin.size(); ++i) {
    if (by_begin[i].second->begin < by_begin[i - 1].second->end) {
      return invalid(path, absl::StrCat("data overlaps tensor '", *by_begin[i - 1].first, "'"),
                     *by_begin[i].first);
    }
  }
  return absl::OkStatus();
}

}  // namespace

SafetensorsFile::Fd::~Fd() {
  if (fd >= 0) ::close(fd);
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  SafetensorsFile file;
  file.path_ = path;
  auto fd = std::make_shared<Fd>();
  fd->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd->fd < 0) return util::errno_status(errno, path);
  struct stat st;
  if (::fstat(fd->fd, &st) != 0) return util::errno_status(errno, path);
  if (!S_ISREG(st.st_mode)) return invalid(path, "not a regular file", "");
  file.fd_ = fd;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    return invalid(path, absl::StrCat("file is ", size, " bytes, too short for a header"), "");
  }
  char len[8];
  if (absl::Status s = pread_exact(fd->fd, path, 0, len, 8); !s.ok()) return s;
  const uint64_t header_bytes = load_le<uint64_t>(len);
  if (header_bytes > size - 8 || header_bytes > kMaxHeaderBytes) {
    return invalid(path,
                   absl::StrCat("header length ", header_bytes, " exceeds the file (", size,
                                " bytes) or the ", kMaxHeaderBytes, "-byte limit"),
                   "");
  }
  std::string header(header_bytes, '\0');
  if (absl::Status s = pread_exact(fd->fd, path, 8, header.data(), header_bytes); !s.ok()) {
    return s;
  }
  file.data_begin_ = 8 + header_bytes;
  if (absl::Status s = file.parse_header(header, size - file.data_begin_); !s.ok()) return s;
  return file;
}

absl::Status SafetensorsFile::parse_header(const std::string& header, uint64_t data_bytes) {
  // A repeated tensor name would silently hide one entry: the parser keeps the last.
  std::set<std::string> keys;
  std::string repeated;
  const nlohmann::json::parser_callback_t note_keys =
      [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        if (depth == 1 && event == nlohmann::json::parse_event_t::key && parsed.is_string() &&
            !keys.insert(parsed.get<std::string>()).second && repeated.empty()) {
          repeated = parsed.get<std::string>();
        }
        return true;
      };
  nlohmann::json json = nlohmann::json::parse(header, note_keys, /*allow_exceptions=*/false);
  if (json.is_discarded()) return invalid(path_, "header is not valid JSON", "");
  if (!json.is_object()) return invalid(path_, "header is not a JSON object", "");
  if (!repeated.empty()) return invalid(path_, "name appears twice in the header", repeated);
  for (const auto& [name, value] : json.items()) {
    if (name != "__metadata__") {
      absl::StatusOr<SafetensorsEntry> entry = parse_entry(path_, name, value, data_bytes);
      if (!entry.ok()) return entry.status();
      entries_.emplace(name, *std::move(entry));
      continue;
    }
    if (!value.is_object()) return invalid(path_, "__metadata__ is not an object", "");
    for (const auto& [key, v] : value.items()) {
      if (!v.is_string()) {
        return invalid(path_, absl::StrCat("__metadata__ value of '", key, "' is not a string"),
                       "");
      }
      metadata_[key] = v.get<std::string>();
    }
  }
  return check_overlaps(path_, entries_);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : entries_) out.push_back(name);
  return out;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

absl::Status SafetensorsFile::read_elements(const SafetensorsEntry& e,
                                            const ElementSink& sink) const {
  constexpr size_t kBlockBytes = size_t{4} << 20;
  const size_t elem_bytes = dtype_bytes(e.dtype);
  const size_t numel = (e.end - e.begin) / elem_bytes;
  const size_t per_block = kBlockBytes / elem_bytes;
  std::vector<char> block(std::min(numel, per_block) * elem_bytes);
  for (size_t first = 0; first < numel; first += per_block) {
    const size_t n = std::min(per_block, numel - first);
    const uint64_t offset = data_begin_ + e.begin + first * elem_bytes;
    if (absl::Status s = pread_exact(fd_->fd, path_, offset, block.data(), n * elem_bytes);
        !s.ok()) {
      return s;
    }
    sink(block.data(), first, n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> SafetensorsFile::read_f32(
    const std::string& name, const std::vector<int64_t>& expected_shape) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) return invalid(path_, "no such tensor", name);
  const SafetensorsEntry& e = it->second;
  if (!expected_shape.empty() && e.shape != expected_shape) {
    return invalid(
        path_, absl::StrCat("shape ", shape_str(e.shape), ", expected ", shape_str(expected_shape)),
        name);
  }
  if (e.dtype != "F32" && e.dtype != "F16" && e.dtype != "BF16" && e.dtype != "F64") {
    return invalid(path_, absl::StrCat("dtype ", e.dtype, " is not a float type"), name);
  }
  std::vector<float> out((e.end - e.begin) / dtype_bytes(e.dtype));
  const std::string& dtype = e.dtype;
  absl::Status status = read_elements(e, [&](const char* p, size_t first, size_t n) {
    float* dst = out.data() + first;
    if (dtype == "F32") {
      for (size_t i = 0; i < n; ++i) dst[i] = std::bit_cast<float>(load_le<uint32_t>(p + 4 * i));
    } else if (dtype == "F16") {
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_le<uint16_t>(p + 2 * i));
    } else if (dtype == "BF16") {
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_le<uint16_t>(p + 2 * i));
    } else {
      for (size_t i = 0; i < n; ++i) {
        dst[i] = static_cast<float>(std::bit_cast<double>(load_le<uint64_t>(p + 8 * i)));
      }
    }
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<int64_t>> SafetensorsFile::read_int(const std::string& name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) return invalid(path_, "no such tensor", name);
  const SafetensorsEntry& e = it->second;
  if (e.dtype != "I32" && e.dtype != "I64") {
    return invalid(path_, absl::StrCat("dtype ", e.dtype, " is not I32 or I64"), name);
  }
  std::vector<int64_t> out((e.end - e.begin) / dtype_bytes(e.dtype));
  const bool i32 = e.dtype == "I32";
  absl::Status status = read_elements(e, [&](const char* p, size_t first, size_t n) {
    int64_t* dst = out.data() + first;
    for (size_t i = 0; i < n; ++i) {
      dst[i] = i32 ? static_cast<int32_t>(load_le<uint32_t>(p + 4 * i))
                   : static_cast<int64_t>(load_le<uint64_t>(p + 8 * i));
    }
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::string> safetensors_header(const std::vector<TensorToWrite>& tensors,
                                               const std::map<std::string, std::string>& metadata,
                                               TensorDtype dtype, const std::string& path) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return invalid(path, "reserved tensor name", t.name);
    }
    if (header.contains(t.name)) return invalid(path, "duplicate tensor name", t.name);
    uint64_t bytes = 0;
    if (!checked_bytes(t.shape, stored_bytes(dtype), bytes)) {
      return invalid(path, "negative or overflowing shape", t.name);
    }
    header[t.name] = {{"dtype", tensor_dtype_name(dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    return invalid(path, absl::StrCat("header cannot be encoded: ", e.what()), "");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  store_le64(text.size(), out.data());
  return out + text;
}

absl::Status write_tensor_data(util::AtomicFileWriter& writer, const float* data, size_t numel,
                               TensorDtype dtype) {
  constexpr size_t kBlock = size_t{1} << 20;  // floats encoded at a time
  std::vector<char> buffer(std::min(numel, kBlock) * stored_bytes(dtype));
  for (size_t begin = 0; begin < numel; begin += kBlock) {
    const size_t n = std::min(kBlock, numel - begin);
    encode(data + begin, n, dtype, buffer.data());
    if (absl::Status s = writer.write(buffer.data(), n * stored_bytes(dtype)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

const char* tensor_dtype_name(TensorDtype dtype) {
  return dtype == TensorDtype::kF32 ? "F32" : dtype == TensorDtype::kBF16 ? "BF16" : "F16";
}

absl::Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata,
                               TensorDtype dtype) {
  for (const TensorToWrite& t : tensors) {
    uint64_t bytes = 0;
    if (checked_bytes(t.shape, 4, bytes) && bytes > 0 && t.data == nullptr) {
      return invalid(path, "null data", t.name);
    }
  }
  absl::StatusOr<std::string> header = safetensors_header(tensors, metadata, dtype, path);
  if (!header.ok()) return header.status();
  absl::StatusOr<util::AtomicFileWriter> writer = util::AtomicFileWriter::open(path);
  if (!writer.ok()) return writer.status();
  if (absl::Status s = writer->write(*header); !s.ok()) return s;
  for (const TensorToWrite& t : tensors) {
    uint64_t bytes = 0;
    checked_bytes(t.shape, 1, bytes);
    if (absl::Status s = write_tensor_data(*writer, t.data, bytes, dtype); !s.ok()) return s;
  }
  return writer->commit();
}

}  // namespace dsinf::trainer
