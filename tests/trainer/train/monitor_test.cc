#include "trainer/train/monitor.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace dsinf::trainer {
namespace {

class MonitorTest : public ::testing::Test {
 protected:
  dsinf::testing::TempDir tmp_;
  const std::string dir_ = tmp_.path();
};

using dsinf::testing::list_dir;

// ------------------------------------------------ independent decoding helpers

uint32_t crc32c_bitwise(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char x : s) {
    c ^= x;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

uint32_t masked(const std::string& s) {
  const uint32_t c = crc32c_bitwise(s);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

uint64_t le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(s.at(at + i));
  return v;
}

std::string hex_to_bytes(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return out;
}

// The records of a TFRecord file, with both masked CRCs checked.
std::vector<std::string> read_records(const std::string& bytes) {
  std::vector<std::string> records;
  size_t at = 0;
  while (at < bytes.size()) {
    EXPECT_GE(bytes.size() - at, 16u) << "truncated frame at " << at;
    if (bytes.size() - at < 16) break;
    const uint64_t len = le(bytes, at, 8);
    EXPECT_EQ(le(bytes, at + 8, 4), masked(bytes.substr(at, 8))) << "length crc at " << at;
    EXPECT_LE(at + 16 + len, bytes.size());
    const std::string data = bytes.substr(at + 12, len);
    EXPECT_EQ(le(bytes, at + 12 + len, 4), masked(data)) << "data crc at " << at;
    records.push_back(data);
    at += 16 + len;
  }
  return records;
}

struct Field {
  uint32_t number = 0;
  uint32_t wire = 0;
  uint64_t scalar = 0;  // varint, fixed64, fixed32
  std::string bytes;    // length-delimited
};

uint64_t read_varint(const std::string& s, size_t& at) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    const auto b = static_cast<unsigned char>(s.at(at++));
    v |= uint64_t{b & 0x7Fu} << shift;
    if ((b & 0x80) == 0) return v;
  }
  ADD_FAILURE() << "varint too long";
  return v;
}

std::vector<Field> decode_message(const std::string& s) {
  std::vector<Field> fields;
  size_t at = 0;
  while (at < s.size()) {
    Field f;
    const uint64_t key = read_varint(s, at);
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<uint32_t>(key & 7);
    switch (f.wire) {
      case 0:
        f.scalar = read_varint(s, at);
        break;
      case 1:
        f.scalar = le(s, at, 8);
        at += 8;
        break;
      case 2: {
        const uint64_t len = read_varint(s, at);
        f.bytes = s.substr(at, len);
        EXPECT_LE(at + len, s.size());
        at += len;
        break;
      }
      case 5:
        f.scalar = le(s, at, 4);
        at += 4;
        break;
      default:
        ADD_FAILURE() << "unexpected wire type " << f.wire;
        return fields;
    }
    fields.push_back(f);
  }
  return fields;
}

struct DecodedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<std::pair<std::string, float>> values;  // tag, simple_value
};

