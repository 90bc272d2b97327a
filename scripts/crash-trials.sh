#!/usr/bin/env bash
# Crash trials: scripts/crash-trials.sh [N] [PLACEMENT...]
# For each placement (memory, nvme, lora, ranks; default all), trains a tiny
# model once uninterrupted, then N times under SIGKILL: each trial starts
# `dsinf train`, kills it (the whole process group, mpirun and its ranks
# included) at a random moment -- inside checkpoint writes too -- and starts
# it again, until a start runs to the end. Every trial must end with the
# final checkpoint byte-identical to the uninterrupted run's, no start may
# fail (a torn or half-written file loaded would), and no swap directory of
# a killed run may be left once the next start has run. Seeded
# (CRASH_SEED, default 1): a failure reproduces. DSINF_BIN picks the binary.
# A trial kills at most CRASH_MAX_KILLS (default 8) times, then lets the start
# run to its end, so a restart slower than the measured run cannot kill
# forever; a start still running after CRASH_HANG_S seconds (default 120, or
# 20 times the uninterrupted run if longer) is reported as hung and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
trials="${1:-5}"
shift || true
placements=("$@")
if [ ${#placements[@]} -eq 0 ]; then placements=(memory nvme lora ranks); fi
bin="$(realpath "${DSINF_BIN:-build/dsinf}")"
RANDOM="${CRASH_SEED:-1}"
work="$(mktemp -d /tmp/dsinf-crash-XXXXXX)"
trap 'rm -rf "$work"' EXIT
corpus=/usr/share/common-licenses/GPL-3
[ -f "$corpus" ] || { seq 1 20000 > "$work/corpus.txt"; corpus="$work/corpus.txt"; }

# config PLACEMENT OUT SWAP: a 12-step run saving every 2 steps.
config() {
  local placement="$1" out="$2" swap="$3" model zero extra=""
  model='"model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 64, "vocab_size": 256}'
  zero='"zero_optimization": {"stage": 0}'
  case "$placement" in
    nvme)
      zero='"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "'"$swap"'"}, "offload_optimizer": {"device": "nvme", "nvme_path": "'"$swap"'"}}' ;;
    ranks)  # with gradient visits in flight (overlap_comm, the least bucket)
      zero='"zero_optimization": {"stage": 3, "overlap_comm": true, "reduce_bucket_size": 1, "offload_param": {"device": "nvme", "nvme_path": "'"$swap"'"}, "offload_optimizer": {"device": "nvme", "nvme_path": "'"$swap"'"}}' ;;
    lora)
      model='"model": {"type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 256, "max_position_embeddings": 64, "seed": 42}'
      zero='"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "'"$swap"'"}, "offload_optimizer": {"device": "cpu"}}'
      extra=', "lora": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "target_modules": "all-linear"}' ;;
  esac
  cat <<JSON
{"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2, "device": "cpu",
 "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "weight_decay": 0.01}},
 $zero, $model$extra,
 "data": {"path": "$corpus", "seq_len": 64},
 "train": {"steps": 12, "save_interval": 2, "output_dir": "$out", "seed": 3}}
JSON
}

# start PLACEMENT CONFIG: runs train in a process group of its own; sets pid.
start() {
  if [ "$1" = ranks ]; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 setsid mpirun -n 2 --oversubscribe \
      --allow-run-as-root --mca orte_base_help_aggregate 0 "$bin" train "$2" >>"$work/log" 2>&1 &
  else
    setsid "$bin" train "$2" >>"$work/log" 2>&1 &
  fi
  pid=$!
}

# finish_or_fail WHAT: waits for the started run up to the hang limit; a run
# still going then is killed and reported; returns the run's exit status.
finish_or_fail() {
  local limit=$(( $(date +%s) + hang_s ))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$limit" ]; then
      kill -9 -- "-$pid" 2>/dev/null || true
      pkill -9 -f -- "train $2" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      echo "$1: still running after ${hang_s} s, killed as hung"; tail -5 "$work/log"
      return 124
    fi
    sleep 0.05
  done
  wait "$pid"
}

# The files of the final checkpoint (the manifest and its parts, or one file).
final_files() { ls "$1" | grep -E '^ckpt-00000012' | sort; }

max_kills="${CRASH_MAX_KILLS:-8}"
failed=0
for placement in "${placements[@]}"; do
  mkdir -p "$work/$placement-swap"
  config "$placement" "$work/$placement-ref" "$work/$placement-swap" > "$work/$placement-ref.json"
  t0=$(date +%s%N)
  hang_s="${CRASH_HANG_S:-120}"
  start "$placement" "$work/$placement-ref.json"
  finish_or_fail "$placement: the uninterrupted run" "$work/$placement-ref.json" ||
    { echo "$placement: the uninterrupted run failed"; tail -5 "$work/log"; exit 1; }
  run_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ $(( run_ms * 20 / 1000 )) -le "$hang_s" ] || hang_s=$(( run_ms * 20 / 1000 ))
  [ -n "$(final_files "$work/$placement-ref")" ] || { echo "$placement: no final checkpoint"; exit 1; }
  kills=0 bad=0
  for trial in $(seq 1 "$trials"); do
    out="$work/$placement-$trial" swap="$work/$placement-swap-$trial"
    mkdir -p "$swap"
    config "$placement" "$out" "$swap" > "$out.json"
    trial_kills=0
    while :; do
      start "$placement" "$out.json"
      delay_ms=$(( RANDOM % (run_ms + 1) ))
      deadline=$(( $(date +%s%N) / 1000000 + delay_ms ))
      while [ "$trial_kills" -lt "$max_kills" ] && kill -0 "$pid" 2>/dev/null &&
            [ $(( $(date +%s%N) / 1000000 )) -lt $deadline ]; do
        sleep 0.01
      done
      if [ "$trial_kills" -lt "$max_kills" ] && kill -0 "$pid" 2>/dev/null; then
        kill -9 -- "-$pid" 2>/dev/null || true
        # mpirun's ranks run in process groups of their own: killed by their config.
        pkill -9 -f -- "train $out.json" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        # Gone before the next start, which may then clean up after them
        # (a rank the dying launcher was still forking shows up late).
        quiet=0
        for _ in $(seq 1 300); do
          if pkill -9 -f -- "train $out.json" 2>/dev/null; then quiet=0; else quiet=$((quiet + 1)); fi
          [ "$quiet" -ge 20 ] && break
          sleep 0.01
        done
        kills=$((kills + 1)) trial_kills=$((trial_kills + 1))
        continue
      fi
      if finish_or_fail "$placement trial $trial" "$out.json"; then break; fi
      echo "$placement trial $trial: a start failed after a kill:"; tail -5 "$work/log"; bad=1; break
    done
    [ "$bad" = 1 ] && break
    for f in $(final_files "$work/$placement-ref"); do
      if ! cmp -s "$work/$placement-ref/$f" "$out/$f"; then
        echo "$placement trial $trial: $f differs from the uninterrupted run"; bad=1
      fi
    done
    [ "$(final_files "$out")" = "$(final_files "$work/$placement-ref")" ] || bad=1
    if find "$swap" -name 'dsinf-swap-*' | grep -q .; then
      echo "$placement trial $trial: a swap directory was left behind: $(find "$swap" -name "dsinf-swap-*" | head -3)"; bad=1
    fi
    [ "$bad" = 1 ] && break
    rm -rf "$out" "$swap"
  done
  status=passed
  if [ "$bad" = 1 ]; then status=FAILED; failed=1; fi
  echo "$placement: $trials trials, $kills kills, run ${run_ms} ms: $status"
done
exit $failed
