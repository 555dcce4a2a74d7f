#!/usr/bin/env bash
# Data-parallel scaling on this machine: for 1, 2 and 4 ranks, training throughput of the
# benchmark model, and the bytes each rank really sent per step (Open MPI's traffic monitor,
# steps 3 minus steps 1, so start-up traffic cancels) against the ring all-reduce minimum
# 2 (N-1)/N x gradient bytes. One JSON line per rank count.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/colossal-run ]] || scripts/build.sh >&2
preset=${PRESET:-gpt2-bench}
bench=(bench --preset "$preset" --seq-len "${SEQ_LEN:-256}" --micro-batch "${MICRO_BATCH:-4}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source scripts/mpi-traffic.sh

for ranks in ${RANKS:-1 2 4}; do
  result=$(build/colossal-run "${bench[@]}" --nprocs "$ranks" --warmup 1 --steps "${STEPS:-3}" 2>/dev/null)
  measured=0
  if ((ranks > 1)); then
    measured=$(( ($(bytes_sent "$ranks" 3) - $(bytes_sent "$ranks" 1)) / 2 ))
  fi
  python3 - "$result" "$measured" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); measured = int(sys.argv[2])
minimum = r["gradient_bytes_sent_per_rank"]
print(json.dumps({"benchmark": "dp-scaling-" + r["benchmark"], "ranks": r["ranks"], "threads_per_rank": r["threads"],
                  "tokens_per_s": r["tokens_per_s"], "step_time_s": r["step_time_s"], "mfu": r["mfu"],
                  "gradient_bytes": r["gradient_bytes"], "bytes_sent_per_rank_per_step": measured,
                  "ring_allreduce_minimum_bytes": minimum,
                  "sent_over_minimum": (measured / minimum) if minimum else None}))
PY
done
