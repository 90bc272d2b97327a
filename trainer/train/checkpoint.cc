#include "trainer/train/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/aligned_buffer.h"
#include "memory/util/atomic_file.h"
#include "memory/util/check.h"
#include "memory/util/crc32c.h"
#include "memory/util/process.h"
#include "nlohmann/json.hpp"
#include "trainer/config/model_reader.h"
#include "trainer/train/checkpoint_dir.h"

namespace dsinf::trainer {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kMagic[8] = {'D', 'S', 'I', 'N', 'F', 'C', 'K', 'P'};
constexpr int kFormatVersion = 1;
constexpr size_t kFooterBytes = 8 + 8 + 4 + 8;
constexpr const char* kClasses[3] = {"param", "m", "v"};

// The classes a chunk's sections hold: parameters, m and v; a frozen chunk
// (LoRA's base) none: it comes from model.init_from, which the header's
// base_fingerprint identifies.
int classes_of(const memory::ChunkLayout& layout) { return layout.trainable() ? 3 : 0; }

constexpr const char* kManifestFormat = "dsinf-checkpoint-manifest";

void put_le(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// The shape keys of the model; json (not ordered_json) sorts them, as
// checkpoints have always stored them.
json model_shape(const ModelConfig& c) {
  json shape(shape_keys(c));
  if (c.lora.enabled) {
    shape["lora"] = {{"r", c.lora.r},
                     {"target_modules", c.lora.target_modules},
                     {"modules_to_save", c.lora.modules_to_save}};
  }
  return shape;
}

}  // namespace

namespace {

// save_checkpoint's body; with `snapshot`, reads the snapshot begun before.
// A full disk is said before the save starts, with the shortfall: the
// checkpoint's sections, its first page and room for its header.
absl::Status check_free_space(const std::string& output_dir,
                              const std::vector<memory::ChunkLayout>& layouts) {
  uint64_t needed = memory::kChunkAlignment + (1u << 20);
  for (const memory::ChunkLayout& layout : layouts) {
    needed += static_cast<uint64_t>(classes_of(layout)) * layout.bytes();
  }
  struct statvfs fs_stat {};
  if (::statvfs(output_dir.c_str(), &fs_stat) != 0) return absl::OkStatus();  // the write will say
  const uint64_t free_bytes = static_cast<uint64_t>(fs_stat.f_bavail) * fs_stat.f_frsize;
  if (free_bytes >= needed) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%s: a checkpoint needs %d bytes, and the file system has %d free (%d short)", output_dir,
      needed, free_bytes, needed - free_bytes));
}

