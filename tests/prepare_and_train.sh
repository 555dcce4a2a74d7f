#!/usr/bin/env bash
# The documented GPT-2 BPE route end to end: `prepare` tinyshakespeare into token shards, then
# train configs/shakespeare_gpt2.yaml on them for a few steps and resume once.
# Usage: prepare_and_train.sh COLOSSAL_RUN SOURCE_DIR SHARED_DATA WORK_DIR
# Without the data it exits 77 (skipped), except under CI=true: CI has the data, so there its
# absence is a failure rather than a pass unrun.
set -euo pipefail
exe=$1 source_dir=$2 data=$3 work=$4
if [[ ! -f $data/tinyshakespeare.txt || ! -f $data/gpt2-encoder.json ]]; then
  if [[ ${CI:-} == true ]]; then
    echo "error: $data has no tinyshakespeare.txt / GPT-2 tokenizer files, and CI must have them" >&2
    exit 1
  fi
  echo "skipped: $data has no tinyshakespeare.txt / GPT-2 tokenizer files"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
cd "$work"
"$exe" prepare "$data/tinyshakespeare.txt" -o data/shakespeare/shakespeare --tokenizer gpt2 \
  --tokenizer-dir "$data" --val-fraction 0.1 | tee prepare.log
grep -q "304,222 train tokens, 33,803 val tokens" prepare.log  # 338,025 GPT-2 tokens in all
# The config's paths are relative to its file: a copy in configs/ here finds data/ and runs/ here.
mkdir -p configs
cp "$source_dir/configs/shakespeare_gpt2.yaml" configs/
common=(--config configs/shakespeare_gpt2.yaml --set train.micro_batch_size=2
        --set train.global_batch_size=2 --set data.seq_len=64 --set train.eval_every=3
        --set train.eval_batches=2 --set runtime.threads=1 --set train.peak_flops=1.0e9
        --set checkpoint.every=2)
"$exe" train "${common[@]}" --set train.steps=2 | tee first.log
# The shards' tokenizer record gives the run its tokenizer, and its config.yaml keeps it.
grep -q "note: data.tokenizer gpt2 (data.tokenizer_dir " first.log
grep -q "tokenizer: gpt2" runs/shakespeare_gpt2/config.yaml
"$exe" train "${common[@]}" --set train.steps=3 | tee second.log
grep -q "resumed from $PWD/runs/shakespeare_gpt2/checkpoints/step_00000002 at step 2" second.log
grep -q "val_loss" second.log
# 3 steps, and for each of the two runs an evaluation at its end and its summary
[[ $(wc -l < runs/shakespeare_gpt2/metrics.jsonl) -eq 7 ]]
[[ $(grep -c '"kind":"summary"' runs/shakespeare_gpt2/metrics.jsonl) -eq 2 ]]
