// What every fuzz target shares: the contract each parser of outside input
// keeps (a value, or a status with a message; never a crash, an abort, a
// hang or unbounded memory -- libFuzzer and the sanitizers catch those), and
// a scratch directory the input is written to when the parser reads files.
//
// Each target defines LLVMFuzzerTestOneInput. Built with -DDSINF_FUZZ=ON
// (clang) it links libFuzzer; in every build it also links replay_main.cc,
// which runs it over the seed corpus and every input a fuzzer ever crashed
// (tests/fuzz/corpus/<target>, tests/fuzz/regressions/<target>) as a CTest.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace dsinf::fuzz {

// A status that is not OK must say what is wrong: an empty message breaks
// the contract as a crash does.
inline void check_contract(const absl::Status& status) {
  if (!status.ok() && status.message().empty()) {
    std::fprintf(stderr, "contract broken: status %d without a message\n",
                 static_cast<int>(status.code()));
    std::abort();
  }
}

// A directory of this process's own, made once, removed at exit.
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    std::string templ = (std::filesystem::temp_directory_path() / "dsinf-fuzz-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) std::abort();
    static const std::string remove = templ;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(remove, ec);
    });
    return std::filesystem::path(templ);
  }();
  return dir;
}

// `data` as the file `name` in the scratch directory (replaced each time).
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::filesystem::path path = scratch() / name;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) std::abort();
  return path.string();
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace dsinf::fuzz
