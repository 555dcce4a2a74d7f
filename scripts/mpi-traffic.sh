# Sourced by the benchmark scripts: mpirun's flags here, and bytes_sent RANKS STEPS [BENCH ARGS...]:
# the bytes rank 0 sent to its peers over a whole `colossal-run bench` run of STEPS measured
# steps (Open MPI's traffic monitor). Needs $work (a scratch directory) and the array $bench.
mpirun_flags=(--oversubscribe --bind-to none --mca btl self,vader)
[[ $(id -u) -eq 0 ]] && mpirun_flags+=(--allow-run-as-root)

bytes_sent() {
  local ranks=$1 steps=$2
  shift 2
  mpirun "${mpirun_flags[@]}" -np "$ranks" --mca pml_monitoring_enable 1 --mca pml_monitoring_enable_output 3 \
    --mca pml_monitoring_filename "$work/s$steps" build/colossal-run "${bench[@]}" "$@" --warmup 0 --steps "$steps" \
    >/dev/null 2>&1
  awk -F'\t' '$1 == "E" { split($4, b, " "); total += b[1] } END { print total + 0 }' "$work/s$steps.0.prof"
}
