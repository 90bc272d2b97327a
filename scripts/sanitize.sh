#!/usr/bin/env bash
# Sanitizers over the test suite (clang, CPU backend):
#   scripts/sanitize.sh address [CTEST ARGS...]  ASan+UBSan over every test, in
#       build-fuzz/ (the fuzz build: ASan+UBSan, plus libFuzzer's coverage
#       hooks, which change no behaviour; scripts/fuzz.sh shares it).
#   scripts/sanitize.sh thread [CTEST ARGS...]   TSan over the tests whose threads
#       run outside CAF's uninstrumented library: memory (host pool, regions),
#       nvme (io_uring and thread engines, fault engine, swap store), the CPU
#       kernels (the fused Adam's threads) and the tokenizer (its parallel
#       encoder), in build-tsan/.
# GPU tests are left out (no CUDA in these builds). Exits with ctest's status.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-}"
shift || true
command -v clang++ >/dev/null || { echo "sanitize.sh: clang++ is needed (apt-get install clang)" >&2; exit 2; }
# nvcc stays out: the sanitizers instrument host code only.
clean_env=(env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin CC=clang CXX=clang++)
jobs="$(nproc)"
case "$kind" in
  address)
    "${clean_env[@]}" cmake -S . -B build-fuzz -DDSINF_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build-fuzz -j"$jobs" >/dev/null
    bash scripts/fixtures.sh >/dev/null
    exec ctest --test-dir build-fuzz -LE gpu -j"$jobs" --output-on-failure "$@" ;;
  thread)
    "${clean_env[@]}" cmake -S . -B build-tsan -DDSINF_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
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
