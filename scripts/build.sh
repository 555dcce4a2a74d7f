#!/usr/bin/env bash
# Configures and builds colossal-run (Release) into ./build (or $BUILD_DIR).
# Usage: scripts/build.sh [ninja targets...]   (default: everything, tests included)
# Progress is printed at every tenth of the build; compiler messages come through whole.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
# Line-buffered: ninja writes its status lines through stdio, which buffers them in a pipe.
NINJA_STATUS='[%f/%t] ' stdbuf -oL ninja -C "$build_dir" -j "$jobs" "$@" | awk '
  /^\[[0-9]+\/[0-9]+\] / {
    split(substr($1, 2, length($1) - 2), n, "/")
    tenth = int(10 * n[1] / n[2])
    if (tenth != last) { last = tenth; printf "build: %3d%% (%d of %d steps)\n", 10 * tenth, n[1], n[2]; fflush() }
    next
  }
  { print; fflush() }'
