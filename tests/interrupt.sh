#!/usr/bin/env bash
# Ctrl-C on a data-parallel job: every rank finishes its step and saves a checkpoint that takes
# longer than mpirun's one-second grace, the exit status says so (130), and every checkpoint
# left behind is complete (the one being written, if any, never replaces a good one).
# Usage: interrupt.sh COLOSSAL_RUN QUICKSTART_CONFIG WORK_DIR
set -uo pipefail
exe=$1 config=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
# 85M parameters: a checkpoint of about 1 GB, which takes seconds to write and fsync.
model=(--set model.preset=gpt2-mini --set model.d_model=768 --set model.d_ff=3072 --set model.n_head=12
       --set model.n_layer=12 --set data.format=synthetic --set data.seq_len=32 --set train.micro_batch_size=1
       --set train.global_batch_size=2 --set runtime.threads=1 --set train.peak_flops=1.0e9 --set train.eval_every=0
       --set train.log_every=1 --set runtime.run_dir="$work/run")
"$exe" --config "$config" "${model[@]}" --set train.steps=100000 --set checkpoint.every=0 --nprocs 2 \
  >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do  # until step 2 is done (at most 60 s)
  grep -q "^step 2/" "$work/log" && break
  sleep 0.2
done
kill -INT "$pid"
start=$SECONDS
wait "$pid"
status=$?
cat "$work/log"
echo "exit status $status after $((SECONDS - start)) s"
[[ $status -eq 130 ]] || { echo "expected exit status 130"; exit 1; }
((SECONDS - start <= 40)) || { echo "took too long to stop"; exit 1; }
if pgrep -af -- "run_dir=$work/run" | grep -v pgrep; then echo "ranks still running"; exit 1; fi
grep -q "stopping after the current step" "$work/log" || { echo "no note that the job is stopping"; exit 1; }
# Regression: mpirun killed the ranks a second after Ctrl-C, mid-save, and no checkpoint was left.
stopped=$(grep -o "stopped by a stop request (SIGUSR1) after step [0-9]*" "$work/log" | grep -o "[0-9]*$")
[[ -n $stopped ]] || { echo "no 'stopped by' line"; exit 1; }
ckpt=$(printf "%s/run/checkpoints/step_%08d" "$work" "$stopped")
[[ -f $ckpt/manifest.json ]] || { echo "$ckpt: the stop's checkpoint is missing"; exit 1; }
if grep -q "mpirun detected\|MPI_ABORT" "$work/log"; then echo "mpirun boilerplate shown"; exit 1; fi
for dir in "$work"/run/checkpoints/step_*; do
  [[ -f $dir/manifest.json ]] || { echo "$dir has no manifest: incomplete checkpoint in place"; exit 1; }
done
# The newest checkpoint resumes.
"$exe" --config "$config" "${model[@]}" --set train.steps=$((stopped + 1)) >"$work/resume.log"
grep -q "resumed from .*step_" "$work/resume.log"
