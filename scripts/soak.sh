#!/usr/bin/env bash
# Soak: scripts/soak.sh [STEPS, default 10000]. Trains a tiny GPT-2 with its
# parameters and optimizer state on NVMe (ZeRO-3) and a background save every
# 500 steps, sampling the process's resident memory (VmRSS) and open file
# descriptors twice a second against the step it is at. Prints the samples'
# quartiles and the least-squares slope of RSS and of descriptors per 1000
# steps over the second half of the run (after warm-up); exits 1 if the run
# fails. DSINF_BIN picks the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-10000}"
bin="$(realpath "${DSINF_BIN:-build/dsinf}")"
work="$(mktemp -d /tmp/dsinf-soak-XXXXXX)"
trap 'rm -rf "$work"' EXIT
corpus=/usr/share/common-licenses/GPL-3
[ -f "$corpus" ] || { seq 1 20000 > "$work/corpus.txt"; corpus="$work/corpus.txt"; }
mkdir -p "$work/swap"
cat > "$work/soak.json" <<JSON
{"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1, "device": "cpu",
 "optimizer": {"type": "AdamW", "params": {"lr": 1e-4}},
 "steps_per_print": 50,
 "zero_optimization": {"stage": 3,
   "offload_param": {"device": "nvme", "nvme_path": "$work/swap", "max_in_cpu": 0},
   "offload_optimizer": {"device": "nvme", "nvme_path": "$work/swap"}},
 "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 64, "vocab_size": 256},
 "data": {"path": "$corpus", "seq_len": 64},
 "train": {"steps": $steps, "save_interval": 500, "output_dir": "$work/out", "seed": 5}}
JSON
"$bin" train "$work/soak.json" --json >"$work/log" 2>"$work/err" &
pid=$!
: >"$work/samples"
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
  step=$(tail -n 2 "$work/log" 2>/dev/null | grep -o '"step":[0-9]*' | tail -1 | cut -d: -f2 || true)
  [ -n "$rss" ] && [ -n "$step" ] && echo "$step $rss $fds" >>"$work/samples"
  sleep 0.5
done
if ! wait "$pid"; then echo "soak: the run failed:"; tail -3 "$work/err"; exit 1; fi
awk -v steps="$steps" '
  { s[NR] = $1; r[NR] = $2; f[NR] = $3 }
  END {
    if (NR < 4) { print "soak: too few samples (" NR ")"; exit 1 }
    printf "soak: %d steps, %d samples\n", steps, NR
    printf "  step      rss KiB  fds\n"
    for (q = 1; q <= 4; ++q) { i = int(NR * q / 4); printf "  %-8d %8d  %d\n", s[i], r[i], f[i] }
    # least squares over the second half
    n = 0; sx = sy = sxx = sxy = sf = sxf = 0
    for (i = int(NR / 2) + 1; i <= NR; ++i) {
      n++; sx += s[i]; sy += r[i]; sxx += s[i] * s[i]; sxy += s[i] * r[i]; sf += f[i]; sxf += s[i] * f[i]
    }
    d = n * sxx - sx * sx
    if (d == 0) { print "  slope: the second half covers one step only"; exit 0 }
    printf "  RSS slope over the second half: %.3f KiB per 1000 steps\n", 1000 * (n * sxy - sx * sy) / d
    printf "  descriptor slope over the second half: %.4f per 1000 steps\n", 1000 * (n * sxf - sx * sf) / d
  }' "$work/samples"
