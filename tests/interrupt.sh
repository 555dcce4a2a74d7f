#!/usr/bin/env bash
# Ctrl-C on a data-parallel job: every rank stops, the exit status says so (130), and every
# checkpoint left behind is complete (the one being written, if any, never replaces a good one).
# Usage: interrupt.sh COLOSSAL_RUN QUICKSTART_CONFIG WORK_DIR
set -uo pipefail
exe=$1 config=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
"$exe" --config "$config" --set model.preset=gpt2-mini --set data.format=synthetic --set data.seq_len=64 \
  --set train.micro_batch_size=2 --set train.global_batch_size=4 --set train.steps=100000 \
  --set runtime.threads=1 --set train.peak_flops=1.0e9 --set train.eval_every=0 --set checkpoint.every=5 \
  --set checkpoint.keep=2 --set runtime.run_dir="$work/run" --nprocs 2 >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do  # until a first checkpoint exists (at most 20 s)
  compgen -G "$work/run/checkpoints/step_*/manifest.json" >/dev/null && break
  sleep 0.2
done
kill -INT "$pid"
start=$SECONDS
wait "$pid"
status=$?
cat "$work/log"
echo "exit status $status after $((SECONDS - start)) s"
[[ $status -eq 130 ]] || { echo "expected exit status 130"; exit 1; }
((SECONDS - start <= 20)) || { echo "took too long to stop"; exit 1; }
if pgrep -af -- "run_dir=$work/run" | grep -v pgrep; then echo "ranks still running"; exit 1; fi
for dir in "$work"/run/checkpoints/step_*; do
  [[ -f $dir/manifest.json ]] || { echo "$dir has no manifest: incomplete checkpoint in place"; exit 1; }
done
# The newest checkpoint resumes.
"$exe" --config "$config" --set model.preset=gpt2-mini --set data.format=synthetic --set data.seq_len=64 \
  --set train.micro_batch_size=2 --set train.global_batch_size=4 --set train.steps=1 --set runtime.threads=1 \
  --set train.peak_flops=1.0e9 --set train.eval_every=0 --set runtime.run_dir="$work/run" >"$work/resume.log"
grep -q "resumed from .*step_" "$work/resume.log"