DecodedEvent decode_event(const std::string& record) {
  DecodedEvent e;
  for (const Field& f : decode_message(record)) {
    if (f.number == 1 && f.wire == 1) {
      e.wall_time = std::bit_cast<double>(f.scalar);
    } else if (f.number == 2 && f.wire == 0) {
      e.step = static_cast<int64_t>(f.scalar);
    } else if (f.number == 3 && f.wire == 2) {
      e.file_version = f.bytes;
    } else if (f.number == 5 && f.wire == 2) {
      for (const Field& v : decode_message(f.bytes)) {
        EXPECT_TRUE(v.number == 1 && v.wire == 2);
        std::pair<std::string, float> tv;
        for (const Field& x : decode_message(v.bytes)) {
          if (x.number == 1 && x.wire == 2) tv.first = x.bytes;
          if (x.number == 2 && x.wire == 5) tv.second = std::bit_cast<float>(uint32_t(x.scalar));
        }
        e.values.push_back(tv);
      }
    } else {
      ADD_FAILURE() << "unexpected Event field " << f.number << " wire " << f.wire;
    }
  }
  return e;
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

// ------------------------------------------------ TensorBoard

TEST(MonitorEncoding, TfrecordFrameMatchesIndependentBytes) {
  // Computed with a bit-at-a-time CRC32C in Python.
  EXPECT_EQ(tfrecord_frame("hello"), hex_to_bytes("0500000000000000eab2043e68656c6c6fbb1f1c19"));
  for (const std::string& data : {std::string(), std::string("x"), std::string(300, '\x7f')}) {
    std::string want;
    for (int i = 0; i < 8; ++i) want += static_cast<char>((data.size() >> (8 * i)) & 0xFF);
    const uint32_t len_crc = masked(want);
    for (int i = 0; i < 4; ++i) want += static_cast<char>((len_crc >> (8 * i)) & 0xFF);
    want += data;
    const uint32_t data_crc = masked(data);
    for (int i = 0; i < 4; ++i) want += static_cast<char>((data_crc >> (8 * i)) & 0xFF);
    EXPECT_EQ(tfrecord_frame(data), want) << data.size();
  }
}

TEST(MonitorEncoding, EventBytes) {
  // wall_time 1.5 (field 1, fixed64), file_version (field 3, bytes).
  EXPECT_EQ(tf_event_file_version(1.5),
            hex_to_bytes("09000000000000f83f") + hex_to_bytes("1a0d") + "brain.Event:2");
  // wall_time 2.0, step 300 (varint ac 02), summary { value { tag "a/b", simple_value 0.5 } }.
  EXPECT_EQ(tf_event_scalar(2.0, 300, "a/b", 0.5f), hex_to_bytes("090000000000000040"
                                                                 "10ac02"
                                                                 "2a0c"
                                                                 "0a0a"
                                                                 "0a03") +
                                                        "a/b" + hex_to_bytes("150000003f"));
  // A negative int64 is a 10-byte varint.
  const DecodedEvent neg = decode_event(tf_event_scalar(0, -1, "t", 1));
  EXPECT_EQ(neg.step, -1);
  EXPECT_EQ(tf_event_scalar(0, -1, "t", 1).substr(9, 11), hex_to_bytes("10ffffffffffffffffff01"));
}

TEST_F(MonitorTest, TensorBoardFileDecodes) {
  const std::string out = dir_ + "/tb/job";
  const double before = now_seconds();
  absl::StatusOr<std::unique_ptr<Monitor>> m = make_tensorboard_monitor(out);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(
      (*m)->write({{"Train/Samples/train_loss", 2.5, 8}, {"Train/Samples/lr", 1e-4, 8}}).ok());
  ASSERT_TRUE((*m)->write({{"Train/Samples/train_loss", 2.25, 16}}).ok());
  ASSERT_TRUE((*m)->flush().ok());
  const double after = now_seconds();

  const std::vector<std::string> files = list_dir(out);
  ASSERT_EQ(files.size(), 1u);
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  const std::string& name = files[0];
  const std::string prefix = "events.out.tfevents.";
  ASSERT_EQ(name.rfind(prefix, 0), 0u) << name;
  const size_t dot = name.find('.', prefix.size());
  ASSERT_NE(dot, std::string::npos) << name;
  const long long secs = std::stoll(name.substr(prefix.size(), dot - prefix.size()));
  EXPECT_GE(secs, static_cast<long long>(before) - 1);
  EXPECT_LE(secs, static_cast<long long>(after) + 1);
  EXPECT_EQ(name.substr(dot + 1), host);

  const std::vector<std::string> records =
      read_records(dsinf::testing::read_text(out + "/" + name));
  ASSERT_EQ(records.size(), 4u);
  const DecodedEvent version = decode_event(records[0]);
  EXPECT_EQ(version.file_version, "brain.Event:2");
  EXPECT_GE(version.wall_time, before - 1);
  EXPECT_LE(version.wall_time, after + 1);

  const struct {
    std::string tag;
    int64_t step;
    float value;
  } want[] = {{"Train/Samples/train_loss", 8, 2.5f},
              {"Train/Samples/lr", 8, 1e-4f},
              {"Train/Samples/train_loss", 16, 2.25f}};
  for (size_t i = 0; i < 3; ++i) {
    const DecodedEvent e = decode_event(records[i + 1]);
    EXPECT_EQ(e.step, want[i].step) << i;
    EXPECT_GE(e.wall_time, before - 1);
    EXPECT_LE(e.wall_time, after + 1);
    ASSERT_EQ(e.values.size(), 1u) << i;
    EXPECT_EQ(e.values[0].first, want[i].tag);
    EXPECT_EQ(e.values[0].second, want[i].value);
  }
}

TEST_F(MonitorTest, TwoTensorBoardWritersNeverShareAFile) {
  absl::StatusOr<std::unique_ptr<Monitor>> a = make_tensorboard_monitor(dir_);
  absl::StatusOr<std::unique_ptr<Monitor>> b = make_tensorboard_monitor(dir_);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(list_dir(dir_).size(), 2u);
}

// ------------------------------------------------ CSV

TEST_F(MonitorTest, CsvLayoutAndExactContents) {
  const std::string out = dir_ + "/csv/a/b";
  absl::StatusOr<std::unique_ptr<Monitor>> m = make_csv_monitor(out);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE((*m)->write({{"Train/Samples/train_loss", 2.5, 8},
                           {"Train/Samples/lr", 1e-4, 8},
                           {"eval loss", 0.1, 8}})
                  .ok());
  ASSERT_TRUE(
      (*m)->write({{"Train/Samples/train_loss", 1.0 / 3.0, 16}, {"Train/Samples/lr", 6e-4, 16}})
          .ok());
  ASSERT_TRUE((*m)->flush().ok());
  EXPECT_EQ(list_dir(out),
            (std::vector<std::string>{"Train_Samples_lr.csv", "Train_Samples_train_loss.csv",
                                      "eval_loss.csv"}));
  EXPECT_EQ(dsinf::testing::read_text(out + "/Train_Samples_train_loss.csv"),
            "step,train_loss\n8,2.5\n16,0.3333333333333333\n");
  EXPECT_EQ(dsinf::testing::read_text(out + "/Train_Samples_lr.csv"),
            "step,lr\n8,0.0001\n16,0.0006\n");
  EXPECT_EQ(dsinf::testing::read_text(out + "/eval_loss.csv"), "step,eval loss\n8,0.1\n");
}

TEST_F(MonitorTest, CsvValuesRoundTripExactly) {
  absl::StatusOr<std::unique_ptr<Monitor>> m = make_csv_monitor(dir_);
  ASSERT_TRUE(m.ok()) << m.status();
  const std::vector<double> values = {std::nextafter(1.0, 2.0), 1e-300, -123456789.125,
                                      6.02214076e23, 2.220446049250313e-16};
  std::vector<ScalarEvent> events;
  for (size_t i = 0; i < values.size(); ++i) {
    events.push_back({"v", values[i], static_cast<int64_t>(i)});
  }
  ASSERT_TRUE((*m)->write(events).ok());
  std::ifstream in(dir_ + "/v.csv");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "step,v");
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_TRUE(std::getline(in, line));
    const size_t comma = line.find(',');
    EXPECT_EQ(line.substr(0, comma), std::to_string(i));
    EXPECT_EQ(std::strtod(line.c_str() + comma + 1, nullptr), values[i]) << line;
  }
}

