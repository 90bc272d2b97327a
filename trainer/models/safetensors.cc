#include "trainer/models/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "memory/util/atomic_file.h"
#include "memory/util/errno_status.h"
#include "nlohmann/json.hpp"

namespace dsinf::trainer {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

// Maps an errno to the code a caller acts on: disk full is retryable after
// cleanup, a missing path or permission is a configuration problem.
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

absl::Status read_whole_file(const std::string& path, std::vector<char>& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return util::errno_status(errno, path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return util::errno_status(err, path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return util::errno_status(err, absl::StrCat(path, ": read"));
    }
    if (n == 0) break;  // shrank under us; validated as a short file below
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  ::close(fd);
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
  if (elem_bytes == 0) return invalid(path, absl::StrCat("unknown dtype '", entry.dtype, "'"), name);
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

absl::StatusOr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  SafetensorsFile file;
  file.path_ = path;
  if (absl::Status s = read_whole_file(path, file.bytes_); !s.ok()) return s;
  const uint64_t size = file.bytes_.size();
  if (size < 8) {
    return invalid(path, absl::StrCat("file is ", size, " bytes, too short for a header"), "");
  }
  const uint64_t header_bytes = load_le<uint64_t>(file.bytes_.data());
  if (header_bytes > size - 8 || header_bytes > kMaxHeaderBytes) {
    return invalid(path,
                   absl::StrCat("header length ", header_bytes, " exceeds the file (", size,
                                " bytes) or the ", kMaxHeaderBytes, "-byte limit"),
                   "");
  }
  file.data_begin_ = 8 + header_bytes;
  const uint64_t data_bytes = size - file.data_begin_;
  const char* header = file.bytes_.data() + 8;
  nlohmann::json json = nlohmann::json::parse(header, header + header_bytes, nullptr, false);
  if (json.is_discarded()) return invalid(path, "header is not valid JSON", "");
  if (!json.is_object()) return invalid(path, "header is not a JSON object", "");
  for (const auto& [name, value] : json.items()) {
    if (name != "__metadata__") {
      absl::StatusOr<SafetensorsEntry> entry = parse_entry(path, name, value, data_bytes);
      if (!entry.ok()) return entry.status();
      file.entries_.emplace(name, *std::move(entry));
      continue;
    }
    if (!value.is_object()) return invalid(path, "__metadata__ is not an object", "");
    for (const auto& [key, v] : value.items()) {
      if (!v.is_string()) {
        return invalid(path, absl::StrCat("__metadata__ value of '", key, "' is not a string"), "");
      }
      file.metadata_[key] = v.get<std::string>();
    }
  }
  if (absl::Status s = check_overlaps(path, file.entries_); !s.ok()) return s;
  return file;
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
  const char* p = bytes_.data() + data_begin_ + e.begin;
  const size_t elem_bytes = dtype_bytes(e.dtype);
  const size_t numel = (e.end - e.begin) / elem_bytes;
  std::vector<float> out(numel);
  if (e.dtype == "F32") {
    for (size_t i = 0; i < numel; ++i) out[i] = std::bit_cast<float>(load_le<uint32_t>(p + 4 * i));
  } else if (e.dtype == "F16") {
    for (size_t i = 0; i < numel; ++i) out[i] = f16_to_f32(load_le<uint16_t>(p + 2 * i));
  } else if (e.dtype == "BF16") {
    for (size_t i = 0; i < numel; ++i) out[i] = bf16_to_f32(load_le<uint16_t>(p + 2 * i));
  } else if (e.dtype == "F64") {
    for (size_t i = 0; i < numel; ++i) {
      out[i] = static_cast<float>(std::bit_cast<double>(load_le<uint64_t>(p + 8 * i)));
    }
  } else {
    return invalid(path_, absl::StrCat("dtype ", e.dtype, " is not a float type"), name);
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> SafetensorsFile::read_int(const std::string& name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) return invalid(path_, "no such tensor", name);
  const SafetensorsEntry& e = it->second;
  const char* p = bytes_.data() + data_begin_ + e.begin;
  std::vector<int64_t> out;
  if (e.dtype == "I32") {
    out.resize((e.end - e.begin) / 4);
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<int32_t>(load_le<uint32_t>(p + 4 * i));
    }
  } else if (e.dtype == "I64") {
    out.resize((e.end - e.begin) / 8);
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<int64_t>(load_le<uint64_t>(p + 8 * i));
    }
  } else {
    return invalid(path_, absl::StrCat("dtype ", e.dtype, " is not I32 or I64"), name);
  }
  return out;
}

namespace {

absl::StatusOr<std::string> build_header(const std::vector<TensorToWrite>& tensors,
                                         const std::map<std::string, std::string>& metadata,
                                         const std::string& path) {
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
    if (!checked_bytes(t.shape, 4, bytes)) {
      return invalid(path, "negative or overflowing shape", t.name);
    }
    if (bytes > 0 && t.data == nullptr) return invalid(path, "null data", t.name);
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    return invalid(path, absl::StrCat("header cannot be encoded: ", e.what()), "");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

absl::Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  absl::StatusOr<std::string> header = build_header(tensors, metadata, path);
  if (!header.ok()) return header.status();
  absl::StatusOr<util::AtomicFileWriter> writer = util::AtomicFileWriter::open(path);
  if (!writer.ok()) return writer.status();
  char len[8];
  store_le64(header->size(), len);
  if (absl::Status s = writer->write(len, 8); !s.ok()) return s;
  if (absl::Status s = writer->write(*header); !s.ok()) return s;
  for (const TensorToWrite& t : tensors) {
    uint64_t bytes = 0;
    checked_bytes(t.shape, 4, bytes);
    if constexpr (std::endian::native == std::endian::little) {
      if (absl::Status s = writer->write(t.data, bytes); !s.ok()) return s;
    } else {
      std::vector<char> le(bytes);
      for (size_t i = 0; i < bytes / 4; ++i) {
        const uint32_t v = std::bit_cast<uint32_t>(t.data[i]);
        for (int k = 0; k < 4; ++k) le[4 * i + k] = static_cast<char>((v >> (8 * k)) & 0xFFu);
      }
      if (absl::Status s = writer->write(le.data(), le.size()); !s.ok()) return s;
    }
  }
  return writer->commit();
}

}  // namespace dsinf::trainer
