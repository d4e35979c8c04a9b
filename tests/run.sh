#!/bin/sh
# Runs the test programs side by side, SDM_TEST_JOBS at a time (default: one
# per CPU), starting them in the order given (the Makefile lists the slowest
# first). Each program's output is kept apart and shown whole when it ends,
# with how long it took; the "N passed, N failed" lines are summed into one
# last line. Exits non-zero if any test failed or a program crashed.
jobs=${SDM_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
dir=$(mktemp -d "${TMPDIR:-/tmp}/sdm-run-XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM

# out/ holds the user's renders: no test may write there (a recipe without
# outputs renders to out/NAME.mp4, so a test that forgets write_outputs = 0
# would replace a user's file). Its listing before and after is compared.
listing() { [ -d out ] && find out -mindepth 1 -printf '%P %s %T@\n' | sort; }
listing > "$dir/out.before"

# One program: its output into DIR/NAME.out, its exit status into
# DIR/NAME.rc; then the output, prefixed, printed under a lock so that two
# programs ending together do not interleave.
printf '%s\0' "$@" | xargs -0 -n 1 -P "$jobs" sh -c '
    dir=$0 t=$1 name=$(basename "$1") start=$(date +%s)
    "$t" > "$dir/$name.out" 2>&1
    echo $? > "$dir/$name.rc"
    secs=$(($(date +%s) - start))
    { flock 9; sed "s/^/[$name] /" "$dir/$name.out"; echo "[$name] ($secs s)"; } 9> "$dir/lock"
' "$dir"

passed=0; failed=0; skipped=0
for t in "$@"; do
    name=$(basename "$t")
    rc=$(cat "$dir/$name.rc" 2>/dev/null || echo "?")
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$dir/$name.out" 2>/dev/null | tail -n 1)
    if [ -z "$line" ]; then
        echo "[$name] did not finish (exit $rc)"; failed=$((failed + 1)); continue
    fi
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    passed=$((passed + p)); failed=$((failed + f))
    [ "$rc" != 0 ] && [ "$f" -eq 0 ] && { echo "[$name] exited $rc"; failed=$((failed + 1)); }
    skipped=$((skipped + $(grep -c '^skipped: ' "$dir/$name.out")))
done
listing > "$dir/out.after"
if ! cmp -s "$dir/out.before" "$dir/out.after"; then
    echo "[run.sh] the tests changed out/ (the user's renders):"
    diff "$dir/out.before" "$dir/out.after" | grep '^[<>]' | sed 's/^/[run.sh]   /'
    failed=$((failed + 1))
fi
[ "$skipped" -gt 0 ] && echo "($skipped checks skipped, reasons above)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
