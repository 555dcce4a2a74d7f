#!/usr/bin/env bash
# Loss parity with Hugging Face transformers, on a machine whose python3 has torch + transformers
# (the GPU machine): tiny models made there, loaded with `model.init_from`, evaluated by
# colossal-run on the same tokens; the two losses per model should agree to 1e-4 or better.
# Usage: scripts/hf_parity/check.sh [COLOSSAL_RUN]   (default build/colossal-run)
set -euo pipefail
cd "$(dirname "$0")/../.."
exe=${1:-build/colossal-run}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "transformers: $(python3 scripts/hf_parity/make_models.py "$work" 2>/dev/null | tail -1)"
for model in gpt2-tiny opt-tiny llama-tiny; do
  result=$("$exe" eval --config configs/quickstart.yaml --set model.preset="$model" --set data.format=tokens \
    --set data.train="$work/tokens.bin" --set data.seq_len=64 --set train.micro_batch_size=4 \
    --set runtime.device=cpu --set model.init_from="$work/$model" --set runtime.run_dir="$work/run-$model" | tail -1)
  echo "colossal-run $model: $result"
done
