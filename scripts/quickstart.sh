#!/usr/bin/env bash
# Fresh machine to a trained GPT-2: install what is missing, build, train.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/dsinf train configs/quickstart.json "$@"
