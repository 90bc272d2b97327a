#!/usr/bin/env bash
# Every check that needs an NVIDIA GPU, as one time-boxed run for a machine
# with CUDA, a compiler, CMake and (optionally) PyTorch but no package
# registry: build with the CUDA backend, `ctest -L gpu`, the GPU benchmarks,
# the PyTorch comparison and, where python3 has `transformers`, the check that
# it loads dsinf's Hugging Face directories and agrees with dsinf's loss
# (scripts/transformers_check.py). Every result goes into one folder:
#
#   scripts/gpu-check.sh [OUT_DIR]
#
# OUT_DIR defaults to $OUT, else bench/results/<date>-<gpu>. The libraries
# dsinf builds against come from the system when it has them, else from the
# Debian packages scripts/gpu-deps.sh put in .gpu-deps/ (unpacked with
# dpkg -x into .gpu-prefix/). Each step is logged to OUT_DIR/<step>.log with
# its exit status and seconds in summary.txt and summary.json; a failed step
# does not stop the next. Exit status: 0 all passed, 1 a step failed, 3 no
# GPU (checked first, within seconds). DSINF_GPU_CHECK_NO_GPU=1 skips the GPU
# check and DSINF_GPU_CHECK_CARRIED=1 uses .gpu-deps even where the system has
# the libraries (to try those paths on a machine without a GPU).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
jobs=$(nproc)

if [[ "${DSINF_GPU_CHECK_NO_GPU:-0}" != 1 ]]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! timeout 30 nvidia-smi -L 2>/dev/null | grep -q GPU; then
    echo "gpu-check: no NVIDIA GPU here (nvidia-smi is missing or lists none); nothing was run" >&2
    exit 3
  fi
  gpu=$(timeout 30 nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')
else
  gpu=no-gpu
fi
out=${1:-${OUT:-$root/bench/results/$(date +%Y-%m-%d)-$gpu}}
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
echo "[" >"$out/summary.json"
failures=0
first=1

# step NAME SECONDS COMMAND...: runs COMMAND with a time limit, logging to NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  local start end rc
  start=$(date +%s.%N)
  echo "gpu-check: $name (at most ${limit}s)" >&2
  timeout -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  local seconds
  seconds=$(awk "BEGIN {printf \"%.1f\", $end - $start}")
  local verdict=ok
  ((rc == 0)) || { verdict=failed; failures=$((failures + 1)); }
  ((rc == 124 || rc == 137)) && verdict="timed out"
  printf '%-22s %-9s rc=%-3d %6ss\n' "$name" "$verdict" "$rc" "$seconds" | tee -a "$summary" >&2
  ((first)) || echo "," >>"$out/summary.json"
  first=0
  printf '  {"step": "%s", "rc": %d, "seconds": %s, "verdict": "%s"}' \
    "$name" "$rc" "$seconds" "$verdict" >>"$out/summary.json"
}

# The libraries: the system's, else the carried Debian packages.
have_system_deps() {
  local h
  for h in caf/all.hpp liburing.h tbb/tbb.h absl/status/status.h gtest/gtest.h nlohmann/json.hpp; do
    [[ -e /usr/include/$h ]] || return 1
  done
}
cmake_args=(-DCMAKE_BUILD_TYPE=Release)
use_carried_deps() {
  local prefix="$root/.gpu-prefix" deb
  if ! compgen -G "$root/.gpu-deps/*.deb" >/dev/null; then
    echo "gpu-check: the system lacks dsinf's libraries and .gpu-deps/ is empty;" \
      "run scripts/gpu-deps.sh where Debian's registry is reachable and carry .gpu-deps" >&2
    return 1
  fi
  mkdir -p "$prefix"
  for deb in "$root"/.gpu-deps/*.deb; do dpkg -x "$deb" "$prefix" || return 1; done
  local usr="$prefix/usr" lib="$prefix/usr/lib/x86_64-linux-gnu"
  local blas="$lib/openblas-pthread"
  export CPATH="$usr/include:$usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$lib:$blas${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export LD_LIBRARY_PATH="$lib:$blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  cmake_args+=("-DCMAKE_PREFIX_PATH=$usr;$lib/cmake" "-DCMAKE_LIBRARY_PATH=$lib;$blas"
    -DBLA_VENDOR=OpenBLAS "-DCBLAS_INCLUDE_DIR=$usr/include/x86_64-linux-gnu/openblas-pthread")
}

{
  echo "gpu: $gpu"
  echo "commit: $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (uncommitted changes)')"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cores: $jobs"
} >"$out/machine.txt"
timeout 30 nvidia-smi -q >"$out/nvidia-smi.txt" 2>&1 || true
export PATH="/usr/local/cuda/bin:$PATH"
if have_system_deps && [[ "${DSINF_GPU_CHECK_CARRIED:-0}" != 1 ]]; then
  echo "libraries: the system's" >>"$out/machine.txt"
else
  echo "libraries: carried Debian packages (.gpu-deps)" >>"$out/machine.txt"
  use_carried_deps || exit 1
fi

build="$root/build-gpu"
step configure 180 cmake -S "$root" -B "$build" "${cmake_args[@]}"
step build 330 cmake --build "$build" -j"$jobs"
bin="$build/dsinf"
step ctest-gpu 300 ctest --test-dir "$build" -L gpu --output-on-failure \
  --output-junit "$out/ctest-gpu.xml"
step bench-tiers 120 "$bin" bench tiers --json
for config in gpt2-124m llama-tiny; do
  step "bench-step-$config" 150 env DSINF_DEVICE=cuda "$bin" bench step "$root/configs/$config.json" --json
done
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  step torch-gpt2-124m 180 python3 "$root/scripts/torch_gpt2_bench.py" \
    --config "$root/configs/gpt2-124m.json" --json
else
  echo "torch-gpt2-124m        skipped: python3 has no PyTorch with CUDA" | tee -a "$summary" >&2
fi
if python3 -c 'import transformers, numpy' 2>/dev/null; then
  step transformers-check 240 python3 "$root/scripts/transformers_check.py" --dsinf "$bin" \
    --out "$out/transformers"
else
  echo "transformers-check     skipped: python3 has no transformers" | tee -a "$summary" >&2
fi
echo "" >>"$out/summary.json"
echo "]" >>"$out/summary.json"
echo "gpu-check: $failures step(s) failed; results in $out" | tee -a "$summary" >&2
((failures == 0))
