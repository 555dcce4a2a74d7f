#!/usr/bin/env bash
# ZeRO on this machine: for 1, 2 and 4 data-parallel ranks and stages 0-3, training throughput of
# the benchmark model and the training state rank 0 holds (parameters, master weights, gradients,
# Adam moments) measured against `plan`'s prediction. One JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/colossal-run ]] || scripts/build.sh >&2
for ranks in ${RANKS:-1 2 4}; do
  for stage in ${STAGES:-0 1 2 3}; do
    build/colossal-run bench --preset "${PRESET:-gpt2-bench}" --dtype "${DTYPE:-bf16}" --zero-stage "$stage" \
      --seq-len "${SEQ_LEN:-256}" --micro-batch "${MICRO_BATCH:-2}" --warmup 1 --steps "${STEPS:-2}" \
      --nprocs "$ranks" 2>/dev/null
  done
done
