#!/usr/bin/env bash
# Every check that needs an NVIDIA GPU, as one time-boxed run for a machine
# with CUDA, a compiler, CMake and (optionally) PyTorch but no package
# registry: build dsinf and the gpu-labelled tests with the CUDA backend,
# `ctest -L gpu`, `dsinf bench tiers`, `dsinf bench step` of the shipped
# configs on the GPU, the PyTorch GPT-2 comparison and, where python3 has
# `transformers`, scripts/transformers_check.py. Every result goes into one
# folder.
#
#   scripts/gpu-check.sh [options] [OUT_DIR]
#
#   OUT_DIR            default bench/results/<date>-<gpu>/ (commit it there)
#   --pack DIR         also keep DIR/<folder>.tar.gz, DIR/summary.txt and
#                      DIR/summary.json up to date after every step: three
#                      files, for a runner that brings back only a few
#   --budget SECONDS   the whole run's time limit (default 465, under 8 minutes);
#                      each step gets its own limit or what is left, if less
#   --jobs N           build jobs (default: every core)
#   --build-dir DIR    default build-gpu/
#   --no-gpu-check     skip the GPU check (to try the rest where there is none)
#   --carried          build against .gpu-deps/ even where the system has the libraries
#
# The libraries dsinf builds against come from the system when it has them,
# else from the Debian packages scripts/gpu-deps.sh put in .gpu-deps/ (unpacked
# with dpkg -x, or ar and tar, into .gpu-prefix/). Each step's output is in
# OUT_DIR/<step>.log, its verdict, exit status and seconds in summary.txt and
# summary.json; a failed step does not stop the next one. Exit status: 0 every
# step passed (steps skipped for a missing tool, such as PyTorch, included),
# 1 a step failed or ran out of time, 2 bad arguments, 3 this machine cannot
# run the checks (no GPU, no nvcc, no compiler, no CMake, no libraries):
# checked first, within seconds. The environment's DSINF_GPU_CHECK_NO_GPU=1,
# DSINF_GPU_CHECK_CARRIED=1, DSINF_GPU_CHECK_CONFIGS (the configs to bench,
# default "gpt2-124m llama-tiny zero3-nvme llama-tiny-nvme llama-lora-nvme"),
# DSINF_GPU_CHECK_CUDA_ARCHS (default: the GPU's own, e.g. 90) and
# DSINF_GPU_CHECK_COMMIT (recorded where the tree has no .git) do the same.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

usage() { sed -n '/^#   scripts/,/^#   --carried/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
no_gpu_check=${DSINF_GPU_CHECK_NO_GPU:-0}
carried=${DSINF_GPU_CHECK_CARRIED:-0}
budget_s=465
jobs=$(nproc)
build=$root/build-gpu
pack=""
out=""
while (($#)); do
  case $1 in
    --pack) pack=${2:?--pack needs a folder}; shift ;;
    --budget) budget_s=${2:?--budget needs seconds}; shift ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift ;;
    --build-dir) build=${2:?--build-dir needs a folder}; shift ;;
    --no-gpu-check) no_gpu_check=1 ;;
    --carried) carried=1 ;;
    -h | --help) usage ;;
    -*) echo "gpu-check: unknown option $1" >&2; usage ;;
    *) [[ -z $out ]] || usage; out=$1 ;;
  esac
  shift
done
[[ $budget_s =~ ^[0-9]+$ && $jobs =~ ^[0-9]+$ ]] || usage
deadline=$((SECONDS + budget_s))
cannot() { echo "gpu-check: $*; nothing was run" >&2; exit 3; }

