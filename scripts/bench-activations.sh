#!/usr/bin/env bash
# Activation memory on this machine against `plan`: the CPU tensor bytes a training step adds, at
# its peak, to those alive when it starts (counted by LibTorch's allocator; the resident set size's
# growth is given too), for activation checkpointing none / selective / full on one process
# (against the planned activations and transients), and for each stage of a 4-stage pipeline
# under gpipe, 1f1b and zero_bubble with 8 micro-batches (against the stage's planned
# activations); with the step time as a ratio to the first line of its group in the same run.
# One JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/colossal-run ]] || scripts/build.sh >&2
common=(bench --preset gpt2-mini --seq-len 512 --threads 1 --peak-flops 1e9 --warmup 1 --steps "${STEPS:-2}")
report() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); ref = json.loads(sys.argv[2]); p = r.get("pipeline")
line = {"benchmark": "activations", "activation_checkpointing": r["activation_checkpointing"],
        "pipeline": p["schedule"] if p else None}
if p:
    # Per stage: the step's tensor bytes against the stage's planned activations.
    line["stage_tensor_bytes"] = p["stage_tensor_bytes"]
    line["planned_stage_activation_bytes"] = [round(b) for b in p["planned_stage_activation_bytes"]]
    line["measured_over_planned"] = [round(m / b, 3) for m, b in zip(p["stage_tensor_bytes"],
                                                                     p["planned_stage_activation_bytes"])]
else:
    planned = r["planned_activation_bytes"] + r["planned_transient_bytes"]
    line.update({"step_tensor_bytes": r["step_tensor_bytes"], "step_host_bytes": r["step_host_bytes"],
                 "planned_bytes": planned, "measured_over_planned": round(r["step_tensor_bytes"] / planned, 3)})
line.update({"step_time_s": r["step_time_s"], "step_time_over_first": r["step_time_s"] / ref["step_time_s"]})
print(json.dumps(line))
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
