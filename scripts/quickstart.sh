#!/usr/bin/env bash
# On a fresh Debian machine: installs dependencies, builds, and trains the built-in quickstart
# (a small GPT-2 on this repository's own text; no download, no external data).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build/colossal-run train "$@"