// A checkpoint file of the trainable chunks of `layouts`; a part of a
// partitioned checkpoint says so in its header (`partition`) and is pointed
// at by its manifest, not by "latest".
absl::StatusOr<std::string> write_checkpoint(const std::string& output_dir,
                                             const ModelConfig& model_config,
                                             const std::vector<memory::ChunkLayout>& layouts,
                                             CheckpointState& chunks, const TrainState& state,
                                             int64_t optimizer_steps, bool snapshot,
                                             int pace_ms = 0,
                                             const json& partition = json()) {
  const std::string name = partition.is_null()
                               ? checkpoint_name(state.step)
                               : part_name(state.step, partition.at("rank").get<int>(),
                                           partition.at("world_size").get<int>());
  const std::string path = (fs::path(output_dir) / name).string();
  if (absl::Status s = check_free_space(output_dir, layouts); !s.ok()) return s;
  absl::StatusOr<util::AtomicFileWriter> writer = util::AtomicFileWriter::open(path);
  if (!writer.ok()) return writer.status();
  std::string head(kMagic, 8);
  head.resize(memory::kChunkAlignment, '\0');
  if (absl::Status s = writer->write(head); !s.ok()) return s;

  size_t largest = 0;
  for (const memory::ChunkLayout& layout : layouts) largest = std::max(largest, layout.bytes());
  absl::StatusOr<memory::AlignedBuffer> staging = memory::AlignedBuffer::allocate(largest);
  if (!staging.ok()) return staging.status();

  json sections = json::array();
  for (size_t c = 0; c < layouts.size(); ++c) {
    const size_t bytes = layouts[c].bytes();
    for (int cls = 0; cls < classes_of(layouts[c]); ++cls) {
      if (absl::Status s = snapshot ? chunks.read_snapshot(cls, c, staging->data())
                                    : chunks.read_class(cls, c, staging->data());
          !s.ok()) {
        return s;
      }
      sections.push_back(json{{"class", kClasses[cls]},
                              {"chunk", c},
                              {"offset", writer->bytes_written()},
                              {"bytes", bytes},
                              {"crc32c", util::crc32c(staging->data(), bytes)}});
      if (absl::Status s = writer->write(staging->data(), bytes); !s.ok()) return s;
    }
    if (snapshot) {
      if (pace_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pace_ms));
      chunks.snapshot_chunk_read(c);
    }
  }
  json header = {{"format", "dsinf-checkpoint"},
                 {"version", kFormatVersion},
                 {"model", model_shape(model_config)},
                 {"state",
                  {{"step", state.step},
                   {"samples", state.samples},
                   {"epoch", state.sampler.epoch},
                   {"cursor", state.sampler.cursor},
                   {"last_loss", state.last_loss},
                   {"data_tokens", state.data_tokens},
                   {"optimizer_steps", optimizer_steps},
                   {"skipped_steps", state.skipped_steps}}},
                 {"sections", sections}};
  if (!state.base_fingerprint.empty()) header["state"]["base_fingerprint"] = state.base_fingerprint;
  if (!partition.is_null()) header["partition"] = partition;
  if (state.loss_scaler.has_value()) {
    const actors::LossScalerState& ls = *state.loss_scaler;
    header["state"]["loss_scaler"] = {{"scale", ls.scale},
                                      {"iter", ls.iter},
                                      {"last_overflow_iter", ls.last_overflow_iter},
                                      {"hysteresis", ls.hysteresis}};
  }
  const std::string header_text = header.dump();
  std::string tail = header_text;
  put_le(&tail, writer->bytes_written(), 8);
  put_le(&tail, header_text.size(), 8);
  put_le(&tail, util::crc32c(header_text.data(), header_text.size()), 4);
  tail.append(kMagic, 8);
  if (absl::Status s = writer->write(tail); !s.ok()) return s;
  if (absl::Status s = writer->commit(); !s.ok()) return s;
  if (!partition.is_null()) return path;
  // The pointer goes last: until it is replaced, the previous checkpoint stays the newest.
  if (absl::Status s = point_latest(output_dir, name); !s.ok()) return s;
  return path;
}

}  // namespace

absl::StatusOr<std::string> save_checkpoint(const std::string& output_dir,
                                            const ModelConfig& model_config,
                                            const std::vector<memory::ChunkLayout>& layouts,
                                            CheckpointState& chunks, const TrainState& state) {
  return write_checkpoint(output_dir, model_config, layouts, chunks, state,
                          chunks.optimizer_steps(), /*snapshot=*/false);
}

namespace {

// The layouts of rank `rank`'s part: the chunks it does not own hold nothing.
std::vector<memory::ChunkLayout> part_layouts(std::vector<memory::ChunkLayout> layouts,
                                              const std::vector<int>& owners, int rank) {
  for (size_t c = 0; c < layouts.size(); ++c) {
    if (owners[c] != rank) layouts[c].set_trainable(false);
  }
  return layouts;
}

json part_header(int rank, int world) { return json{{"rank", rank}, {"world_size", world}}; }

}  // namespace

struct BackgroundSave::Worker {
  absl::StatusOr<std::string> result;
  std::atomic<bool> ended{false};
  std::thread thread;
};

BackgroundSave::BackgroundSave() = default;

bool BackgroundSave::ended() const { return worker_ != nullptr && worker_->ended.load(); }

void BackgroundSave::start(const std::string& output_dir, const ModelConfig& model,
                           const std::vector<memory::ChunkLayout>& layouts, CheckpointState& chunks,
                           const TrainState& state, int pace_ms, const PartOf* part) {
  DSINF_CHECK_MSG(worker_ == nullptr, "a background save is still in progress");
  chunks.begin_snapshot();
  // Training goes on: everything of the snapshot's step is taken now.
  const int64_t optimizer_steps = chunks.optimizer_steps();
  const std::vector<memory::ChunkLayout> written =
      part != nullptr ? part_layouts(layouts, part->owners, part->rank) : layouts;
  const json header = part != nullptr ? part_header(part->rank, part->world) : json();
  worker_ = std::make_unique<Worker>();
  Worker* worker = worker_.get();
  worker->thread = std::thread(
      [worker, output_dir, model, written, &chunks, state, optimizer_steps, pace_ms, header] {
        worker->result = write_checkpoint(output_dir, model, written, chunks, state,
                                          optimizer_steps, /*snapshot=*/true, pace_ms, header);
        chunks.end_snapshot();
        worker->ended.store(true);
      });
}

