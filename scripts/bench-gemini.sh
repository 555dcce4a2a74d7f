#!/usr/bin/env bash
# Gemini on this machine: the benchmark model under ZeRO-3's flat buffers and under each placement
# policy (cuda, cpu, static with half the optimizer offloaded, auto under an emulated device
# budget, cpu with the NVMe tier), one JSON line each: tokens/s, the tiers' peak bytes, what a step
# moved between them and the share of its copy time hidden behind compute (`tiers`). cpu runs without
# and with prefetch, the others with PREFETCH chunks gathered ahead (default 2). NVME_PATH: the NVMe tier's directory (default: /tmp); NVME_FRACTION:
# its share of the host-placed state (default 0.35: the layers, not the 19M-element token embedding,
# whose chunk would size the NVMe buffers).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/colossal-run ]] || scripts/build.sh >&2
bench() {
  build/colossal-run bench --preset "${PRESET:-gpt2-bench}" --zero-stage 3 --seq-len "${SEQ_LEN:-256}" \
    --micro-batch "${MICRO_BATCH:-4}" --warmup 2 --steps "${STEPS:-4}" --nprocs "${RANKS:-1}" \
    --set zero.chunk_size_m=4 "$@" 2>/dev/null
}
bench
bench --set zero.placement_policy=cuda
bench --set zero.placement_policy=cpu
ahead=(--set zero.max_prefetch="${PREFETCH:-2}")
bench --set zero.placement_policy=cpu "${ahead[@]}"
bench --set zero.placement_policy=static --set zero.offload_optim_frac=0.5 "${ahead[@]}"
bench --set zero.placement_policy=auto --set runtime.device_memory_limit="${BUDGET:-1GiB}" \
  --set zero.warmup_non_model_data_ratio=0.6 --set zero.gpu_margin_mem_ratio=0.8 "${ahead[@]}"
bench --set zero.placement_policy=cpu --set zero.nvme_offload_fraction="${NVME_FRACTION:-0.35}" \
  --set zero.nvme_path="${NVME_PATH:-/tmp}" "${ahead[@]}"
