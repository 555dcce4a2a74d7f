#!/usr/bin/env bash
# On a fresh Debian machine: installs dependencies, builds the colossal-run executable (the tests
# build in scripts/test.sh) and trains the built-in quickstart (a small GPT-2 on this
# repository's own text; no download, no external data). Arguments go to `colossal-run train`.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
elapsed() { printf '%dm%02ds' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)); }
echo "quickstart [1/3] Debian packages"
scripts/install-deps.sh
echo "quickstart [2/3] building colossal-run ($(elapsed) so far)"
scripts/build.sh colossal-run
echo "quickstart [3/3] training the built-in quickstart: 300 steps, about a minute on 2 cores ($(elapsed) so far)"
"${BUILD_DIR:-build}/colossal-run" train "$@"
echo "quickstart: done in $(elapsed)"
(($#)) || echo "quickstart: the run is in runs/quickstart; a page of its curves: build/colossal-run report runs/quickstart"
