#!/bin/sh
# Runs one libFuzzer target for a bounded time and says what it did:
#   run.sh BIN SECONDS SEED_DIR [libFuzzer options...]
# New inputs go to DIR/corpus/NAME (kept between runs, DIR = BIN's folder),
# a crashing input to DIR/crash-NAME-*. Prints "NAME: N executions in S s,
# no crash" and exits 0, or the crash and exits 1. A crash, once fixed,
# becomes a regression test: its input inline in tests/test_recipe.c or
# tests/test_tokenizer.c.
bin=$1; seconds=$2; seeds=$3
shift 3
name=$(basename "$bin")
dir=$(dirname "$bin")
corpus=$dir/corpus/$name
log=$dir/$name.log
mkdir -p "$corpus"
rm -f "$dir"/crash-"$name"-* "$dir"/timeout-"$name"-* "$dir"/oom-"$name"-* "$dir"/leak-"$name"-*
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$dir/" "$@" "$corpus" "$seeds" > "$log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
inputs=$(find "$corpus" -type f | wc -l)
if [ "$rc" -eq 0 ] && [ -n "$execs" ]; then
    echo "$name: $execs executions in $seconds s, no crash ($inputs inputs in $corpus)"
    exit 0
fi
# libFuzzer names the input it saved "crash-", "timeout-", "oom-" or "leak-"
# followed by its hash, under the artifact prefix; rename it to say whose.
for f in "$dir"/crash-* "$dir"/timeout-* "$dir"/oom-* "$dir"/leak-*; do
    case $f in *"-$name-"*|*'*') continue ;; esac
    kind=${f##*/}; kind=${kind%%-*}
    mv "$f" "$dir/$kind-$name-${f##*-}"
    echo "$name: saved the failing input as $dir/$kind-$name-${f##*-}; reproduce with $bin $dir/$kind-$name-${f##*-}"
done
tail -n 60 "$log"
echo "$name: FAILED (exit $rc) after ${execs:-?} executions; the whole log is $log"
exit 1
