#!/usr/bin/env bash
# SIGINT to one rank of a --nprocs job (a batch system signalling one task): every rank stops
# after the same step with a checkpoint, and rank 0 names the signal that rank 1 received.
# Usage: rank_interrupted.sh COLOSSAL_RUN QUICKSTART_CONFIG WORK_DIR
set -uo pipefail
exe=$1 config=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
"$exe" --config "$config" --set model.preset=gpt2-mini --set data.format=synthetic --set data.seq_len=32 \
  --set train.micro_batch_size=2 --set train.steps=100000 --set train.eval_every=0 --set train.log_every=1 \
  --set runtime.threads=1 --set train.peak_flops=1.0e9 --set checkpoint.every=0 \
  --set runtime.run_dir="$work/run" --nprocs 2 >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  grep -q "^step 2/" "$work/log" && break
  sleep 0.1
done
rank1=""
for candidate in $(pgrep -f -- "run_dir=$work/run"); do
  if tr '\0' '\n' <"/proc/$candidate/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then rank1=$candidate; fi
done
[[ -n $rank1 ]] || { echo "rank 1 not found"; kill "$pid"; exit 1; }
kill -INT "$rank1"
wait "$pid"
status=$?
cat "$work/log"
echo "exit status $status"
# Regression: rank 0 said "stopped by signal 0", its own.
grep -q "^stopped by SIGINT (Ctrl-C) after step [0-9]*; checkpoint .*step_" "$work/log" ||
  { echo "no 'stopped by SIGINT' line from rank 0"; exit 1; }
compgen -G "$work/run/checkpoints/step_*/manifest.json" >/dev/null || { echo "no checkpoint"; exit 1; }
