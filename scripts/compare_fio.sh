#!/usr/bin/env bash
# Compares `dsinf bench nvme` with fio (ioengine=io_uring) on the same disk,
# file system, block size, queue depth and file size, interleaved in one run:
# each round runs both, alternating which goes first. Prints GB/s (1e9 bytes/s)
# per round, the medians and the ratio dsinf/fio for write and read.
#
#   scripts/compare_fio.sh --dir DIR [--bs 1M] [--qd 8] [--size 1G] [--rounds 3]
#                          [--engine auto|uring|threads] [--dsinf PATH] [--settle SECONDS]
#
# Both write a fresh preallocated file (fio's default fallocate=native; dsinf
# fallocates too), read it back with O_DIRECT and delete it; neither fsyncs.
# Before each tool's run: sync and a pause of --settle seconds (default 1), so
# neither inherits the other's pending journal commit or discards.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

repo_dir="$(cd "$(dirname "$0")/.." && pwd)"
dir="" bs="1M" qd=8 size="1G" rounds=3 engine="auto" settle_s=1 dsinf="${DSINF:-$repo_dir/build/dsinf}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --bs) bs="$2"; shift 2 ;;
    --qd) qd="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    --dsinf) dsinf="$2"; shift 2 ;;
    --settle) settle_s="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare_fio.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ -n "$dir" ]] || { echo "compare_fio.sh: --dir DIR is required" >&2; exit 2; }
[[ -d "$dir" ]] || { echo "compare_fio.sh: $dir is not a directory" >&2; exit 2; }
[[ -x "$dsinf" ]] || { echo "compare_fio.sh: no dsinf binary at $dsinf (build it or pass --dsinf)" >&2; exit 2; }
command -v fio >/dev/null || { echo "compare_fio.sh: fio not found; install it: scripts/setup.sh --bench (apt-get install fio)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "compare_fio.sh: python3 is needed to read the JSON" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "compare_fio.sh: --rounds must be a positive integer" >&2; exit 2; }

# Sizes in bytes, so both tools get exactly the same numbers.
to_bytes() {
  python3 -c '
import re, sys
m = re.fullmatch(r"(\d+)([KMGT]?)(iB)?", sys.argv[1])
if not m: sys.exit("compare_fio.sh: bad byte count " + sys.argv[1])
print(int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2)])' "$1"
}
bs_bytes="$(to_bytes "$bs")"
size_bytes="$(to_bytes "$size")"

work="$dir/dsinf-fio-$$"
# Like dsinf's private directory: fio's file lives in a directory made fresh
# for each run, so both files are placed by the same allocator decisions.
fio_dir="$dir/dsinf-fio-$$-run"
fio_file="$fio_dir/fio.dat"
mkdir -p "$work"
trap 'rm -rf "$work" "$fio_dir"' EXIT
trap 'exit 130' INT TERM

dsinf_cmd=("$dsinf" bench nvme --path "$dir" --size "$size_bytes" --block-size "$bs_bytes"
           --queue-depth "$qd" --engine "$engine" --json)
fio_args() {  # fio_args write|read OUTPUT: sets fio_argv
  fio_argv=(fio --name="dsinf-compare-$1" --filename="$fio_file" --ioengine=io_uring --direct=1
            --rw="$1" --bs="$bs_bytes" --iodepth="$qd" --size="$size_bytes" --numjobs=1
            --group_reporting --output-format=json --output="$2")
}

echo "dsinf:     ${dsinf_cmd[*]}"
fio_args write "$work/fio-write.json"; echo "fio write: ${fio_argv[*]}"
fio_args read "$work/fio-read.json"; echo "fio read:  ${fio_argv[*]}"
echo "(each run: a fresh directory and file, deleted when done; sync and ${settle_s}s pause before each run)"
echo

results="$work/results.txt"
: >"$results"
# Each tool starts from the same disk state: its own fresh file, the other's
# file already deleted, and the file system's pending work (journal commit,
# discards of deleted files) flushed by sync.
settle() { sync; sleep "$settle_s"; }

run_dsinf() {
  local out
  settle
  if ! out="$("${dsinf_cmd[@]}" 2>"$work/dsinf.err")"; then
    echo "compare_fio.sh: dsinf failed:" >&2; cat "$work/dsinf.err" >&2; exit 1
  fi
  python3 -c '
import json, sys
r = json.loads(sys.argv[1].strip().splitlines()[-1])
print("dsinf", r["write_gbps"], r["read_gbps"], r["engine"])' "$out" >>"$results"
}
run_fio() {
  settle
  mkdir "$fio_dir"
  fio_args write "$work/fio-write.json"; "${fio_argv[@]}" >/dev/null
  fio_args read "$work/fio-read.json"; "${fio_argv[@]}" >/dev/null
  rm -rf "$fio_dir"  # as dsinf removes its directory when done
  python3 -c '
import json, sys
def gbps(path, op):
    with open(path) as f:
        text = f.read()
    job = json.loads(text[text.index("{"):])["jobs"][0]
    return job[op]["bw_bytes"] / 1e9  # bw_bytes is bytes/s (bw is KiB/s)
print("fio", gbps(sys.argv[1], "write"), gbps(sys.argv[2], "read"), "io_uring")' \
    "$work/fio-write.json" "$work/fio-read.json" >>"$results"
}

for ((round = 1; round <= rounds; ++round)); do
  if ((round % 2 == 1)); then
    echo "round $round: dsinf, then fio" >&2; run_dsinf; run_fio
  else
    echo "round $round: fio, then dsinf" >&2; run_fio; run_dsinf
  fi
done

python3 - "$results" "$bs_bytes" "$qd" "$size_bytes" "$dir" <<'PY'
import statistics, sys
path, bs, qd, size, directory = sys.argv[1:]
rows = [line.split() for line in open(path)]
dsinf = [(float(w), float(r)) for tool, w, r, _ in rows if tool == "dsinf"]
fio = [(float(w), float(r)) for tool, w, r, _ in rows if tool == "fio"]
engine = next(e for tool, _, _, e in rows if tool == "dsinf")
print(f"block size {bs} B, queue depth {qd}, {size} B file in {directory}; "
      f"dsinf engine {engine}, fio io_uring; GB/s = 1e9 bytes/s")
print(f"{'round':<8}{'dsinf write':>12}{'fio write':>12}{'dsinf read':>12}{'fio read':>12}")
for i, (d, f) in enumerate(zip(dsinf, fio), 1):
    print(f"{i:<8}{d[0]:>12.3f}{f[0]:>12.3f}{d[1]:>12.3f}{f[1]:>12.3f}")
med = lambda xs, k: statistics.median(x[k] for x in xs)
dw, fw, dr, fr = med(dsinf, 0), med(fio, 0), med(dsinf, 1), med(fio, 1)
print(f"{'median':<8}{dw:>12.3f}{fw:>12.3f}{dr:>12.3f}{fr:>12.3f}")
wr, rr = dw / fw, dr / fr
verdict = lambda x: "meets" if x >= 0.95 else "BELOW"
print(f"ratio dsinf/fio: write {wr:.3f} ({verdict(wr)} 0.95), read {rr:.3f} ({verdict(rr)} 0.95)")
# Paired per round, which is less sensitive to the disk drifting during the run.
pw = statistics.median(d[0] / f[0] for d, f in zip(dsinf, fio))
pr = statistics.median(d[1] / f[1] for d, f in zip(dsinf, fio))
print(f"median of per-round ratios: write {pw:.3f}, read {pr:.3f}")
PY
