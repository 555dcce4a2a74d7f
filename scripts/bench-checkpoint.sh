#!/usr/bin/env bash
# Distributed checkpoints on this machine: for each rank count, one training step of a preset that
# saves a checkpoint (every rank writes its slices), then a run that resumes from it (every rank
# reads the slices it needs). Prints the trainer's lines with rank 0's bytes and seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/colossal-run ]] || scripts/build.sh >&2
preset=${PRESET:-gpt2-medium}
for ranks in ${RANKS:-1 4}; do
  run_dir=$(mktemp -d)
  common=(--config configs/quickstart.yaml --set model.preset="$preset" --set model.arch=null
          --set data.format=synthetic --set data.seq_len=64 --set train.micro_batch_size=1
          --set train.global_batch_size=4 --set train.eval_every=0 --set train.peak_flops=1.0e9
          --set zero.stage="${STAGE:-3}" --set precision.dtype="${DTYPE:-bf16}" --set runtime.run_dir="$run_dir"
          --set runtime.progress_bar=false --nprocs "$ranks")
  echo "== $preset, $ranks ranks, ZeRO-${STAGE:-3} ${DTYPE:-bf16}"
  build/colossal-run train "${common[@]}" --set train.steps=1 | grep -E "^checkpoint"
  build/colossal-run train "${common[@]}" --set train.steps=2 --set checkpoint.save_final=false | grep -E "^resumed"
  du -sh "$run_dir"/checkpoints/step_00000001
  ls -l "$run_dir"/checkpoints/step_00000001 | awk 'NR > 1 {print "  " $5, $9}'
  rm -rf "$run_dir"
done
