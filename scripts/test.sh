#!/usr/bin/env bash
# Fresh machine to a tested build: install what is missing (with the test
# suite's PyTorch reference), build everything, run every test. GPU tests skip
# themselves when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test [1/3] Debian packages: installing what is missing (scripts/setup.sh --test)"
scripts/setup.sh --test
echo "test [2/3] building dsinf and every test binary"
scripts/build.sh
echo "test [3/3] running the suite (ctest)"
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
