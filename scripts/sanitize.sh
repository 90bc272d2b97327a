#!/usr/bin/env bash
# Sanitizers over the test suite (clang, CPU backend):
#   scripts/sanitize.sh address [CTEST ARGS...]  ASan+UBSan over every test, in
#       build-fuzz/ (the fuzz build: ASan+UBSan, plus libFuzzer's coverage
#       hooks, which change no behaviour; scripts/fuzz.sh shares it).
#   scripts/sanitize.sh thread [CTEST ARGS...]   TSan over the tests whose threads
#       run outside CAF's uninstrumented library: memory (host pool, regions),
#       nvme (io_uring and thread engines, fault engine, swap store), the CPU
#       kernels (the fused Adam's threads) and the tokenizer (its parallel
#       encoder), in build-tsan/. oneTBB runs the kernels' and the Adam's
#       tasks; Debian's libtbb is not instrumented, so TSan cannot see how it
#       orders them and reports its own recycled task objects as races. The
#       step therefore builds the same oneTBB from Debian's source package
#       (apt-get source, verified by apt against the signed archive) with
#       -fsanitize=thread into build-tsan/onetbb/ once, and links against it.
# GPU tests are left out (no CUDA in these builds). Exits with ctest's status.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-}"
shift || true
command -v clang++ >/dev/null || { echo "sanitize.sh: clang++ is needed (apt-get install clang)" >&2; exit 2; }
# nvcc stays out: the sanitizers instrument host code only.
clean_env=(env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin CC=clang CXX=clang++)
jobs="$(nproc)"

# tsan_onetbb DIR: Debian's oneTBB (the installed libtbb-dev's source version)
# built with TSan and installed under DIR; skipped when DIR has it already.
tsan_onetbb() {
  local dir="$1" src
  [ -f "$dir/prefix/lib/cmake/TBB/TBBConfig.cmake" ] && return 0
  src="$(dpkg-query -W -f '${source:Package}=${source:Version}' libtbb-dev)"
  echo "sanitize.sh: building $src with -fsanitize=thread in $dir (once)"
  rm -rf "$dir"; mkdir -p "$dir/lists/partial"
  echo 'deb-src http://deb.debian.org/debian bookworm main' > "$dir/sources.list"
  local apt=(apt-get -q -o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$dir/lists")
  command -v dpkg-source >/dev/null || { echo "sanitize.sh: dpkg-source is needed (apt-get install dpkg-dev)" >&2; exit 2; }
  local fail="sanitize.sh: fetching $src's source failed; see $dir/apt.log"
  "${apt[@]}" update >"$dir/apt.log" 2>&1 || { echo "$fail" >&2; exit 1; }
  (cd "$dir" && "${apt[@]}" source --download-only "$src" >>"$dir/apt.log" 2>&1) || { echo "$fail" >&2; exit 1; }
  # apt checked the files against the signed archive; the uploader's key is not installed.
  dpkg-source -x --no-check "$dir"/*.dsc "$dir/src" >>"$dir/apt.log" 2>&1 || { echo "$fail" >&2; exit 1; }
  fail="sanitize.sh: building $src failed; see $dir/build.log"
  { "${clean_env[@]}" cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DTBB_SANITIZE=thread -DTBB_TEST=OFF -DTBBMALLOC_BUILD=OFF -DTBB_STRICT=OFF \
      -DCMAKE_INSTALL_PREFIX="$dir/prefix" &&
    cmake --build "$dir/build" -j"$jobs" && cmake --install "$dir/build"; } >"$dir/build.log" 2>&1 ||
    { echo "$fail" >&2; exit 1; }
}

case "$kind" in
  address)
    "${clean_env[@]}" cmake -S . -B build-fuzz -DDSINF_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build-fuzz -j"$jobs" >/dev/null
    bash scripts/fixtures.sh >/dev/null
    exec ctest --test-dir build-fuzz -LE gpu -j"$jobs" --output-on-failure "$@" ;;
  thread)
    tsan_onetbb "$PWD/build-tsan/onetbb"
    "${clean_env[@]}" cmake -S . -B build-tsan -DDSINF_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DTBB_DIR="$PWD/build-tsan/onetbb/prefix/lib/cmake/TBB" >/dev/null
    targets=(memory_test memory_util_test nvme_fault_engine_test nvme_swap_store_test
             nvme_engine_conformance_test kernels_cpu_ops_test kernels_cpu_decoder_ops_test
             kernels_cpu_precision_test kernels_cpu_adam_test kernels_cpu_adam_torch_test
             trainer_tokenizer_test)
    build_targets=()
    for t in "${targets[@]}"; do build_targets+=(--target "$t"); done
    cmake --build build-tsan -j"$jobs" "${build_targets[@]}" >/dev/null
    bash scripts/fixtures.sh >/dev/null
    export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
    # The communicator's tests run MPI ranks (Open MPI is not instrumented).
    status=0
    ctest --test-dir build-tsan -L 'memory|nvme|kernels' -LE gpu -E '^Communicator\.' \
      -j"$jobs" --output-on-failure "$@" || status=1
    ctest --test-dir build-tsan -R '^(Tokenizer|[A-Za-z]+/Tokenizer)' \
      -j"$jobs" --output-on-failure "$@" || status=1
    exit $status ;;
  *)
    echo "usage: scripts/sanitize.sh address|thread [CTEST ARGS...]" >&2; exit 2 ;;
esac