absl::StatusOr<std::string> BackgroundSave::finish() {
  DSINF_CHECK(worker_ != nullptr);
  worker_->thread.join();
  absl::StatusOr<std::string> result = std::move(worker_->result);
  worker_.reset();
  return result;
}

BackgroundSave::~BackgroundSave() {
  if (worker_ != nullptr) worker_->thread.join();
}

namespace {

// A read-only file read by offset; every read is bounds-checked by the caller.
class FileReader {
 public:
  ~FileReader() {
    if (fd_ >= 0) ::close(fd_);
  }
  absl::Status open(const std::string& path) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return absl::InvalidArgumentError(absl::StrCat(path, ": ", std::strerror(errno)));
    struct stat st;
    if (::fstat(fd_, &st) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", std::strerror(errno)));
    }
    size_ = static_cast<uint64_t>(st.st_size);
    return absl::OkStatus();
  }
  absl::Status read(uint64_t offset, void* dst, size_t bytes) {
    char* p = static_cast<char*>(dst);
    while (bytes > 0) {
      const ssize_t n = ::pread(fd_, p, bytes, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return absl::DataLossError(
            absl::StrCat(path_, ": read failed at offset ", offset, ": ",
                         n == 0 ? "unexpected end of file" : std::strerror(errno)));
      }
      p += n;
      offset += static_cast<uint64_t>(n);
      bytes -= static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }
  uint64_t size() const { return size_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

struct Section {
  int cls;
  size_t chunk;
  uint64_t offset, bytes;
  uint32_t crc;
};

}  // namespace

namespace {

// What a checkpoint's header says: the training state and the section table.
struct Header {
  TrainState state;
  int64_t optimizer_steps = 0;
  uint64_t offset = 0;  // where the header (and the data area's end) is
  std::vector<Section> sections;
};

absl::Status not_valid(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": not a valid checkpoint: ", what));
}

// The footer's header offset and length, checked against the file, and the
// header's text, checked against its CRC32C.
absl::StatusOr<std::string> read_header_text(FileReader& file, const std::string& path,
                                             uint64_t* header_offset) {
  if (file.size() < memory::kChunkAlignment + kFooterBytes)
    return not_valid(path, "file too short");
  unsigned char magic[8], footer[kFooterBytes];
  if (absl::Status s = file.read(0, magic, 8); !s.ok()) return s;
  if (absl::Status s = file.read(file.size() - kFooterBytes, footer, kFooterBytes); !s.ok()) {
    return s;
  }
  if (std::memcmp(magic, kMagic, 8) != 0 || std::memcmp(footer + 20, kMagic, 8) != 0) {
    return not_valid(path, "missing the DSINFCKP magic (truncated or not a dsinf checkpoint)");
  }
  const uint64_t offset = get_le(footer, 8), bytes = get_le(footer + 8, 8);
  const uint32_t crc = static_cast<uint32_t>(get_le(footer + 16, 4));
  if (bytes > (16u << 20) || offset < memory::kChunkAlignment ||
      offset + bytes != file.size() - kFooterBytes) {
    return not_valid(path, "header offset/length do not match the file size");
  }
  std::string text(bytes, '\0');
  if (absl::Status s = file.read(offset, text.data(), bytes); !s.ok()) return s;
  if (util::crc32c(text.data(), text.size()) != crc) {
    return absl::DataLossError(absl::StrCat(path, ": header checksum mismatch (file corrupted)"));
  }
  *header_offset = offset;
  return text;
}

// The state fields (throws json::exception for a missing or mistyped one).
absl::Status parse_state(const json& st, const std::string& path, Header& h) {
  TrainState& state = h.state;
  state.step = st.at("step").get<int64_t>();
  state.samples = st.at("samples").get<int64_t>();
  state.sampler.epoch = st.at("epoch").get<int64_t>();
  state.sampler.cursor = st.at("cursor").get<int64_t>();
  state.last_loss = st.at("last_loss").get<double>();
  state.data_tokens = st.at("data_tokens").get<uint64_t>();
  h.optimizer_steps = st.at("optimizer_steps").get<int64_t>();
  // Written since fp16 loss scaling; older checkpoints have neither.
  state.skipped_steps = st.value("skipped_steps", int64_t{0});
  state.base_fingerprint = st.value("base_fingerprint", std::string());
  if (st.contains("loss_scaler")) {
    const json& ls = st.at("loss_scaler");
    actors::LossScalerState scaler;
    scaler.scale = ls.at("scale").get<double>();
    scaler.iter = ls.at("iter").get<int64_t>();
    scaler.last_overflow_iter = ls.at("last_overflow_iter").get<int64_t>();
    scaler.hysteresis = ls.at("hysteresis").get<int64_t>();
    if (!(scaler.scale > 0) || !std::isfinite(scaler.scale) || scaler.hysteresis < 0) {
      return not_valid(path, "state.loss_scaler holds an impossible scale or hysteresis");
    }
    state.loss_scaler = scaler;
  }
  if (state.skipped_steps < 0 || state.skipped_steps > state.step) {
    return not_valid(path, "state.skipped_steps is outside 0..step");
  }
  if (state.step < 0 || state.samples < 0 || h.optimizer_steps < 0) {
    return not_valid(path, "negative counters");
  }
  return absl::OkStatus();
}

// The header JSON: format, model shape, state and section table.
absl::Status parse_header(const std::string& text, const std::string& path,
                          const ModelConfig& model_config, Header& h) {
  const json header = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return not_valid(path, "header is not JSON");
  try {
    if (header.at("format") != "dsinf-checkpoint" || header.at("version") != kFormatVersion) {
      return not_valid(path, absl::StrCat("unsupported format ", header.at("format").dump(),
                                          " version ", header.at("version").dump()));
    }
    const json expected = model_shape(model_config);
    if (header.at("model") != expected) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": checkpoint was written for model ", header.at("model").dump(),
                       " but the config describes ", expected.dump()));
    }
    if (absl::Status s = parse_state(header.at("state"), path, h); !s.ok()) return s;
    for (const json& s : header.at("sections")) {
      const std::string cls = s.at("class").get<std::string>();
      const int index = cls == "param" ? 0 : cls == "m" ? 1 : cls == "v" ? 2 : -1;
      if (index < 0) return not_valid(path, absl::StrCat("unknown section class '", cls, "'"));
      h.sections.push_back(Section{index, s.at("chunk").get<size_t>(),
                                   s.at("offset").get<uint64_t>(), s.at("bytes").get<uint64_t>(),
                                   s.at("crc32c").get<uint32_t>()});
    }
  } catch (const json::exception& e) {
    return not_valid(path,
                     absl::StrCat("header field missing or of the wrong type (", e.what(), ")"));
  }
  return absl::OkStatus();
}

