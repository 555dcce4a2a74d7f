#!/usr/bin/env bash
# A rank killed outright (SIGKILL, as an out-of-memory killer does) ends a --nprocs job within
# 10 s, and the user is told which rank died of what, in one line of ours.
# Usage: killed_rank.sh COLOSSAL_RUN QUICKSTART_CONFIG WORK_DIR
set -uo pipefail
exe=$1 config=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
COLOSSAL_RUN_FAIL_RANK_AT_STEP=1:3:kill "$exe" --config "$config" --set model.preset=gpt2-mini \
  --set data.format=synthetic --set data.seq_len=32 --set train.micro_batch_size=2 --set train.steps=1000 \
  --set train.eval_every=0 --set train.log_every=1 --set runtime.threads=1 --set train.peak_flops=1.0e9 \
  --set runtime.run_dir="$work/run" --nprocs 2 >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do  # until rank 0 has logged step 2; rank 1 dies as step 3 starts
  grep -q "^step 2/" "$work/log" && break
  sleep 0.1
done
start=$(date +%s%N)
wait "$pid"
status=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
cat "$work/log"
echo "exit status $status, $elapsed_ms ms after step 2"
[[ $status -eq 1 ]] || { echo "expected exit status 1"; exit 1; }
((elapsed_ms < 10000)) || { echo "the job took more than 10 s to end"; exit 1; }
grep -q "^error: rank 1 (on .*) was killed by signal 9 (Killed), so the job stopped" "$work/log" ||
  { echo "no line naming the killed rank"; exit 1; }
if grep -q "mpirun noticed" "$work/log"; then echo "mpirun's notice shown instead of ours"; exit 1; fi
