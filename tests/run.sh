#!/bin/sh
# Runs each test program, shows its output, and sums the "N passed, N failed"
# lines into one; exits non-zero if any test failed or a program crashed.
passed=0; failed=0; skipped=0
for t in "$@"; do
    name=$(basename "$t")
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out" | sed "s/^/[$name] /"
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$line" ]; then
        echo "[$name] did not finish (exit $rc)"; failed=$((failed + 1)); continue
    fi
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    passed=$((passed + p)); failed=$((failed + f))
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && { echo "[$name] exited $rc"; failed=$((failed + 1)); }
    skipped=$((skipped + $(printf '%s\n' "$out" | grep -c '^skipped: ')))
done
[ "$skipped" -gt 0 ] && echo "($skipped checks skipped, reasons above)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
