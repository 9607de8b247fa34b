#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz (built in BUILD by `make fuzz`).
#   scripts/fuzz.sh BUILD SECONDS [TARGET...]
# For each target: replays its committed corpus tests/fuzz/corpus/<target> (any crash, leak or
# timeout there fails at once), then fuzzes it for SECONDS seconds. New inputs go to
# BUILD/fuzz-corpus/<target> (the committed corpus is only read), crash reproducers to
# BUILD/fuzz-artifacts/. Prints one line per target: executions, coverage (cov: edges, ft:
# features, from libFuzzer's final line) and time; exits 1 if any target failed.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: scripts/fuzz.sh BUILD SECONDS [TARGET...]}
seconds=${2:?usage: scripts/fuzz.sh BUILD SECONDS [TARGET...]}
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(experiment checkpoint hf tokenizer tokenizer_json journal csv gguf native)
# Leaks are reported as failures; the per-input time and memory limits turn a hang or an
# absurd allocation into a reported failure rather than a stuck or swapping machine.
limits=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024)
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The first report of a failure in a libFuzzer log, with its stack.
show_error() { grep -m1 -A30 -E 'ERROR|runtime error|deadly signal|Test unit written' "$1"; }
failed=0
mkdir -p "$build/fuzz-artifacts"
for t in "${targets[@]}"; do
  exe=$build/tests/fuzz/fuzz_$t seeds=tests/fuzz/corpus/$t work=$build/fuzz-corpus/$t
  log=$build/fuzz-artifacts/$t.log
  dict=(); [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  mkdir -p "$work"
  if ! "$exe" "${limits[@]}" "${dict[@]}" -artifact_prefix="$build/fuzz-artifacts/$t-" \
       -runs=0 "$seeds" >"$log" 2>&1; then
    echo "fuzz $t: the committed corpus fails (log: $log)"; show_error "$log"; failed=1; continue
  fi
  start=$(date +%s)
  if ! "$exe" "${limits[@]}" "${dict[@]}" -max_total_time="$seconds" -print_final_stats=1 \
       -artifact_prefix="$build/fuzz-artifacts/$t-" "$work" "$seeds" >"$log" 2>&1; then
    echo "fuzz $t: FAILED (log: $log)"; show_error "$log"
    failed=1
  fi
  end=$(date +%s)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n1)
  echo "fuzz $t: ${runs:-?} executions, ${cov:-cov: ? ft: ?}, $((end - start)) s"
done
exit $failed
