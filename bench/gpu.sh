#!/usr/bin/env bash
# GPU checks and benchmark, on a machine with CUDA, torch, transformers and
# diffusers' source (PYTHONPATH); see bench/README.md.
#
#   bench/gpu.sh setup      build sdmorph, export the random-weight SD 1.5 bundles
#   bench/gpu.sh parity     our frames vs diffusers' StableDiffusionPipeline
#   bench/gpu.sh bench      16-frame 512x512 50-step DDIM morph: ours vs diffusers
#
# Logs and results go to $OUT (default: out/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
W=${SDM_GPU_WORK:-build/gpu}
mkdir -p "$OUT" "$W"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

gpu_name() { nvidia-smi --query-gpu=name --format=csv,noheader | head -1; }

setup() {
    [ -d .deps/media ] && export MEDIA_PREFIX=.deps/media
    make -j"$(nproc)" sdmorph build/models/analytic/model.yaml 2>&1 | tail -n 3
    [ -f "$W/sd15-fp16/model.yaml" ] || $PY pipeline/export/export_sd.py --random-weights "${SDM_SD15:-../shared/reference/sd15}" \
        --tokenizer "${SDM_CLIP:-../shared/clip}" --save-diffusers "$W/sd15-diffusers" --out "$W/sd15-fp16" --dtype float16
    [ -f "$W/sd15-fp32/model.yaml" ] || $PY pipeline/export/export_sd.py --checkpoint "$W/sd15-diffusers" \
        --out "$W/sd15-fp32" --dtype float32
}

# One frame, seed 1234, DDIM 20 steps, guidance 7.5: compare pixels.
parity_one() {   # dtype sampler karras tol_255 min_fraction
    local dt=$1 sampler=$2 karras=$3 tol=$4 frac=$5 name="parity-$1-$2"
    cat > "$W/$name.yaml" <<YAML
width: 512
height: 512
steps: 20
guidance: 7.5
seed: 1234
sampler: $sampler
karras: $karras
negative: "blurry, low quality"
keyframes:
  - "a rainy city street at night, neon signs, cinematic"
YAML
    ./sdmorph render "$W/$name.yaml" --model "$W/sd15-$([ "$dt" = float32 ] && echo fp32 || echo fp16)" \
        --device cuda -o "$W/$name.rgb" -q
    local ref_sampler=ddim; [ "$sampler" = dpmpp_2m ] && ref_sampler=dpmpp_2m_karras
    $PY bench/sd15_reference.py parity --weights "$W/sd15-diffusers" --out "$W/$name.npy" --dtype "$dt" \
        --steps 20 --seed 1234 --sampler "$ref_sampler"
    $PY - "$W/$name.rgb" "$W/$name.npy" "$tol" "$frac" "$name" <<'PY'
import sys, numpy as np
ours = np.fromfile(sys.argv[1], dtype=np.uint8).reshape(512, 512, 3)
ref = np.load(sys.argv[2])
d = np.abs(ours.astype(int) - ref.astype(int))
tol, frac = int(sys.argv[3]), float(sys.argv[4])
ok = (d <= tol).mean()
print(f"{sys.argv[5]}: {100 * ok:.3f}% of pixel values within {tol}/255 (need {100 * frac:.1f}%), max {d.max()}/255, mean {d.mean():.4f}")
sys.exit(0 if ok >= frac else 1)
PY
}

# Batching changes nothing: a float32 morph rendered 1 and 8 frames per call.
batch_parity() {
    cat > "$W/batches.yaml" <<YAML
width: 512
height: 512
steps: 20
guidance: 7.5
seed: 1234
frames: 7
negative: "blurry, low quality"
keyframes:
  - "a rainy city street at night, neon signs, cinematic"
  - "a dense forest in the rain, moss, cinematic"
YAML
    for b in 1 8; do
        ./sdmorph render "$W/batches.yaml" --model "$W/sd15-fp32" --device cuda --batch $b -o "$W/batch-$b.rgb" -q
    done
    $PY - "$W/batch-1.rgb" "$W/batch-8.rgb" <<'PY'
import sys, numpy as np
a = np.fromfile(sys.argv[1], dtype=np.uint8).astype(int)
b = np.fromfile(sys.argv[2], dtype=np.uint8).astype(int)
d = np.abs(a - b)
print(f"batch 1 vs batch 8, 8 frames fp32: max {d.max()}/255, {100 * (d <= 1).mean():.3f}% within 1/255, identical {(d == 0).mean() * 100:.3f}%")
sys.exit(0 if a.size == b.size and d.max() <= 1 else 1)
PY
}

# Same recipe twice on the GPU: bit-identical frames? And a batch far too
# large for the card: the render halves it and goes on.
faults() {
    for i in 1 2; do
        ./sdmorph render "$W/bench.yaml" --model "$W/sd15-fp16" --device cuda --batch 8 -o "$W/det-$i.rgb" -q
    done
    cmp -s "$W/det-1.rgb" "$W/det-2.rgb" && echo "determinism: two fp16 renders bit-identical" \
        || echo "determinism: two fp16 renders DIFFER"
    sed -e 's/^steps: .*/steps: 2/' -e 's/^frames: .*/frames: 399/' "$W/bench.yaml" > "$W/oom.yaml"
    ./sdmorph render "$W/oom.yaml" --model "$W/sd15-fp16" --device cuda --batch 400 -o "$W/oom.mp4" -q 2>&1 | cut -c1-300
}