TEST_F(MonitorTest, CsvValuesAreWrittenAsPythonReprWould) {
  // Expected strings are Python 3's repr(float), which DeepSpeed's csv_monitor writes.
  const std::vector<std::pair<double, std::string>> cases = {
      {0.0, "0.0"},
      {-0.0, "-0.0"},
      {3.0, "3.0"},
      {2.5, "2.5"},
      {0.1, "0.1"},
      {1e-4, "0.0001"},
      {1e-5, "1e-05"},
      {-1.5e-7, "-1.5e-07"},
      {1e15, "1000000000000000.0"},
      {1e16, "1e+16"},
      {1.2345e16, "1.2345e+16"},
      {123456789012345678.0, "1.2345678901234568e+17"},
      {6e-4, "0.0006"},
      {1.0 / 3.0, "0.3333333333333333"},
      {std::ldexp(1.0, -1074), "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {-123.456, "-123.456"},
      {INFINITY, "inf"},
      {-INFINITY, "-inf"},
      {NAN, "nan"},
      {1e22, "1e+22"},
  };
  absl::StatusOr<std::unique_ptr<Monitor>> m = make_csv_monitor(dir_);
  ASSERT_TRUE(m.ok()) << m.status();
  std::string want = "step,x\n";
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE((*m)->write({{"x", cases[i].first, static_cast<int64_t>(i)}}).ok());
    want += std::to_string(i) + "," + cases[i].second + "\n";
  }
  EXPECT_EQ(dsinf::testing::read_text(dir_ + "/x.csv"), want);
}

TEST_F(MonitorTest, CsvReopenAppendsWithoutASecondHeader) {
  {
    absl::StatusOr<std::unique_ptr<Monitor>> m = make_csv_monitor(dir_);
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_TRUE((*m)->write({{"Train/Samples/train_loss", 3.0, 8}}).ok());
  }
  {
    absl::StatusOr<std::unique_ptr<Monitor>> m = make_csv_monitor(dir_);
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_TRUE((*m)->write({{"Train/Samples/train_loss", 2.0, 16}}).ok());
    ASSERT_TRUE((*m)->flush().ok());
  }
  EXPECT_EQ(dsinf::testing::read_text(dir_ + "/Train_Samples_train_loss.csv"),
            "step,train_loss\n8,3.0\n16,2.0\n");
}

TEST_F(MonitorTest, CsvWriteErrorIsReported) {
  // The series file is a link to /dev/full: every write fails with ENOSPC.
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no /dev/full";
  ASSERT_EQ(::symlink("/dev/full", (dir_ + "/loss.csv").c_str()), 0);
  absl::StatusOr<std::unique_ptr<Monitor>> m = make_csv_monitor(dir_);
  ASSERT_TRUE(m.ok()) << m.status();
  absl::Status s = (*m)->write({{"loss", 1.0, 1}});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("loss.csv"), std::string::npos) << s;
}

TEST_F(MonitorTest, OutputDirUnderARegularFileIsFailedPrecondition) {
  const std::string file = dir_ + "/plain";
  std::ofstream(file) << "x";
  absl::StatusOr<std::unique_ptr<Monitor>> csv = make_csv_monitor(file + "/job");
  EXPECT_EQ(csv.status().code(), absl::StatusCode::kFailedPrecondition) << csv.status();
  EXPECT_NE(csv.status().message().find(file), std::string::npos) << csv.status();
  absl::StatusOr<std::unique_ptr<Monitor>> tb = make_tensorboard_monitor(file + "/a/b");
  EXPECT_EQ(tb.status().code(), absl::StatusCode::kFailedPrecondition) << tb.status();
  // The output dir itself being a file.
  EXPECT_EQ(make_csv_monitor(file).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(make_csv_monitor("").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dsinf::trainer
