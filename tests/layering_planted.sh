#!/usr/bin/env bash
# The layering check must catch a wrong-way include: plant one (memory/ including core/train/)
# in a copy of the sources and expect the check to fail naming it.
set -euo pipefail
check=$1 source=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
cp -r "$source"/{kernels,parallel,models,memory,core,cmd,tests} "$work"/
"$check" "$work" >/dev/null || { echo "clean copy should pass"; exit 1; }
echo '#include "core/train/trainer.h"' >> "$work/memory/shard_layout.h"
if out=$("$check" "$work"); then
  echo "planted wrong-way include was not caught"; exit 1
fi
grep -q 'memory/shard_layout.h:[0-9]*: includes "core/train/trainer.h": memory may not depend on core/train' <<<"$out" \
  || { echo "unexpected report: $out"; exit 1; }
echo "planted include caught: $out"