# 1. Can this machine run the checks at all? Answered within seconds.
gpu="no GPU checked" cuda_archs=${DSINF_GPU_CHECK_CUDA_ARCHS:-}
if [[ $no_gpu_check != 1 ]]; then
  command -v nvidia-smi >/dev/null 2>&1 || cannot "no NVIDIA GPU here: nvidia-smi is not on the PATH"
  listing=$(timeout -k 5 20 nvidia-smi -L 2>&1)
  rc=$?
  if ((rc != 0)) || ! grep -q '^GPU [0-9]' <<<"$listing"; then
    ((rc == 124 || rc == 137)) && cannot "no NVIDIA GPU here: nvidia-smi -L did not answer in 20 s"
    cannot "no NVIDIA GPU here: nvidia-smi -L exited $rc and listed none: $(head -1 <<<"$listing")"
  fi
  query=$(timeout -k 5 20 nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader | head -1)
  gpu=${query%,*}
  gpu=${gpu:-unknown NVIDIA GPU}
  cc=${query##*, }
  [[ -z $cuda_archs && $cc =~ ^[0-9]+\.[0-9]+$ ]] && cuda_archs=${cc/./}
fi
export PATH="$PATH:/usr/local/cuda/bin"
nvcc=$(command -v nvcc || true)
[[ -n $nvcc || $no_gpu_check == 1 ]] || cannot "no CUDA compiler: nvcc is neither on the PATH nor in /usr/local/cuda/bin"
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || cannot "no C++ compiler (c++ or g++)"
if ! command -v cmake >/dev/null 2>&1; then
  # The lent machines' CMake may come as Python's cmake package only.
  cmake_bin=$(python3 -c 'import cmake; print(cmake.CMAKE_BIN_DIR)' 2>/dev/null) &&
    [[ -x $cmake_bin/cmake ]] && export PATH="$PATH:$cmake_bin"
  command -v cmake >/dev/null 2>&1 || cannot "no CMake (3.25 or newer) on the PATH or in python3's cmake package"
fi

# 2. The results folder, and what ran where.
slug=$(tr '[:upper:]' '[:lower:]' <<<"$gpu" | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//')
if [[ -z $out ]]; then
  out=$root/bench/results/$(date -u +%Y-%m-%d)-$slug
  [[ -e $out ]] && out=$out-$(date -u +%H%M%S)
fi
mkdir -p "$out" || cannot "cannot create $out"
out=$(cd "$out" && pwd)
[[ -z $pack ]] || { mkdir -p "$pack" && pack=$(cd "$pack" && pwd); } || cannot "cannot create $pack"
summary=$out/summary.txt
: >"$summary"
steps_json=()
failures=0

json_string() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "${s//$'\n'/ }"; }
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null) || commit=${DSINF_GPU_CHECK_COMMIT:-unknown (no .git here)}
if git -C "$root" rev-parse HEAD >/dev/null 2>&1 && [[ -n $(git -C "$root" status --porcelain 2>/dev/null) ]]; then
  commit="$commit + uncommitted changes"
fi

# summary.json, rewritten after every step so that it is whole even if the run is cut off.
write_json() {
  local IFS=,
  {
    printf '{"gpu": %s, "commit": %s, "date": %s, "budget_s": %d, "failed_steps": %d, "finished": %s,\n' \
      "$(json_string "$gpu")" "$(json_string "$commit")" "$(json_string "$started")" "$budget_s" \
      "$failures" "$1"
    printf ' "steps": [%s\n ]}\n' "${steps_json[*]}"
  } >"$out/summary.json.tmp" && mv "$out/summary.json.tmp" "$out/summary.json"
  [[ -z $pack ]] && return 0
  local name
  name=$(basename "$out")
  tar -C "$(dirname "$out")" -czf "$pack/$name.tar.gz.tmp" "$name" && mv "$pack/$name.tar.gz.tmp" "$pack/$name.tar.gz"
  cp "$out/summary.txt" "$out/summary.json" "$pack/"
}

# record NAME RC SECONDS [VERDICT [NOTE]]: one line of summary.txt, one entry of summary.json.
record() {
  local name=$1 rc=$2 seconds=$3 verdict=${4:-} note=${5:-}
  if [[ -z $verdict ]]; then
    verdict=ok
    ((rc == 0)) || verdict=failed
    ((rc == 124 || rc == 137)) && verdict="timed out"
  fi
  [[ $verdict == ok* || $verdict == skipped ]] || failures=$((failures + 1))
  printf '%-28s %-10s rc=%-4s %6ss  %s\n' "$name" "$verdict" "$rc" "$seconds" "$note" | tee -a "$summary" >&2
  steps_json+=("$(printf '\n  {"step": %s, "verdict": %s, "rc": %s, "seconds": %s, "note": %s}' \
    "$(json_string "$name")" "$(json_string "$verdict")" "${rc/-/null}" "$seconds" "$(json_string "$note")")")
  write_json false
}

