#!/usr/bin/env bash
# Downloads the Debian packages dsinf builds against into .gpu-deps/ (git-ignored),
# for a GPU machine that has CUDA, a compiler and CMake but no package
# registry: scripts/gpu-check.sh unpacks them there with dpkg -x. Run it on
# a Debian 12 machine with the registry; it skips what is already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.gpu-deps"
packages=(libcaf-dev libcaf-core0.17 libcaf-io0.17 libcaf-openssl0.17 liburing-dev liburing2
  libtbb-dev libtbb12 libtbbmalloc2 libtbbbind-2-5 libhwloc15 libabsl-dev libabsl20220623
  libgtest-dev nlohmann-json3-dev libopenblas-dev libopenblas0 libopenblas0-pthread
  libopenblas-pthread-dev libgfortran5)
mkdir -p "$dest"
cd "$dest"
missing=()
for p in "${packages[@]}"; do
  compgen -G "${p}_*.deb" >/dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "gpu-deps: downloading ${#missing[@]} packages into $dest"
  apt-get download "${missing[@]}"
fi
echo "gpu-deps: $(ls -1 "$dest"/*.deb | wc -l) packages, $(du -sh "$dest" | cut -f1) in $dest"