// Each section where the layout says, inside the data area, and none seen
// before (`seen`: a flag per class and chunk, shared by the parts of a
// partitioned checkpoint).
absl::Status check_section_table(const Header& h, const std::string& path,
                                 const std::vector<memory::ChunkLayout>& layouts,
                                 std::vector<bool>& seen) {
  const size_t num_chunks = layouts.size();
  uint64_t end_of_previous = memory::kChunkAlignment;
  for (const Section& s : h.sections) {
    if (s.chunk >= num_chunks || s.cls >= classes_of(layouts[s.chunk]) ||
        seen[s.cls * num_chunks + s.chunk]) {
      return not_valid(path, absl::StrCat("section table repeats or exceeds chunk ", s.chunk));
    }
    seen[s.cls * num_chunks + s.chunk] = true;
    if (s.bytes != layouts[s.chunk].bytes() || s.offset < end_of_previous || s.offset > h.offset ||
        s.bytes > h.offset - s.offset) {
      return not_valid(path, absl::StrCat("section ", kClasses[s.cls], " of chunk ", s.chunk,
                                          " has a bad offset or size"));
    }
    end_of_previous = s.offset + s.bytes;
  }
  return absl::OkStatus();
}

// Every class of every trainable chunk was seen.
absl::Status check_complete(const std::vector<bool>& seen, const std::string& path,
                            const std::vector<memory::ChunkLayout>& layouts) {
  const size_t num_chunks = layouts.size();
  for (size_t c = 0; c < num_chunks; ++c) {
    for (int cls = 0; cls < classes_of(layouts[c]); ++cls) {
      if (!seen[cls * num_chunks + c]) {
        return not_valid(path, absl::StrCat("no section ", kClasses[cls], " for chunk ", c));
      }
    }
  }
  return absl::OkStatus();
}

