#!/usr/bin/env bash
# Tensor parallelism on this machine: for tensor sizes 1, 2 and 2 with split_gather, training
# throughput of the benchmark model (as a ratio to tensor 1 in the same run), each rank's
# parameter bytes, and the bytes each rank really sent per step (Open MPI's traffic monitor,
# steps 3 minus steps 1, so start-up traffic cancels) against `plan`'s prediction. One JSON
# line per layout.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/colossal-run ]] || scripts/build.sh >&2
preset=${PRESET:-gpt2-bench}
bench=(bench --preset "$preset" --seq-len "${SEQ_LEN:-256}" --micro-batch "${MICRO_BATCH:-4}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source scripts/mpi-traffic.sh

reference=""
for layout in "1 none" "2 none" "2 split_gather"; do
  read -r tensor sequence <<<"$layout"
  args=(--tensor "$tensor" --sequence "$sequence")
  result=$(build/colossal-run "${bench[@]}" "${args[@]}" --nprocs "$tensor" --warmup 1 --steps "${STEPS:-3}" 2>/dev/null)
  [[ -z $reference ]] && reference=$result
  measured=0
  if ((tensor > 1)); then
    measured=$(( ($(bytes_sent "$tensor" 3 "${args[@]}") - $(bytes_sent "$tensor" 1 "${args[@]}")) / 2 ))
  fi
  python3 - "$result" "$reference" "$measured" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); ref = json.loads(sys.argv[2]); measured = int(sys.argv[3])
planned = r["planned_tensor_bytes_sent_per_rank"]
print(json.dumps({"benchmark": "tp-" + r["benchmark"], "tensor": r["tensor_parallel"],
                  "sequence": r["sequence_parallel"], "threads_per_rank": r["threads"],
                  "tokens_per_s": r["tokens_per_s"], "tokens_per_s_over_tensor_1": r["tokens_per_s"] / ref["tokens_per_s"],
                  "step_time_s": r["step_time_s"], "mfu": r["mfu"],
                  "parameter_bytes_per_rank": r["state_bytes"]["parameters"],
                  "parameter_bytes_over_tensor_1": r["state_bytes"]["parameters"] / ref["state_bytes"]["parameters"],
                  "peak_host_bytes": r["peak_host_bytes"], "peak_over_plan": r["peak_over_plan"],
                  "bytes_sent_per_rank_per_step": measured, "planned_bytes_per_rank_per_step": planned,
                  "sent_over_planned": (measured / planned) if planned else None}))
PY
done
