#!/usr/bin/env bash
# The 16-frame bench's s/frame with an earlier tree and with this one, in
# one run on the GPU machine (issue 15: the re-cut within 3% of before).
# On the development machine first:
#   mkdir -p .deps/before && git archive REV | tar -x -C .deps/before     (REV: e.g. ccd6ebe)
# then on the GPU machine, after `bench/gpu.sh setup` (./sdmorph built,
# build/gpu/sd15-diffusers saved), with .deps carried:
#   bash bench/gpu_before_after.sh
# The old binary reads only bundles of its own exporter: each renders its own.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}; mkdir -p "$OUT"
. .deps/env.sh
W=build/gpu
( cd .deps/before && make -j"$(nproc)" MEDIA_PREFIX=../media sdmorph > "$OUT/before-make.log" 2>&1 ) || { tail -n 30 "$OUT/before-make.log"; exit 1; }
[ -f $W/before-fp16/model.yaml ] || python3 .deps/before/pipeline/export/export_sd.py --checkpoint $W/sd15-diffusers \
    --out $W/before-fp16 --dtype float16 > "$OUT/before-export.log" 2>&1 || { tail -n 30 "$OUT/before-export.log"; exit 1; }
cp bench/recipes/morph16.yaml $W/bench15.yaml
MODEL_NOW=$W/sd15-fp16-ts; [ -d $MODEL_NOW ] || MODEL_NOW=$W/sd15-fp16
for r in 1 2 3; do
  for who in before now; do
    if [ $who = before ]; then bin=.deps/before/sdmorph; m=$W/before-fp16; else bin=./sdmorph; m=$MODEL_NOW; fi
    s=$(date +%s.%N)
    $bin render $W/bench15.yaml --model $m --device cuda --batch 8 --no-aoti -o $W/b15-$who.rgb > $W/b15-$who-$r.log 2>&1
    e=$(date +%s.%N)
    echo "* 15 $who run $r: wall $(awk "BEGIN{printf \"%.2f\", $e-$s}") s; $(grep -Eo '[0-9.]+ s per rendered frame[^;]*' $W/b15-$who-$r.log | tail -n 1)"
  done
done
cmp $W/b15-before.rgb $W/b15-now.rgb && echo "* 15: before and now frames byte-identical" || echo "* 15: frames differ (bundles exported by different exporters)"
