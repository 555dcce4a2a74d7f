#!/usr/bin/env bash
# Pipeline schedules on this machine: 4 stages x 8 micro-batches of a model whose stages get
# equal artificial costs (COLOSSAL_RUN_STAGE_COST_MS: every forward F ms, every backward 2F, the
# model's own compute small beside it), the bubble each schedule's executor measured (idle over
# compute summed over the stages) against the one `plan` predicts from the instruction lists, and
# the step time as a ratio to 1f1b's in the same run. One JSON line per schedule.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/colossal-run ]] || scripts/build.sh >&2
forward_ms=${FORWARD_MS:-20}
export COLOSSAL_RUN_STAGE_COST_MS="$forward_ms,$((2 * forward_ms))"
bench=(bench --preset gpt2-mini --layers 8 --seq-len 32 --micro-batch 1 --pipeline 4 --microbatches 8 --threads 1
       --peak-flops 1e9 --warmup 1 --steps "${STEPS:-3}" --nprocs 4)
reference=""
for layout in "1f1b 1" "gpipe 1" "interleaved 2" "zero_bubble 1"; do
  read -r schedule chunks <<<"$layout"
  result=$(build/colossal-run "${bench[@]}" --schedule "$schedule" --chunks "$chunks" 2>/dev/null)
  [[ -z $reference ]] && reference=$result
  python3 - "$result" "$reference" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); ref = json.loads(sys.argv[2]); p = r["pipeline"]
print(json.dumps({"benchmark": "pp-bubble", "schedule": p["schedule"], "chunks": p["chunks"], "stages": p["stages"],
                  "micro_batches": p["micro_batches"], "measured_bubble": p["measured_bubble"],
                  "planned_bubble": p["planned_bubble"], "measured_over_planned": p["measured_bubble"] / p["planned_bubble"],
                  "step_time_s": r["step_time_s"], "step_time_over_1f1b": r["step_time_s"] / ref["step_time_s"]}))
PY
done
