#!/usr/bin/env bash
# eval and generate end to end: train a tiny byte-level model for a few steps, then score it
# and continue a prompt with the checkpoint the run left.
# Usage: eval_and_generate.sh COLOSSAL_RUN WORK_DIR
set -euo pipefail
shopt -s inherit_errexit  # failures inside $(...) count too
exe=$1 work=$2
rm -rf "$work"
mkdir -p "$work"
cd "$work"
for i in $(seq 1 40); do echo "To be, or not to be, that is the question: line $i."; done > tiny.txt
cat > tiny.yaml <<'YAML'
model:
  preset: gpt2-tiny
data:
  format: text
  tokenizer: byte
  train: [tiny.txt]
  val_fraction: 0.1
  seq_len: 32
train:
  micro_batch_size: 2
  global_batch_size: 2
  steps: 4
  eval_every: 0
  peak_flops: 1.0e9
runtime:
  run_dir: run
  threads: 1
YAML
"$exe" train --config tiny.yaml | tee train.log
grep -q "checkpoint $PWD/run/checkpoints/step_00000004" train.log

# The whole of data.train (val is empty): 2,071 bytes give 64 windows of 33, 2,048 target tokens.
"$exe" eval --config tiny.yaml | tee eval.log
grep -q "weights $PWD/run/checkpoints/step_00000004" eval.log
grep -Eq '^\{"loss":[0-9.]+,"perplexity":[0-9.]+,"tokens":2048\}$' eval.log
"$exe" eval --config tiny.yaml --max-batches 3 | tee eval3.log
grep -Eq '"tokens":192\}$' eval3.log
# Regression: synthetic data (endless) was scored window after window without end.
timeout 60 "$exe" eval --config tiny.yaml --set data.format=synthetic --set train.eval_batches=5 | tee eval_synthetic.log
grep -q "scoring train.eval_batches = 5 batches" eval_synthetic.log
grep -Eq '"tokens":320\}$' eval_synthetic.log

# Greedy output is a function of the weights; sampled output of the seed.
gen=(generate --config tiny.yaml --prompt "To be, or" --max-new-tokens 12)
[[ $("$exe" "${gen[@]}" --temperature 0) == "$("$exe" "${gen[@]}" --top-k 1)" ]]
first=$("$exe" "${gen[@]}" --temperature 0.8 --top-p 0.9 --seed 3)
[[ $first == "$("$exe" "${gen[@]}" --temperature 0.8 --top-p 0.9 --seed 3)" ]]  # quoted: a literal, not a pattern
"$exe" "${gen[@]}" --top-k 1 2> generate.err
grep -q "generate: 9 prompt tokens + 12 new (max_new_tokens)" generate.err

# Tensor parallel: two ranks, each holding half of every layer (and its heads' keys and values),
# score and continue as one process does.
tp=(--set parallel.tensor=2 --nprocs 2)
"$exe" eval --config tiny.yaml "${tp[@]}" | tee eval_tp.log
loss() { sed -nE 's/^\{"loss":([0-9.]+),.*"tokens":2048\}$/\1/p' "$1"; }
awk -v a="$(loss eval.log)" -v b="$(loss eval_tp.log)" 'BEGIN { d = a - b; if (a == "" || b == "" || d > 1e-5 || d < -1e-5) exit 1 }'
[[ $("$exe" "${gen[@]}" --temperature 0) == "$("$exe" "${gen[@]}" --temperature 0 "${tp[@]}")" ]]
# Data-parallel ranks have nothing to split for eval.
if "$exe" eval --config tiny.yaml --nprocs 2 2> data_parallel.err; then exit 1; fi
grep -q "eval, generate and serve split the model over tensor-parallel ranks only" data_parallel.err

# Without a checkpoint or model.init_from there is nothing to load.
if "$exe" eval --config tiny.yaml --set runtime.run_dir=elsewhere 2> missing.err; then exit 1; fi
grep -q "no weights to load" missing.err

# serve: the trained model over HTTP on a free loopback port, with bench-serve as its client;
# SIGINT stops it. Tensor parallel: two ranks, each holding half of every layer and its heads'
# keys and values, give one process's greedy completions (bench-serve's digest of them).
serve_and_bench() {  # NAME [serve options...]: prints the completions' digest
  local name=$1
  shift
  "$exe" serve --config tiny.yaml --port 0 --set serve.kv_cache_memory=1MiB "$@" > "serve_$name.log" 2>&1 &
  local server=$!
  for _ in $(seq 1 300); do grep -q "http://127.0.0.1:" "serve_$name.log" && break; sleep 0.1; done
  local url
  url=$(grep -o "http://127.0.0.1:[0-9]*" "serve_$name.log")
  "$exe" bench-serve --url "$url" --requests 8 --concurrency 4 --prompt-min 4 --prompt-max 20 --output-min 4 \
    --output-max 12 > "bench_$name.log"
  grep -Eq '"failed":0,.*"generated_tokens":[1-9]' "bench_$name.log"
  kill -INT "$server"
  wait "$server"
  grep -Eq "serve: stopped \((SIGINT|a stop request, SIGUSR1)\)" "serve_$name.log"
  grep -o '"output_crc32":"[0-9a-f]*"' "bench_$name.log"
}
one=$(serve_and_bench one)
[[ $one == "$(serve_and_bench tp "${tp[@]}")" ]]
# A server that is not there (any more) is named.
url=$(grep -o "http://127.0.0.1:[0-9]*" serve_one.log)
if "$exe" bench-serve --url "$url" --requests 1 2> no_server.err; then exit 1; fi
grep -q "no server answers at $url/health" no_server.err
