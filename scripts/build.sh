#!/usr/bin/env bash
# Configures and builds colossal-run (Release) into ./build (or $BUILD_DIR).
# Usage: scripts/build.sh [ninja targets...]   (default: everything, tests included)
# Progress is printed at every tenth of the build; compiler messages come through whole.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
# Line-buffered, and read line by line (awk would read the pipe in blocks): progress shows as it happens.
NINJA_STATUS='[%f/%t] ' stdbuf -oL ninja -C "$build_dir" -j "$jobs" "$@" | {
  last=-1
  while IFS= read -r line; do
    if [[ $line =~ ^\[([0-9]+)/([0-9]+)\]\  ]]; then
      done_steps=${BASH_REMATCH[1]} all_steps=${BASH_REMATCH[2]}
      tenth=$((10 * done_steps / all_steps))
      if ((tenth != last)); then
        last=$tenth
        printf 'build: %3d%% (%d of %d steps)\n' $((10 * tenth)) "$done_steps" "$all_steps"
      fi
    else
      printf '%s\n' "$line"
    fi
  done
}
