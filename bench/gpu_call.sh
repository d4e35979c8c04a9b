#!/usr/bin/env bash
# One call on the GPU machine (after bench/gpu_deps.sh, with .deps carried):
#
#   S="setup img2img_parity retime" B=540 bash bench/gpu_call.sh
#
# runs bench/gpu.sh all over the steps $S within $B seconds, writes the GPU's
# name to $OUT/gpu.txt and copies the work dir's logs to $OUT/work.
set -u
cd "$(dirname "$0")/.."
. .deps/env.sh
export OUT=${OUT:-out/gpu}
mkdir -p "$OUT/work"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
SDM_GPU_BUDGET=${B:-570} SDM_GPU_STEPS="${S:?S: the steps of bench/gpu.sh to run}" bash bench/gpu.sh all
rc=$?
cp build/gpu/*.log "$OUT/work/" 2> /dev/null
exit $rc
