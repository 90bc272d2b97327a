#!/usr/bin/env bash
# Fresh machine to a tested build: install what is missing (with the test
# suite's PyTorch reference), build everything, run every test. GPU tests skip
# themselves when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test [1/3] Debian packages and npm fixtures: installing what is missing (scripts/setup.sh --test, scripts/fixtures.sh)"
scripts/setup.sh --test
scripts/fixtures.sh
echo "test [2/3] building dsinf and every test binary"
scripts/build.sh
echo "test [3/3] running the suite (ctest)"
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
