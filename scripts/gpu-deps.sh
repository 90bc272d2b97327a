#!/usr/bin/env bash
# Downloads the Debian packages dsinf builds against into .gpu-deps/ (git-ignored),
# for a GPU machine that has CUDA, a compiler and CMake but no package
# registry: scripts/gpu-check.sh unpacks them there (dpkg -x) when its system
# lacks them. Run it on a Debian 12 machine with the registry (apt-get update
# done); it keeps each package at the registry's current version, downloading
# only what is missing or stale, and prints the size that would travel.
#
# The set: the -dev packages scripts/setup.sh installs (less libgmock-dev: no
# test uses gmock and GTest's CMake config includes it only if present) and
# the runtime libraries they link, down to the ones a CUDA image with a
# compiler already has (libc, libstdc++, libgcc, libssl): CAF core and io
# (openssl: io's dependency), liburing, oneTBB (tbbmalloc and tbbbind, which
# loads hwloc), Abseil, GoogleTest, nlohmann-json, and OpenBLAS with the
# gfortran and quadmath runtime it needs. Tried by building with only these
# unpacked, the system's copies hidden (see the README's GPU checks).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/.gpu-deps
packages=(libcaf-dev libcaf-core0.17 libcaf-io0.17 libcaf-openssl0.17
  liburing-dev liburing2
  libtbb-dev libtbb12 libtbbmalloc2 libtbbbind-2-5 libhwloc15
  libabsl-dev libabsl20220623
  libgtest-dev nlohmann-json3-dev
  libopenblas-dev libopenblas0 libopenblas0-pthread libopenblas-pthread-dev libgfortran5 libquadmath0)
mkdir -p "$dest"
cd "$dest"
missing=()
for p in "${packages[@]}"; do
  version=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [[ -z $version || $version == "(none)" ]]; then
    echo "gpu-deps: the registry has no $p (run apt-get update first?)" >&2
    exit 1
  fi
  # apt-get download writes an epoch's colon as %3a.
  compgen -G "${p}_${version//:/%3a}_*.deb" >/dev/null && continue
  rm -f "${p}"_*.deb
  missing+=("$p")
done
if ((${#missing[@]})); then
  echo "gpu-deps: downloading ${missing[*]}"
  apt-get download "${missing[@]}"
fi
# Anything else here (a package dropped from the list) would be unpacked too.
for f in *.deb; do
  p=${f%%_*}
  [[ " ${packages[*]} " == *" $p "* ]] || { echo "gpu-deps: removing $f (not in the list)"; rm -f "$f"; }
done
deps_bytes=$(du -cb ./*.deb | tail -1 | cut -f1)
tree_bytes=$(cd "$root" && git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "gpu-deps: ${#packages[@]} packages, $(mib "$deps_bytes") in $dest;" \
  "with the source tree ($(mib "$tree_bytes")): $(mib $((deps_bytes + tree_bytes))) to carry"
if ((deps_bytes + tree_bytes > 60 * 1048576)); then
  echo "gpu-deps: more than 60 MiB to carry" >&2
  exit 1
fi
