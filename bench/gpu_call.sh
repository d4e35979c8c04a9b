#!/usr/bin/env bash
# One call on the GPU machine (after bench/gpu_deps.sh, with .deps carried):
#
#   S="setup img2img_parity retime" B=540 bash bench/gpu_call.sh
#
# runs bench/gpu.sh all over the steps $S within $B seconds, writes the GPU's
# name to $OUT/gpu.txt, and packs the steps' logs and the work dir's into
# $OUT/logs.tgz: the device tool brings back only a few files per call.
set -u
cd "$(dirname "$0")/.."
. .deps/env.sh
export OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
SDM_GPU_BUDGET=${B:-570} SDM_GPU_STEPS="${S:?S: the steps of bench/gpu.sh to run}" bash bench/gpu.sh all
rc=$?
steps=$(cd "$OUT" && ls -- *.log *.status *.tgz 2> /dev/null | grep -v '^logs\.tgz$')
tar czf "$OUT/logs.tgz.part" -C "$OUT" $steps -C "$PWD/build/gpu" $(cd build/gpu 2> /dev/null && ls -- *.log) &&
    mv "$OUT/logs.tgz.part" "$OUT/logs.tgz" && (cd "$OUT" && rm -f -- $steps)
exit $rc
