#include "bench/bench_main.h"

#include <iostream>

namespace dsinf::bench {

int bench_main(const std::vector<std::string>& args) {
  std::cerr << "dsinf: bench: no benchmarks in this build yet\n";
  return 2;
}

}  // namespace dsinf::bench
