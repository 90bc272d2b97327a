#!/usr/bin/env bash
# Fresh machine to a trained GPT-2: install what is missing, build the dsinf
# binary alone (scripts/test.sh builds the tests), train. Run it again and the
# training resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "quickstart [1/3] Debian packages: installing what is missing (scripts/setup.sh)"
scripts/setup.sh
echo "quickstart [2/3] building build/dsinf, the binary only (a few minutes on a fresh machine)"
scripts/build.sh dsinf
echo "quickstart [3/3] training configs/quickstart.json into runs/quickstart"
exec build/dsinf train configs/quickstart.json "$@"