// Every section the state holds (parameters; m and v where it keeps them),
// each checked against its CRC32C before it is handed on.
absl::Status load_sections(FileReader& file, const std::string& path, const Header& h,
                           const std::vector<memory::ChunkLayout>& layouts,
                           CheckpointState& chunks) {
  size_t largest = 0;
  for (const memory::ChunkLayout& layout : layouts) largest = std::max(largest, layout.bytes());
  absl::StatusOr<memory::AlignedBuffer> staging = memory::AlignedBuffer::allocate(largest);
  if (!staging.ok()) return staging.status();
  for (const Section& s : h.sections) {
    if (s.cls != kParamClass && !chunks.holds_optimizer_state(s.chunk)) continue;
    if (absl::Status st = file.read(s.offset, staging->data(), s.bytes); !st.ok()) return st;
    if (util::crc32c(staging->data(), s.bytes) != s.crc) {
      return absl::DataLossError(absl::StrCat(path, ": checksum mismatch in section ",
                                              kClasses[s.cls], " of chunk ", s.chunk,
                                              " (file corrupted)"));
    }
    if (absl::Status st = chunks.write_class(s.cls, s.chunk, staging->data()); !st.ok()) return st;
  }
  return absl::OkStatus();
}

// One checkpoint file, opened and its header and section table checked.
struct OpenFile {
  FileReader file;
  Header header;
};
absl::Status open_checkpoint_file(const std::string& path, const ModelConfig& model_config,
                                  const std::vector<memory::ChunkLayout>& layouts,
                                  std::vector<bool>& seen, OpenFile& out) {
  if (absl::Status s = out.file.open(path); !s.ok()) return s;
  absl::StatusOr<std::string> text = read_header_text(out.file, path, &out.header.offset);
  if (!text.ok()) return text.status();
  if (absl::Status s = parse_header(*text, path, model_config, out.header); !s.ok()) return s;
  return check_section_table(out.header, path, layouts, seen);
}

// A manifest: JSON naming the parts of a partitioned checkpoint.
bool is_manifest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char first = 0;
  return in.get(first) && first == '{';
}

// The parts a manifest names: exactly the names its step and world size give
// (so no name from the file is ever used as a path).
absl::StatusOr<std::vector<std::string>> manifest_parts(const std::string& path) {
  std::error_code ec;
  if (fs::file_size(path, ec) > (1u << 20) || ec) {
    return not_valid(path, "manifest larger than 1 MiB or unreadable");
  }
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const json m = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object()) return not_valid(path, "manifest is not JSON");
  const json* format = m.contains("format") ? &m["format"] : nullptr;
  const json* step = m.contains("step") ? &m["step"] : nullptr;
  const json* world = m.contains("world_size") ? &m["world_size"] : nullptr;
  const json* parts = m.contains("parts") ? &m["parts"] : nullptr;
  if (format == nullptr || *format != kManifestFormat || step == nullptr ||
      !step->is_number_integer() || world == nullptr || !world->is_number_integer() ||
      parts == nullptr || !parts->is_array()) {
    return not_valid(path, "manifest lacks format, step, world_size or parts");
  }
  const int64_t n = world->get<int64_t>(), at = step->get<int64_t>();
  if (n < 1 || n > 65536 || at < 0 || parts->size() != static_cast<size_t>(n) ||
      fs::path(path).filename().string() != checkpoint_name(at)) {
    return not_valid(path, "manifest's step, world_size or parts do not agree");
  }
  std::vector<std::string> names;
  for (int64_t r = 0; r < n; ++r) {
    const std::string expected = part_name(at, static_cast<int>(r), static_cast<int>(n));
    if ((*parts)[r] != expected) {
      return not_valid(path, absl::StrCat("manifest part ", r, " is not ", expected));
    }
    names.push_back((fs::path(path).parent_path() / expected).string());
  }
  return names;
}