# step NAME SECONDS COMMAND...: COMMAND under the lesser of SECONDS and what is
# left of the budget, stdout and stderr to NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - SECONDS - 5))
  ((left < limit)) && limit=$left
  if ((limit < 10)); then
    record "$name" - 0 "timed out" "not started: the ${budget_s}s budget is spent"
    return 1
  fi
  echo "gpu-check: $name (at most ${limit}s): $*" >&2
  local start=$EPOCHREALTIME rc
  timeout -k 10 "$limit" "$@" </dev/null >"$out/$name.log" 2>&1
  rc=$?
  record "$name" "$rc" "$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')"
  return "$rc"
}

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
python_info=$(timeout 90 python3 -c 'import sys; print(sys.version.split()[0], end="")
try:
    import torch; print(", torch", torch.__version__, "cuda", torch.cuda.is_available(), end="")
except Exception as e: print(", no torch:", e, end="")' 2>&1)
{
  echo "gpu: $gpu (compute capability ${cc:-unknown}; CUDA architectures built: ${cuda_archs:-the project default})"
  echo "commit: $commit"
  echo "date: $started"
  echo "host: $(uname -srm); $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"); $(nproc) cores; $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "compiler: $( (c++ --version || g++ --version) 2>/dev/null | head -1)"
  echo "nvcc: $([[ -n $nvcc ]] && "$nvcc" --version | tail -1 || echo none)"
  echo "cmake: $(cmake --version | head -1)"
  echo "python3: $python_info"
  echo "budget: ${budget_s}s, $jobs build jobs, build in $build"
  [[ -d /usr/share/common-licenses ]] || echo "warning: no /usr/share/common-licenses (the configs' data.path)"
} >"$out/machine.txt"
if [[ $no_gpu_check != 1 ]]; then
  timeout -k 5 30 nvidia-smi -q >"$out/nvidia-smi.txt" 2>&1
else
  echo "no GPU check (--no-gpu-check)" >"$out/nvidia-smi.txt"
fi

# 3. The libraries: the system's, else the carried Debian packages.
have_system_libraries() {
  local h
  for h in caf/all.hpp liburing.h tbb/tbb.h absl/status/status.h gtest/gtest.h nlohmann/json.hpp; do
    [[ -e /usr/include/$h || -e /usr/local/include/$h ]] || return 1
  done
  compgen -G '/usr/include/*/cblas.h' >/dev/null || compgen -G '/usr/include/cblas.h' >/dev/null
}
cmake_args=(-DCMAKE_BUILD_TYPE=Release)
[[ -n $nvcc ]] && cmake_args+=("-DCMAKE_CUDA_COMPILER=$nvcc")
[[ -n $cuda_archs ]] && cmake_args+=("-DCMAKE_CUDA_ARCHITECTURES=$cuda_archs")
[[ -f $build/CMakeCache.txt ]] || ! command -v ninja >/dev/null 2>&1 || cmake_args+=(-G Ninja)
plain_ld_library_path=${LD_LIBRARY_PATH:-}
if [[ $carried != 1 ]] && have_system_libraries; then
  echo "libraries: the system's" >>"$out/machine.txt"
else
  compgen -G "$root/.gpu-deps/*.deb" >/dev/null ||
    cannot "the system lacks dsinf's libraries and .gpu-deps/ holds no packages: run scripts/gpu-deps.sh where Debian's registry is reachable and bring .gpu-deps along"
  echo "libraries: the Debian packages in .gpu-deps, unpacked into .gpu-prefix: $(cd "$root/.gpu-deps" && ls -1 ./*.deb | sed 's|^\./||; s|_amd64\.deb$||' | tr '\n' ' ')" >>"$out/machine.txt"
  prefix=$root/.gpu-prefix
  # dpkg -x where there is dpkg; else ar and tar, as dpkg -x does.
  unpack='set -eo pipefail; rm -rf "$1"; mkdir -p "$1"; p=$1; shift
    for deb; do
      if command -v dpkg >/dev/null; then dpkg -x "$deb" "$p"; else
        m=$(ar t "$deb" | grep "^data\.tar")
        ar p "$deb" "$m" | case $m in *.xz) xz -dc ;; *.zst) zstd -dc ;; *.gz) gzip -dc ;; *) cat ;; esac |
          tar -x -C "$p"
      fi
      echo "unpacked $deb"
    done'
  step unpack-libraries 120 bash -c "$unpack" unpack "$prefix" "$root"/.gpu-deps/*.deb ||
    cannot "could not unpack .gpu-deps (see $out/unpack-libraries.log)"
  usr=$prefix/usr lib=$prefix/usr/lib/x86_64-linux-gnu
  blas=$lib/openblas-pthread
  export CPATH="$usr/include:$usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$lib:$blas${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export LD_LIBRARY_PATH="$lib:$blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PKG_CONFIG_PATH="$lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  cmake_args+=("-DCMAKE_PREFIX_PATH=$usr;$lib/cmake" "-DCMAKE_LIBRARY_PATH=$lib;$blas"
    -DBLA_VENDOR=OpenBLAS "-DCBLAS_INCLUDE_DIR=$usr/include/x86_64-linux-gnu/openblas-pthread")
fi

# 4. Configure, build dsinf and the gpu-labelled tests, run them.
step configure 120 cmake -S "$root" -B "$build" "${cmake_args[@]}"
# The gpu-labelled test targets, from tests/**/CMakeLists.txt, those this
# configuration defines (a ctest include file exists for each); every target
# if none is found.
targets=(dsinf)
while read -r t; do
  [[ -n $t && -n $(find "$build/tests" -name "$t\[1\]_include.cmake" -print -quit 2>/dev/null) ]] &&
    targets+=("$t")