parity() {
    local rc=0
    parity_one float32 ddim false 1 0.999 || rc=1
    parity_one float16 ddim false 4 0.99 || rc=1
    if [ "${SDM_PARITY_DPM:-1}" = 1 ]; then
        parity_one float32 dpmpp_2m true 1 0.999 || rc=1
    fi
    return $rc
}

bench() {
    echo "GPU: $(gpu_name)"
    cat > "$W/bench.yaml" <<YAML
width: 512
height: 512
steps: 50
guidance: 7.5
seed: 1234
negative: "blurry, low quality"
frames: 15
keyframes:
  - "a rainy city street at night, neon signs, cinematic"
  - "a dense forest in the rain, moss, cinematic"
YAML
    for b in ${SDM_BENCH_BATCHES:-8 16}; do
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$W/mem-$b.txt" &
        local smi=$!
        ./sdmorph render "$W/bench.yaml" --model "$W/sd15-fp16" --device cuda --batch "$b" -o "$W/bench-$b.mp4" -q \
            2>&1 | tee "$W/ours-$b.txt"
        kill $smi; wait $smi 2>/dev/null || true
        echo "sdmorph batch $b: peak GPU memory $(sort -n "$W/mem-$b.txt" | tail -1) MiB (nvidia-smi, whole device)"
        if [ "${CUDA_GRAPHS:-0}" = 1 ]; then
            ./sdmorph render "$W/bench.yaml" --model "$W/sd15-fp16" --device cuda --batch "$b" --cuda-graphs \
                -o "$W/bench-g-$b.mp4" -q 2>&1 | tee "$W/ours-g-$b.txt"
        fi
    done
    $PY bench/sd15_reference.py bench --weights "$W/sd15-diffusers" --frames 16 --batch 8 --steps 50 | tee "$W/diffusers-8.txt"
    $PY bench/sd15_reference.py bench --weights "$W/sd15-diffusers" --frames 4 --batch 1 --steps 50 | tee "$W/diffusers-1.txt"
    $PY - "$W" ${SDM_BENCH_BATCHES:-8 16} <<'PY'
import os, re, sys
w = sys.argv[1]
def per_frame(path, pat):
    m = re.search(pat, open(path).read())
    return float(m.group(1)) if m else float("nan")
d8 = per_frame(f"{w}/diffusers-8.txt", r"([0-9.]+) s/frame")
d1 = per_frame(f"{w}/diffusers-1.txt", r"([0-9.]+) s/frame")
print(f"diffusers eager fp16: batch 1 {d1:.4f} s/frame, batch 8 {d8:.4f} s/frame")
for b in sys.argv[2:]:
    for tag, name in (("", "step by step"), ("g-", "CUDA graphs")):
        if not os.path.exists(f"{w}/ours-{tag}{b}.txt"):
            continue
        ours = per_frame(f"{w}/ours-{tag}{b}.txt", r"([0-9.]+) s per rendered frame")
        mfu = 82.9 / ours / 989 if ours == ours else float("nan")
        print(f"sdmorph batch {b} ({name}): {ours:.4f} s/frame; {d8 / ours:.2f}x diffusers batch 8, "
              f"{d1 / ours:.2f}x batch 1; MFU {100 * mfu:.1f}%")
PY
}

# How far apart are diffusers' own float16 and float32 images on these
# random weights? Tells whether a float16 gap is ours or the model's.
fp16_spread() {
    [ -f "$W/parity-float32-ddim.npy" ] && [ -f "$W/parity-float16-ddim.npy" ] || parity
    $PY - "$W" <<'PY'
import sys, numpy as np
w = sys.argv[1]
ref32 = np.load(f"{w}/parity-float32-ddim.npy").astype(int)
ref16 = np.load(f"{w}/parity-float16-ddim.npy").astype(int)
ours16 = np.fromfile(f"{w}/parity-float16-ddim.rgb", dtype=np.uint8).reshape(512, 512, 3).astype(int)
ours32 = np.fromfile(f"{w}/parity-float32-ddim.rgb", dtype=np.uint8).reshape(512, 512, 3).astype(int)
for name, a, b in [("diffusers fp16 vs diffusers fp32", ref16, ref32), ("ours fp16 vs diffusers fp16", ours16, ref16),
                   ("ours fp16 vs diffusers fp32", ours16, ref32), ("ours fp32 vs diffusers fp32", ours32, ref32)]:
    d = np.abs(a - b)
    print(f"{name}: mean {d.mean():.3f}/255, max {d.max()}, within 4/255: {100 * (d <= 4).mean():.2f}%")
PY
}

cmd=${1:-setup}
[ $# -gt 0 ] && shift
"$cmd" "$@"
