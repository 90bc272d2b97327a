#!/usr/bin/env bash
# Fresh machine to a tested build: install what is missing (with the test
# suite's PyTorch reference), build everything, run every test, then fuzz
# every parser for 30 s each with a fixed seed (scripts/fuzz.sh; its clang
# build is build-fuzz/). GPU tests skip themselves when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test [1/4] Debian packages and npm fixtures: installing what is missing (scripts/setup.sh --test, scripts/fixtures.sh)"
scripts/setup.sh --test
scripts/fixtures.sh
echo "test [2/4] building dsinf and every test binary"
scripts/build.sh
echo "test [3/4] running the suite (ctest)"
status=0
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@" || status=$?
echo "test [4/4] fuzzing every parser 30 s (scripts/fuzz.sh 30, seed 1)"
FUZZ_SEED=1 scripts/fuzz.sh 30 || status=1
exit $status