done < <(find "$root/tests" -name CMakeLists.txt -exec cat {} + | tr '\n' ' ' |
  grep -oE 'dsinf_(cli_)?test\([^)]*\)' | grep -E 'LABELS[^)]*[[:space:]]gpu([[:space:])]|$)' |
  sed -E 's/^dsinf_(cli_)?test\(([A-Za-z0-9_]+).*/\2/')
# The NCCL communicator's test (add_test under mpiexec, not dsinf_test).
grep -qs NcclCommunicator "$build/tests/kernels/CTestTestfile.cmake" &&
  targets+=(kernels_nccl_comm_test)
((${#targets[@]} > 1)) || targets=(all)
# The build may take what the steps after it can spare: without it they have nothing to run.
step build $((deadline - SECONDS - 150)) cmake --build "$build" -j"$jobs" --target "${targets[@]}"
bin=$build/dsinf

if step ctest-gpu 240 ctest --test-dir "$build" -L gpu --no-tests=error --output-on-failure \
  --timeout 150 --output-junit "$out/ctest-gpu.xml"; then :; fi
if [[ -f $out/ctest-gpu.xml ]]; then
  tests=$(grep -c '<testcase ' "$out/ctest-gpu.xml")
  skipped=$(grep -c '<skipped' "$out/ctest-gpu.xml")
  echo "ctest-gpu: $tests tests, $skipped of them skipped themselves (see ctest-gpu.xml)" | tee -a "$summary" >&2
fi

# 5. The GPU benchmarks. NVMe rows and configs' nvme_path live on /var/tmp.
nvme_dir=/var/tmp/dsinf-gpu-check
mkdir -p "$nvme_dir"
step bench-tiers 90 "$bin" bench tiers --path "$nvme_dir" --json --out "$out/bench-tiers.json"
# NCCL over device buffers, one rank (the bus bandwidth needs several GPUs).
step bench-comm-nccl 60 "$bin" bench comm --device cuda --max-bytes 256M --json
device=${DSINF_GPU_CHECK_DEVICE:-cuda}
for config in ${DSINF_GPU_CHECK_CONFIGS:-gpt2-124m llama-tiny zero3-nvme llama-tiny-nvme llama-lora-nvme}; do
  step "bench-step-$config" 90 env DSINF_DEVICE="$device" "$bin" bench step \
    "$root/configs/$config.json" --json --trace "$out/bench-step-$config.trace.json"
done

# 6. PyTorch on the same GPU, and transformers on dsinf's directories.
if [[ $python_info == *", torch "*" cuda True"* ]]; then
  step torch-gpt2-124m 180 env LD_LIBRARY_PATH="$plain_ld_library_path" python3 \
    "$root/scripts/torch_gpt2_bench.py" --config "$root/configs/gpt2-124m.json" --json
else
  record torch-gpt2-124m - 0 skipped "python3 has no PyTorch that sees a CUDA device"
fi
if timeout 90 python3 -c 'import transformers, numpy' >/dev/null 2>&1; then
  step transformers-check 150 python3 "$root/scripts/transformers_check.py" --dsinf "$bin" \
    --out "$nvme_dir/transformers"
else
  record transformers-check - 0 skipped "python3 has no transformers"
fi

echo "gpu-check: $failures step(s) failed in $((SECONDS))s; results in $out" | tee -a "$summary" >&2
write_json true
((failures == 0))