absl::StatusOr<TrainState> load_partitioned(const std::string& path,
                                            const ModelConfig& model_config,
                                            const std::vector<memory::ChunkLayout>& layouts,
                                            CheckpointState& chunks) {
  absl::StatusOr<std::vector<std::string>> names = manifest_parts(path);
  if (!names.ok()) return names.status();
  std::vector<bool> seen(3 * layouts.size(), false);
  std::vector<OpenFile> parts(names->size());
  for (size_t r = 0; r < parts.size(); ++r) {
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status((*names)[r], ec))) {
      return not_valid((*names)[r], "is a symbolic link; the parts of a checkpoint are files "
                                    "its ranks wrote");
    }
    if (absl::Status s = open_checkpoint_file((*names)[r], model_config, layouts, seen, parts[r]);
        !s.ok()) {
      return s;
    }
    const Header& h = parts[r].header;
    if (h.state.step != parts[0].header.state.step ||
        h.optimizer_steps != parts[0].header.optimizer_steps) {
      return not_valid((*names)[r], "its step differs from part 0's");
    }
  }
  if (absl::Status s = check_complete(seen, path, layouts); !s.ok()) return s;
  for (size_t r = 0; r < parts.size(); ++r) {
    if (absl::Status s = load_sections(parts[r].file, (*names)[r], parts[r].header, layouts,
                                       chunks);
        !s.ok()) {
      return s;
    }
  }
  if (chunks.has_optimizer()) chunks.set_optimizer_steps(parts[0].header.optimizer_steps);
  return parts[0].header.state;
}

}  // namespace

absl::StatusOr<TrainState> load_checkpoint(const std::string& path, const ModelConfig& model_config,
                                           const std::vector<memory::ChunkLayout>& layouts,
                                           CheckpointState& chunks) {
  if (is_manifest(path)) return load_partitioned(path, model_config, layouts, chunks);
  std::vector<bool> seen(3 * layouts.size(), false);
  OpenFile one;
  if (absl::Status s = open_checkpoint_file(path, model_config, layouts, seen, one); !s.ok()) {
    return s;
  }
  if (absl::Status s = check_complete(seen, path, layouts); !s.ok()) return s;
  if (absl::Status s = load_sections(one.file, path, one.header, layouts, chunks); !s.ok()) {
    return s;
  }
  if (chunks.has_optimizer()) chunks.set_optimizer_steps(one.header.optimizer_steps);
  return one.header.state;
}

absl::StatusOr<std::string> save_partitioned(const std::string& output_dir,
                                             const ModelConfig& model,
                                             const std::vector<memory::ChunkLayout>& layouts,
                                             const std::vector<int>& owners,
                                             kernels::comm::Communicator& comm,
                                             CheckpointState& chunks, const TrainState& state) {
  const absl::StatusOr<std::string> part = write_checkpoint(
      output_dir, model, part_layouts(layouts, owners, comm.rank()), chunks, state,
      chunks.optimizer_steps(), /*snapshot=*/false, 0, part_header(comm.rank(), comm.size()));
  return commit_partitioned(output_dir, state.step, part, comm);
}

absl::StatusOr<std::string> commit_partitioned(const std::string& output_dir, int64_t step,
                                               const absl::StatusOr<std::string>& part,
                                               kernels::comm::Communicator& comm) {
  const int rank = comm.rank(), world = comm.size();
  // The manifest only once every rank's part is durable.
  const int32_t ok = part.ok() ? 1 : 0;
  std::vector<int32_t> oks(static_cast<size_t>(world));
  if (absl::Status s = kernels::comm::wait(comm.all_gather_bytes(&ok, sizeof(ok), oks.data()));
      !s.ok()) {
    return s;
  }
  if (!part.ok()) return part.status();
  for (int r = 0; r < world; ++r) {
    if (oks[r] == 0) {
      return absl::UnavailableError(absl::StrCat(
          "rank ", r, " could not write its part of checkpoint ", checkpoint_name(step)));
    }
  }
  const std::string name = checkpoint_name(step);
  const std::string path = (fs::path(output_dir) / name).string();
  if (rank != 0) return path;
  json parts = json::array();
  for (int r = 0; r < world; ++r) parts.push_back(part_name(step, r, world));
  const json manifest = {{"format", kManifestFormat},
                         {"version", kFormatVersion},
                         {"step", step},
                         {"world_size", world},
                         {"parts", parts}};
  absl::StatusOr<util::AtomicFileWriter> writer = util::AtomicFileWriter::open(path);
  if (!writer.ok()) return writer.status();
  if (absl::Status s = writer->write(manifest.dump(1) + "\n"); !s.ok()) return s;
  if (absl::Status s = writer->commit(); !s.ok()) return s;
  if (absl::Status s = point_latest(output_dir, name); !s.ok()) return s;
  return path;
}

}  // namespace dsinf::trainer
