#!/usr/bin/env bash
# Activation memory on this machine against `plan`: the CPU tensor bytes a training step adds, at
# its peak, to those alive when it starts (counted by LibTorch's allocator; the resident set size's
# growth is given too), for activation checkpointing none /
# selective / full on one process, and for the first stage of a 4-stage pipeline under gpipe,
# 1f1b and zero_bubble (8 micro-batches); with the step time as a ratio to the first line of its
# group in the same run. One JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/colossal-run ]] || scripts/build.sh >&2
common=(bench --preset gpt2-mini --seq-len 512 --threads 1 --peak-flops 1e9 --warmup 1 --steps "${STEPS:-2}")
report() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); ref = json.loads(sys.argv[2]); p = r.get("pipeline")
planned = (p["planned_stage0_activation_bytes"] if p else r["planned_activation_bytes"]) + r["planned_transient_bytes"]
print(json.dumps({"benchmark": "activations", "activation_checkpointing": r["activation_checkpointing"],
                  "pipeline": p["schedule"] if p else None, "step_tensor_bytes": r["step_tensor_bytes"],
                  "step_host_bytes": r["step_host_bytes"], "planned_bytes": planned,
                  "measured_over_planned": r["step_tensor_bytes"] / planned,
                  "step_time_s": r["step_time_s"], "step_time_over_first": r["step_time_s"] / ref["step_time_s"]}))
PY
}
reference=""
for mode in none selective full; do
  result=$(build/colossal-run "${common[@]}" --micro-batch 8 --activation-checkpointing "$mode" 2>/dev/null)
  [[ -z $reference ]] && reference=$result
  report "$result" "$reference"
done
reference=""
for schedule in gpipe 1f1b zero_bubble; do
  result=$(build/colossal-run "${common[@]}" --micro-batch 2 --layers 8 --pipeline 4 --microbatches 8 \
           --schedule "$schedule" --nprocs 4 2>/dev/null)
  [[ -z $reference ]] && reference=$result
  report "$result" "$reference"
done
