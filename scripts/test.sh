#!/usr/bin/env bash
# Fresh machine to a tested build: install what is missing (with the test
# suite's PyTorch reference), build, run every test. GPU tests skip themselves
# when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
