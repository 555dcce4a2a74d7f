#!/usr/bin/env bash
# The named CPU benchmark: GPT-2 shape with 6 layers, 6 heads, d_model 384, seq_len 256,
# micro-batch 8, vocab 50304. Prints one JSON line per dtype (tokens/s, MFU against the GEMM
# rate measured in the same run, peak memory). Builds first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/colossal-run ]] || scripts/build.sh >&2
for dtype in ${DTYPES:-fp32 bf16}; do
  build/colossal-run bench --preset gpt2-bench --dtype "$dtype" --seq-len 256 --micro-batch 8 \
    --warmup 2 --steps "${STEPS:-5}" 2>/dev/null
done
