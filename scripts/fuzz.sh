#!/usr/bin/env bash
# Fuzzes every parser of outside input (tests/fuzz) with libFuzzer, ASan and
# UBSan: scripts/fuzz.sh [SECONDS per target, default 30] [TARGET...].
# Builds build-fuzz/ with clang (CPU backend), seeds each target's corpus in
# build-fuzz/fuzz-corpus/<target> from tests/fuzz/corpus/<target>, and runs it
# with a memory limit (-rss_limit_mb) and a per-input timeout (-timeout).
# Prints a table (target, executions, crashes) and exits 1 if any input
# crashed, hung or ran out of memory; the inputs are under
# build-fuzz/fuzz-artifacts/<target>/ -- copy each into
# tests/fuzz/regressions/<target>/ once fixed, so the replay test keeps it.
# FUZZ_SEED fixes libFuzzer's seed (CI uses 1), so a run repeats its inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(config hf_config safetensors hf_index checkpoint data tokenizer chat_template)
fi
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is needed (apt-get install clang)" >&2; exit 2; }
# nvcc stays out of this build: the fuzz targets parse, they do not compute.
env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin CC=clang CXX=clang++ \
  cmake -S . -B build-fuzz -DDSINF_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
build_targets=()
for t in "${targets[@]}"; do build_targets+=(--target "${t}_fuzz"); done
cmake --build build-fuzz -j"$(nproc)" "${build_targets[@]}" >/dev/null
failed=0
printf '%-15s %12s %8s\n' target executions crashes
for t in "${targets[@]}"; do
  corpus="build-fuzz/fuzz-corpus/$t" artifacts="build-fuzz/fuzz-artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  log="build-fuzz/fuzz-$t.log"
  stamp="build-fuzz/fuzz-$t.started"  # this run's crashes are the newer files
  touch "$stamp"; sleep 1
  set +e
  seed=()
  if [ -n "${FUZZ_SEED:-}" ]; then seed=(-seed="$FUZZ_SEED"); fi
  # The fuzz targets start no MPI ranks: the slow unwinding compiled into
  # sanitized executables for Open MPI's leak suppressions only costs them
  # two thirds of their executions.
  LSAN_OPTIONS="fast_unwind_on_malloc=1${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
    build-fuzz/tests/fuzz/"${t}_fuzz" "$corpus" "${seed[@]}" -max_total_time="$seconds" -rss_limit_mb=2048 \
    -timeout=10 -max_len=65536 -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  crashes=$(find "$artifacts" -type f -newer "$stamp" | wc -l)
  printf '%-15s %12s %8s\n' "$t" "${runs:-0}" "$crashes"
  if [ "$crashes" -gt 0 ]; then failed=1; fi
done
exit $failed
