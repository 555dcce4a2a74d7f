#!/usr/bin/env bash
# Continuous batching against serving one request at a time: a model (random weights from one
# training step; PRESET, default gpt2-bench: 6 layers, d_model 384, context 1024) served with
# serve.max_batch_size 16 and then 1, each loaded by bench-serve with 16 concurrent clients
# (prompts of 32-512 tokens, 32-256 new ones). One JSON line per setting, with its throughput as a
# ratio to the batched one's.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/colossal-run ]] || scripts/build.sh colossal-run >&2
preset=${PRESET:-gpt2-bench}
work=${WORK:-build/bench-serve}
rm -rf "$work"
mkdir -p "$work"
run=(--config configs/quickstart.yaml --set model.preset="$preset" --set data.format=synthetic
     --set runtime.run_dir="$work/run" --set runtime.threads="${THREADS:-2}")
build/colossal-run train "${run[@]}" --set train.steps=1 --set lr_schedule.warmup_steps=0 >"$work/train.log" 2>&1
reference=""
for batch in 16 1; do
  build/colossal-run serve "${run[@]}" --port 0 --set serve.max_batch_size="$batch" >"$work/serve_$batch.log" 2>&1 &
  server=$!
  for _ in $(seq 1 300); do grep -q "http://127.0.0.1:" "$work/serve_$batch.log" && break; sleep 0.1; done
  url=$(grep -o "http://127.0.0.1:[0-9]*" "$work/serve_$batch.log")
  result=$(build/colossal-run bench-serve --url "$url" --requests "${REQUESTS:-32}" --concurrency 16 \
           --prompt-min 32 --prompt-max 512 --output-min 32 --output-max 256 --seed 1)
  kill -INT "$server"
  wait "$server"
  [[ -z $reference ]] && reference=$result
  python3 - "$result" "$reference" "$batch" "$preset" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); ref = json.loads(sys.argv[2])
r.update({"benchmark": "serve", "preset": sys.argv[4], "max_batch_size": int(sys.argv[3]),
          "throughput_over_batch_16": r["output_tokens_per_s"] / ref["output_tokens_per_s"]})
print(json.dumps(r))
PY
done
