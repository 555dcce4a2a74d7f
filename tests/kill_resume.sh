#!/usr/bin/env bash
# kill -9 at random moments of a run that saves a checkpoint every step: every restart resumes
# from a complete checkpoint, no interrupted save is left behind, and once the run finishes its
# metrics.jsonl holds each step once, with the losses of an uninterrupted run.
# Usage: kill_resume.sh COLOSSAL_RUN QUICKSTART_CONFIG WORK_DIR
set -uo pipefail
exe=$1 config=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
steps=600
run=(--config "$config" --set model.preset=gpt2-tiny --set data.format=synthetic --set data.seq_len=32
     --set train.micro_batch_size=2 --set train.steps=$steps --set train.eval_every=0 --set train.log_every=100
     --set runtime.threads=1 --set train.peak_flops=1.0e9 --set checkpoint.every=1 --set checkpoint.keep=2)
"$exe" "${run[@]}" --set runtime.run_dir="$work/reference" >"$work/reference.log" 2>&1 || { cat "$work/reference.log"; exit 1; }

RANDOM=20261129  # the same kill moments on every run of the test
kills=0
for trial in $(seq 1 20); do
  "$exe" "${run[@]}" --set runtime.run_dir="$work/killed" >"$work/trial$trial.log" 2>&1 &
  pid=$!
  # Start-up takes most of a second; the kills land in it, in steps and in saves.
  delay=$((50 + RANDOM % 130))
  sleep "$((delay / 100)).$(printf %02d $((delay % 100)))"
  kill -9 "$pid" 2>/dev/null && ((kills += 1))
  wait "$pid" 2>/dev/null
  for dir in "$work"/killed/checkpoints/step_*; do
    [[ -e $dir ]] || continue
    [[ -f $dir/manifest.json ]] || { echo "trial $trial: $dir has no manifest"; exit 1; }
  done
done
echo "$kills kills"
((kills >= 15)) || { echo "too few kills landed ($kills): the run finished before them"; exit 1; }
"$exe" "${run[@]}" --set runtime.run_dir="$work/killed" >"$work/final.log" 2>&1 || { cat "$work/final.log"; exit 1; }
grep -q "resumed from .*step_" "$work/final.log" || { echo "the final run did not resume"; cat "$work/final.log"; exit 1; }
if compgen -G "$work/killed/checkpoints/.*-step_*" >/dev/null; then
  echo "interrupted saves left behind:"; ls -a "$work/killed/checkpoints"; exit 1
fi

# Each step once, in order, with the uninterrupted run's loss (resume is bitwise exact).
losses() { grep -o '"loss":[^,}]*,.*"step":[0-9]*' "$1" | sed 's/"loss":\([^,]*\),.*"step":\([0-9]*\)/\2 \1/'; }
losses "$work/reference/metrics.jsonl" >"$work/reference.losses"
losses "$work/killed/metrics.jsonl" >"$work/killed.losses"
[[ $(wc -l <"$work/reference.losses") -eq $steps ]] || { echo "reference has $(wc -l <"$work/reference.losses") steps"; exit 1; }
if ! diff "$work/reference.losses" "$work/killed.losses" >"$work/losses.diff"; then
  echo "metrics.jsonl after $kills kills differs from the uninterrupted run:"; head -20 "$work/losses.diff"; exit 1
fi
echo "after $kills kills: $steps steps, each once, losses equal to the uninterrupted run"
