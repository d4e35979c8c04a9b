#!/usr/bin/env bash
# GPU checks and benchmark, on a machine with CUDA, torch, transformers and
# diffusers' source (PYTHONPATH); see bench/README.md.
#
#   bench/gpu.sh setup         build sdmorph, export the random-weight SD 1.5 bundles
#   bench/gpu.sh cuda_tests    the test suite's CUDA checks (they skip on a machine without CUDA):
#                              test_denoiser (the captured loop, padded), test_torch_api,
#                              test_retime (the probe on the captured loop = step by step)
#   bench/gpu.sh aoti_fp8      issue 17's FP8 lever: an fp16 bundle whose UNet package runs FP8 products
#                              (SDM_FP8_MODE static|row|tensor), its parity cost against diffusers fp16;
#                              then SDM_BENCH_VARIANTS="aoti-graphs aoti-graphs@build/gpu/sd15-fp16-fp8" bench;
#                              aoti_fp8_start: its export (minutes of compile) in the background, aoti_fp8 waits
#   bench/gpu.sh unet_profile  bench/unet_profile.py on SD 1.5's shapes: SDPA kernels, attention shapes (heads
#                              padded to 64 too), Inductor, FP8 copies (SDM_PROFILE_ARGS: its extra flags)
#   bench/gpu.sh parity        our frames vs diffusers' StableDiffusionPipeline, same noise
#   bench/gpu.sh graphs        fp32 DDIM parity without CUDA graphs; graphs on/off byte-identical?
#   bench/gpu.sh batch_parity  a morph at --batch 1 and --batch 8, float32
#   bench/gpu.sh faults        two renders bit-identical? with 6 GiB free, a batch too large
#                              halves and goes on; a frame too large: a message, exit 1, no crash
#   bench/gpu.sh cl_export     a channels_last TorchScript bundle beside the fp16 one (variant cl-graphs)
#   bench/gpu.sh bench         16-frame 512x512 50-step DDIM morph: our variants vs diffusers
#                              eager and diffusers + torch.compile
#   bench/gpu.sh recipe        the real recipe (bench/recipes/pingpong3.yaml) to .rgb, .mp4,
#                              .mp4 + .gif, + sheet: render-loop s/frame; full batches alone
#   bench/gpu.sh memory        a 300-frame render: do host RSS and GPU memory stay flat?
#   bench/gpu.sh fp16_spread   diffusers fp16 vs fp32, with its own noise and with ours
#   bench/gpu.sh models_parity float32, ours vs diffusers: clip skip 2, a textual-inversion
#                              embedding, a random LoRA in kohya's and diffusers' layouts
#                              (needs peft), a single-file checkpoint vs the folder (needs
#                              diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py
#                              in $SDM_DIFFUSERS_SCRIPTS, default .deps/py); SDM_MP_PARTS picks some
#                              (clipskip ti lora-kohya lora-diffusers single)
#   bench/gpu.sh sampler_parity  every sampler (auto, ddim eta 1, euler_a, dpmpp_2m_sde...) vs a plain
#                              float32 diffusers call with generator=torch.Generator().manual_seed(1234)
#                              and no latents=; a 16-frame euler_a seed morph's adjacent-frame changes
#   bench/gpu.sh img2img_parity  image-to-image vs diffusers' StableDiffusionImg2ImgPipeline, float32,
#                              generator=torch.Generator().manual_seed(1234), strengths 0.5 and 0.8
#                              ($SDM_IMG2IMG_RUNS: sampler[-karras]-sSTRENGTH), from recipes/painting.py's picture
#   bench/gpu.sh retime        retime: even on SD 1.5 shapes: the probe's cost, the pace with and
#                              without it, and the pace at the probe's steps against the full render's
#   bench/gpu.sh sdxl_setup    build sdmorph; export random SDXL-shape bundles (float32 and float16 with
#                              the float32 VAE decode), made on the GPU, the two exports side by side
#   bench/gpu.sh sdxl_start    the same two exports in a session of their own, left running (after setup
#                              or build): the SD 1.5 steps go on beside them; sdxl_wait waits for them
#   bench/gpu.sh build_sdmorph  build sdmorph alone (no SD 1.5 bundles: a call for SDXL alone)
#   bench/gpu.sh sdxl_parity   a keyframe and a morph's midpoint (embedding and pooled lerped) vs diffusers'
#                              StableDiffusionXLPipeline, same noise: fp32 (1/255) and fp16 (4/255)
#   bench/gpu.sh sdxl_lora_parity  a random kohya-format SDXL LoRA (original UNet's block names, both text
#                              encoders) fused at export vs diffusers' load_lora_weights + fuse_lora, fp32
#                              keyframe, 1/255 (without peft: diffusers' lora_state_dict, fused as PEFT does;
#                              SDM_SDXL_LORA_LAYOUTS: kohya-sgm kohya diffusers)
#   bench/gpu.sh sdxl_bench    16-frame SDXL morph, guided, fp16: sdmorph per batch vs diffusers eager
#                              per batch and diffusers + torch.compile; s/frame, peak memory, ratios
#                              (diffusers first: sdxl_start's exports go on beside it, sdmorph waits)
#                              (SDXL size, steps, frames, batches: SDM_SDXL_SIZE (1024), SDM_SDXL_STEPS
#                              (30), SDM_SDXL_FRAMES (16), SDM_SDXL_BATCHES ("4 8"), SDM_SDXL_COMPILE (1);
#                              configs SDM_SDXL (../shared/reference/sdxl), tokenizer SDM_CLIP;
#                              SDM_SDXL_AOTI=1: the float16 bundle with AOTInductor packages, minutes more)
#   bench/gpu.sh sdxl_profile  one guided SDXL UNet call, ms: eager, torch.compile, Inductor with freezing
#                              (the AOTInductor package's config) and the float16 bundle's own TorchScript
#                              UNet, in one process (bench/sdxl_profile.py; after sdxl_wait; no VAE;
#                              SDM_SDXL_PROFILE_SKIP: e.g. "compile aoti" for the eager and TorchScript
#                              lines alone, about a minute)
#   bench/gpu.sh sdxl_vae_profile  the float16 bundle's TorchScript VAE decoder a frame per call beside
#                              eager: as it is, fuser off, optimizations off (after sdxl_wait; a minute)
#   bench/gpu.sh sdxl          the three SDXL steps in one go
#   bench/gpu.sh multi_gpu     two GPUs or more (issue 21): a 64-frame 512x512 SD 1.5-shape morph on one
#                              GPU and with --devices all in the same call: frames and MP4 identical?
#                              the speed-up; then two shards on two GPUs at once + join: the same MP4?
#   bench/gpu.sh all           the steps above ($SDM_GPU_STEPS), each logged to $OUT/STEP.log,
#                              within $SDM_GPU_BUDGET seconds; $OUT/summary.txt at the end
#
# Logs and results go to $OUT (default: out/gpu), work files to $SDM_GPU_WORK
# (default: build/gpu). Lines starting with "* " are results: `all` collects them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
W=${SDM_GPU_WORK:-build/gpu}
mkdir -p "$OUT" "$W"
PY=${PYTHON:-python3}
SDMORPH=${SDMORPH:-./sdmorph}
GPU=${SDM_SMI_GPU:-0}            # nvidia-smi's index of the GPU sdmorph renders on
# Inductor's caches for the torch.compile reference, kept between runs in the work dir
INDUCTOR_CACHE=${SDM_INDUCTOR_CACHE:-$W/inductor-cache}
STEPS_ALL="setup build_sdmorph cuda_tests unet_profile aoti_fp8_start aoti_fp8_export aoti_fp8 aoti_start cl_export parity graphs batch_parity faults aoti_use bench recipe memory fp16_spread models_parity sampler_parity retime seed_morph_steadiness sdxl_setup sdxl_start sdxl_wait sdxl_parity sdxl_lora_parity sdxl_bench sdxl_profile sdxl_vae_profile sdxl multi_gpu img2img_parity"
# what `all` runs by default: faults after aoti_use (it takes most of the
# GPU's memory, which the AOTInductor compile beside it needs)
STEPS_DEFAULT="setup aoti_start parity graphs batch_parity aoti_use bench faults memory fp16_spread retime"
STDBUF=$(command -v stdbuf > /dev/null && echo "stdbuf -oL" || true)
export PYTHONUNBUFFERED=1

gpu_name() { nvidia-smi -i "$GPU" --query-gpu=name --format=csv,noheader 2> /dev/null | head -1 || true; }

# Each line of stdin, prefixed with the wall time it arrived and a tab.
stamp() {
    local l
    while IFS= read -r l || [ -n "$l" ]; do
        printf '%s\t%s\n' "${EPOCHREALTIME/,/.}" "$l"
    done
}

build() {   # make arguments...
    make -j"$(nproc)" "$@" all     # sdmorph, the analytic bundle, and a line saying what is built in
}

build_sdmorph() {
    [ -d .deps/media ] && export MEDIA_PREFIX=.deps/media
    # the Makefile builds CUDA graphs in where it finds the CUDA runtime headers
    if build > "$W/make.log" 2>&1; then
        tail -n 3 "$W/make.log"
        echo "* build: sdmorph, $(grep -o 'libtorch: [^;]*' "$W/make.log" | tail -n 1)"
    elif rm -f build/shim/src/torch_api.o && build CUDA_GRAPHS=0 > "$W/make-plain.log" 2>&1; then
        tail -n 20 "$W/make.log"
        echo "* build: sdmorph WITHOUT CUDA graphs: the build with them failed (log $W/make.log)"
    else
        tail -n 40 "$W/make.log"
        echo "* build: FAILED (log $W/make.log)"
        return 1
    fi
}

setup() {
    local t=$SECONDS ex built=0
    # the exports need no sdmorph: they run while it builds
    (
        set -e
        [ -f "$W/sd15-fp16/model.yaml" ] || $PY pipeline/export/export_sd.py --random-weights \
            "${SDM_SD15:-../shared/reference/sd15}" --tokenizer "${SDM_CLIP:-../shared/clip}" \
            --save-diffusers "$W/sd15-diffusers" --out "$W/sd15-fp16" --dtype float16 ${SDM_EXPORT_ARGS:-}
        # SDM_GPU_FP32=0: no float32 bundle (a call that only benchmarks)
        [ "${SDM_GPU_FP32:-1}" = 0 ] || [ -f "$W/sd15-fp32/model.yaml" ] ||
            $PY pipeline/export/export_sd.py --checkpoint "$W/sd15-diffusers" --out "$W/sd15-fp32" --dtype float32
    ) > "$W/setup-export.log" 2>&1 &
    ex=$!
    build_sdmorph && built=1
    if ! wait "$ex"; then
        tail -n 30 "$W/setup-export.log"
        echo "* bundles: export FAILED (log $W/setup-export.log)"
        return 1
    fi
    grep '^export_sd: bundle written' "$W/setup-export.log" || true
    [ "$built" = 1 ] || return 1
    echo "* bundles: $W/sd15-fp16 ($(has_aoti && echo "lists unet_aoti" || echo "no unet_aoti"))$(
        [ -f "$W/sd15-fp32/model.yaml" ] && echo ", $W/sd15-fp32"); setup $((SECONDS - t)) s"
}

has_aoti() { grep -Eq '^[[:space:]]*unet_aoti:' "$W/sd15-fp16/model.yaml" 2> /dev/null; }

model_of() { [ "$1" = float32 ] && echo "$W/sd15-fp32" || echo "$W/sd15-fp16"; }

# One 512x512 frame, seed 1234, 20 steps, guidance 7.5: the recipe $W/NAME.yaml
frame_recipe() {   # name sampler karras prompt [extra recipe lines]
    cat > "$W/$1.yaml" <<YAML
width: 512
height: 512
steps: 20
guidance: 7.5
seed: 1234
sampler: $2
karras: $3
eta: ${PARITY_ETA:-0}
negative: "blurry, low quality"
${5:-}
keyframes:
  - "$4"
YAML
}

# Ours: one frame -> $W/NAME.rgb
parity_render() {   # dtype sampler karras name [sdmorph flags...]
    local dt=$1 sampler=$2 karras=$3 name=$4
    shift 4
    frame_recipe "$name" "$sampler" "$karras" "a rainy city street at night, neon signs, cinematic"
    rm -f "$W/$name.rgb"
    "$SDMORPH" render "$W/$name.yaml" --model "$(model_of "$dt")" --device cuda -o "$W/$name.rgb" -q "$@"
}

# Diffusers on the same weights (and, unless told otherwise, our noise) -> NPY
parity_reference() {   # dtype sampler npy [sd15_reference.py flags...]
    local dt=$1 sampler=$2 npy=$3 ref_sampler=ddim
    shift 3
    [ "$sampler" = dpmpp_2m ] && ref_sampler=dpmpp_2m_karras
    rm -f "$npy"
    $PY bench/sd15_reference.py parity --weights "$W/sd15-diffusers" --out "$npy" --dtype "$dt" \
        --steps 20 --seed 1234 --sampler "$ref_sampler" "$@"
}

compare_images() {   # ours.rgb ref.npy tol_255 min_fraction label [size [frame]]
    $PY - "$@" <<'PY'
import sys, numpy as np
n = int(sys.argv[6]) if len(sys.argv) > 6 else 512
k = int(sys.argv[7]) if len(sys.argv) > 7 else 0
ours = np.fromfile(sys.argv[1], dtype=np.uint8)[k * n * n * 3:(k + 1) * n * n * 3].reshape(n, n, 3)
ref = np.load(sys.argv[2])
d = np.abs(ours.astype(int) - ref.astype(int))
tol, frac = int(sys.argv[3]), float(sys.argv[4])
ok = (d <= tol).mean()
print(f"* {sys.argv[5]}: {100 * ok:.3f}% of pixel values within {tol}/255 (need {100 * frac:.1f}%), "
      f"max {d.max()}/255, mean {d.mean():.4f}/255")
sys.exit(0 if ok >= frac else 1)
PY
}

# One frame against diffusers. Extra arguments go to sdmorph and name the
# render (parity-float32-ddim-no-cuda-graphs); such a render reuses the
# reference image already made.
parity_one() {   # dtype sampler karras tol_255 min_fraction [sdmorph flags...]
    local dt=$1 sampler=$2 karras=$3 tol=$4 frac=$5 name tag
    shift 5
    name="parity-$dt-$sampler"
    tag=$(printf '%s' "$*" | sed -e 's/--//g' -e 's/[^a-z0-9]\{1,\}/-/g')
    parity_render "$dt" "$sampler" "$karras" "$name${tag:+-$tag}" "$@" || return 1
    if [ -z "$tag" ] || [ ! -f "$W/$name.npy" ]; then
        parity_reference "$dt" "$sampler" "$W/$name.npy" || return 1
    fi
    compare_images "$W/$name${tag:+-$tag}.rgb" "$W/$name.npy" "$tol" "$frac" "$name${tag:+-$tag}"
}

# An AOTInductor UNet may take batches only (export_sd.py --aoti-frames 8):
# then frame 0 of a morph rendered 8 frames per call, the same prompt, seed
# and noise as parity's frame, must pass float16 parity too.
parity_batched() {   # tol_255 min_fraction [model [tag]]
    local model=${3:-$W/sd15-fp16} name=parity-float16-ddim-aoti-batch8${4:+-$4} one=$((512 * 512 * 3))
    [ -f "$W/parity-float16-ddim.npy" ] || parity_reference float16 ddim "$W/parity-float16-ddim.npy" || return 1
    batches_recipe
    rm -f "$W/$name.rgb"
    "$SDMORPH" render "$W/batches.yaml" --model "$model" --device cuda --batch 8 -o "$W/$name.rgb" \
        > "$W/$name.log" 2>&1 || { tail -n 5 "$W/$name.log"; return 1; }
    grep -q "AOTInductor" "$W/$name.log" || echo "* note: the batched render's log does not mention AOTInductor"
    head -c "$one" "$W/$name.rgb" > "$W/$name-frame0.rgb"
    compare_images "$W/$name-frame0.rgb" "$W/parity-float16-ddim.npy" "$1" "$2" "$name (frame 0 of 8)"
}

parity() {
    local rc=0
    parity_one float32 ddim false 1 0.999 || rc=1
    parity_one float16 ddim false 4 0.99 || rc=1
    if has_aoti; then
        parity_batched 4 0.99 || rc=1
    fi
    if [ "${SDM_PARITY_DPM:-1}" = 1 ]; then
        parity_one float32 dpmpp_2m true 1 0.999 || rc=1
    fi
    return $rc
}

# CUDA graphs replay the same kernels: float32 DDIM without them must pass
# parity and give the same bytes as with them.
graphs() {
    local rc=0 on="$W/parity-float32-ddim.rgb" off="$W/parity-float32-ddim-no-cuda-graphs.rgb"
    [ -f "$on" ] || parity_render float32 ddim false parity-float32-ddim || return 1
    parity_one float32 ddim false 1 0.999 --no-cuda-graphs || rc=1
    [ -f "$off" ] || return 1
    $PY - "$on" "$off" <<'PY' || rc=1
import sys, numpy as np
a = np.fromfile(sys.argv[1], dtype=np.uint8).astype(int)
b = np.fromfile(sys.argv[2], dtype=np.uint8).astype(int)
same = a.size == b.size and bool((a == b).all())
diff = f"max diff {np.abs(a - b).max()}/255, {(a != b).sum()} values differ" if a.size == b.size else "sizes differ"
print(f"* graphs on vs off, ours fp32 DDIM: {'byte-identical' if same else 'DIFFER'} ({b.size} bytes; {diff})")
sys.exit(0 if same else 1)
PY
    return $rc
}

# An 8-frame morph, parity's first prompt to another.
batches_recipe() {
    cat > "$W/batches.yaml" <<YAML
width: 512
height: 512
steps: 20
guidance: 7.5
seed: 1234
sampler: ddim
frames: 7
negative: "blurry, low quality"
keyframes:
  - "a rainy city street at night, neon signs, cinematic"
  - "a dense forest in the rain, moss, cinematic"
YAML
}

# Batching changes nothing: a float32 morph rendered 1 and 8 frames per call.
batch_parity() {
    batches_recipe
    for b in 1 8; do
        rm -f "$W/batch-$b.rgb"
        "$SDMORPH" render "$W/batches.yaml" --model "$W/sd15-fp32" --device cuda --batch $b -o "$W/batch-$b.rgb" -q
    done
    $PY - "$W/batch-1.rgb" "$W/batch-8.rgb" <<'PY'
import sys, numpy as np
a = np.fromfile(sys.argv[1], dtype=np.uint8).astype(int)
b = np.fromfile(sys.argv[2], dtype=np.uint8).astype(int)
if a.size != b.size:
    print(f"* batch 1 vs batch 8, 8 frames fp32: sizes differ ({a.size} and {b.size} bytes)")
    sys.exit(1)
d = np.abs(a - b)
print(f"* batch 1 vs batch 8, 8 frames fp32: max {d.max()}/255, {100 * (d <= 1).mean():.3f}% within 1/255, identical {(d == 0).mean() * 100:.3f}%")
sys.exit(0 if d.max() <= 1 else 1)
PY
}

# The benchmark's morph: 16 frames.
bench_recipe() {
    cp bench/recipes/morph16.yaml "$W/bench.yaml"
}

# Same recipe twice on the GPU: bit-identical frames (the design promises
# it)? And a batch far too large for the card: the render halves it and goes on.
faults() {
    local rc=0
    bench_recipe
    for i in 1 2; do
        rm -f "$W/det-$i.rgb"
        "$SDMORPH" render "$W/bench.yaml" --model "$W/sd15-fp16" --device cuda --batch 8 -o "$W/det-$i.rgb" -q
    done
    if cmp -s "$W/det-1.rgb" "$W/det-2.rgb"; then
        echo "* determinism: two fp16 renders bit-identical"
    else
        echo "* determinism: two fp16 renders DIFFER"
        rc=1
    fi
    # a card with 6 GiB free (the rest taken by another process), as on a
    # consumer GPU: 64 frames per call does not fit, so the render halves the
    # batch and finishes, and one 4096x4096 frame does not fit at all
    hog_start 6 || return 1
    sed -e 's/^steps: .*/steps: 2/' -e 's/^frames: .*/frames: 63/' "$W/bench.yaml" > "$W/oom.yaml"
    rm -f "$W/oom.mp4"
    fault_render "6 GiB free, --batch 64" 0 "$W/oom.yaml" --batch 64 -o "$W/oom.mp4" || rc=1
    if grep -q "out of device memory at 64 frames per call" "$W/fault.log" && [ -s "$W/oom.mp4" ]; then
        echo "* 6 GiB free, --batch 64: halved and finished ($(grep -o 'batch [0-9]*$' "$W/fault.log" | tail -n 1))"
    else
        echo "* 6 GiB free, --batch 64: did NOT halve and finish"
        rc=1
    fi
    printf 'width: 4096\nheight: 4096\nsteps: 1\nseed: 1\nframes: 1\nkeyframes:\n  - "a castle"\n' > "$W/huge.yaml"
    printf 'earlier good output\n' > "$W/huge.rgb"
    fault_render "6 GiB free, one 4096x4096 frame" 1 "$W/huge.yaml" --batch 1 --no-cuda-graphs -o "$W/huge.rgb" || rc=1
    if grep -q "out of device memory" "$W/fault.log"; then
        if grep -q "lower --batch (or width/height)" "$W/fault.log" && grep -q "^earlier good output$" "$W/huge.rgb"; then
            echo "* 6 GiB free, one 4096x4096 frame: does not fit; says what to lower, earlier output kept"
        else
            echo "* 6 GiB free, one 4096x4096 frame: out of memory WITHOUT the advice, or the earlier output lost"
            rc=1
        fi
    fi
    hog_stop
    return $rc
}

# Another process holding all but $1 GiB of the GPU's free memory, until hog_stop.
hog_start() {   # GiB left free
    $PY -c "
import sys, time, torch
free, _ = torch.cuda.mem_get_info()
hold = torch.empty(max(free - int($1 * 2**30), 0), dtype=torch.uint8, device='cuda')
print('ready', flush=True)
time.sleep(3600)
" > "$W/hog.out" 2>&1 &
    HOG=$!
    for _ in $(seq 1 60); do
        grep -q ready "$W/hog.out" && return 0
        kill -0 "$HOG" 2> /dev/null || break
        sleep 1
    done
    echo "* hog: could not take the GPU's memory ($(tail -n 1 "$W/hog.out"))"
    return 1
}
hog_stop() { kill "$HOG" 2> /dev/null; wait "$HOG" 2> /dev/null || true; }

# Runs one render whose exit status may be 0, or 1 where $2 is 1; a signal
# (a crash) or any other status fails. Its output goes to $W/fault.log.
fault_render() {   # label may_fail recipe sdmorph flags...
    local label=$1 may_fail=$2 recipe=$3 st=0
    shift 3
    "$SDMORPH" render "$recipe" --model "$W/sd15-fp16" --device cuda -q "$@" > "$W/fault.log" 2>&1 || st=$?
    echo "* $label: exit $st; $(tail -n 2 "$W/fault.log" | cut -c1-300 | tr '\n' ' ')"
    [ "$st" = 0 ] || { [ "$st" = 1 ] && [ "$may_fail" = 1 ]; }
}

cl_export() {
    [ -f "$W/sd15-fp16-cl/model.yaml" ] && { echo "* cl: $W/sd15-fp16-cl exists"; return 0; }
    $PY pipeline/export/export_sd.py --checkpoint "$W/sd15-diffusers" --out "$W/sd15-fp16-cl" --dtype float16 \
        --channels-last 2>&1 | grep -E '^export_sd' || true
    [ -f "$W/sd15-fp16-cl/model.yaml" ] || { echo "* cl: FAILED, no $W/sd15-fp16-cl/model.yaml"; return 1; }
    echo "* cl: channels_last bundle $W/sd15-fp16-cl (bench variant cl-graphs)"
}

# Runs a command while nvidia-smi samples the GPU every 50 ms: $W/NAME.log
# (its output, each line stamped with the wall time it arrived), $W/NAME.smi
# (timestamp, utilization.gpu %, memory.used MiB), $W/NAME.times.
sampled() {   # name command...
    local name=$1 smi rc=0 start
    shift
    start=$(date +%s.%N)
    # shellcheck disable=SC2086 # "stdbuf -oL" or nothing
    $STDBUF nvidia-smi -i "$GPU" --query-gpu=timestamp,utilization.gpu,memory.used \
        --format=csv,noheader,nounits -lms 50 > "$W/$name.smi" 2> /dev/null &
    smi=$!
    sleep 0.5                       # a few samples of the GPU before the run
    "$@" 2>&1 | stamp > "$W/$name.log" || rc=$?
    printf 'start %s\nexit %s\nrc %s\n' "$start" "$(date +%s.%N)" "$rc" > "$W/$name.times"
    sleep 0.3
    kill "$smi" 2> /dev/null || true
    wait "$smi" 2> /dev/null || true
    cut -f2- "$W/$name.log"
    return "$rc"
}

# A variant may name its bundle after an @ (aoti-graphs@build/gpu/other):
# the flags are the variant's, the model that directory. NAME-timings is
# NAME with --timings (the device's time for sampling and for decoding).
variant_flags() {
    local v=${1%%@*} t=""
    case $v in *-timings) v=${v%-timings} t="--timings" ;; esac
    case $v in
    eager) echo "--no-cuda-graphs --no-aoti $t" ;;
    graphs | cl-graphs) echo "--no-aoti $t" ;;
    graphs-cudnnbench) echo "--no-aoti --cudnn-benchmark $t" ;;
    aoti-graphs) echo "$t" ;;
    aoti) echo "--no-cuda-graphs $t" ;;
    *) echo "unknown bench variant '$1'" >&2; return 1 ;;
    esac
}

variant_model() {
    case $1 in
    *@*) echo "${1#*@}" ;;
    cl-*) echo "$W/sd15-fp16-cl" ;;
    *) echo "$W/sd15-fp16" ;;
    esac
}
bench() {
    local variants="eager graphs graphs-cudnnbench" runs="" name b v r
    local -a flags
    echo "GPU: $(gpu_name)"
    bench_recipe
    [ -f "$W/sd15-fp16-cl/model.yaml" ] && variants="$variants cl-graphs"
    has_aoti && variants="$variants aoti-graphs aoti"
    variants=${SDM_BENCH_VARIANTS:-$variants}
    for r in $(seq 1 "${SDM_BENCH_REPEAT:-1}"); do
        for b in ${SDM_BENCH_BATCHES:-8 16}; do
            for v in $variants; do
                name="ours-${v//[^A-Za-z0-9_.-]/_}-b$b-r$r"
                read -ra flags <<< "$(variant_flags "$v")"
                echo "--- sdmorph $v, batch $b${flags[*]:+ (${flags[*]})}, run $r"
                rm -f "$W/$name.mp4"
                sampled "$name" "$SDMORPH" render "$W/bench.yaml" --model "$(variant_model "$v")" --device cuda \
                    --batch "$b" -o "$W/$name.mp4" -q "${flags[@]}" || echo "sdmorph $v batch $b: FAILED"
                runs="$runs $name"
            done
        done
    done
    echo "--- diffusers"
    sampled diffusers-b8 $PY bench/sd15_reference.py bench --weights "$W/sd15-diffusers" --frames 16 --batch 8 --steps 50 ||
        echo "diffusers batch 8: FAILED"
    # the reference a Python user would pick: torch.compile on the UNet and
    # the VAE decoder, warm, same frames and batch (SDM_BENCH_COMPILE=0: not run)
    if [ "${SDM_BENCH_COMPILE:-1}" = 1 ]; then
        echo "--- diffusers + torch.compile (mode ${SDM_COMPILE_MODE:-default}; Inductor cache $INDUCTOR_CACHE)"
        sampled diffusers-compile-b8 $PY bench/sd15_reference.py bench --weights "$W/sd15-diffusers" --frames 16 \
            --batch 8 --steps 50 --compile --compile-mode "${SDM_COMPILE_MODE:-default}" --cache-dir "$INDUCTOR_CACHE" ||
            echo "diffusers + torch.compile batch 8: FAILED"
        runs="$runs diffusers-compile-b8"
    fi
    # SDM_BENCH_B1=0: no batch-1 baseline (a call short of time)
    if [ "${SDM_BENCH_B1:-1}" = 1 ]; then
        sampled diffusers-b1 $PY bench/sd15_reference.py bench --weights "$W/sd15-diffusers" --frames 4 --batch 1 \
            --steps 50 || echo "diffusers batch 1: FAILED"
        runs="$runs diffusers-b1"
    fi
    # shellcheck disable=SC2086 # run names
    bench_table "$(gpu_name)" $runs diffusers-b8
}

# The table of runs made by `sampled`: s/frame, ratios against diffusers,
# MFU, GPU busy fraction over the render loop, peak memory, loading time.
bench_table() {   # gpu_name run...
    $PY - "$W" "$@" <<'PY'
import datetime, math, re, sys

w, gpu, names = sys.argv[1], sys.argv[2], sys.argv[3:]
nan = float("nan")
FINAL = re.compile(r"sdmorph: (\d+) frames \((\d+) rendered\) at (\d+)x(\d+) in ([0-9.]+) s "
                   r"\(\+([0-9.]+) s loading[^)]*\), ([0-9.]+) s per rendered frame, batch (\d+)")
DIFF = re.compile(r"diffusers batch (\d+): ([0-9.]+) s/frame.*?([0-9.]+) s loading")
WINDOW = re.compile(r"timed window: ([0-9.]+) ([0-9.]+)")


def number(s):
    try:
        return float(s)
    except ValueError:      # [N/A], [Not Supported], a line cut off by kill
        return None


def smi_time(s):
    """nvidia-smi's local time ("2026/11/26 06:30:01.123") in epoch seconds,
    read in this process's zone as `date` reads it."""
    for fmt in ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S"):
        try:
            return datetime.datetime.strptime(s, fmt).timestamp()
        except ValueError:
            pass
    return None


def samples(name, start):
    rows = []
    try:
        lines = open(f"{w}/{name}.smi", errors="replace").read().splitlines()
    except OSError:
        return rows
    for line in lines:
        f = [x.strip() for x in line.split(",")]
        t = smi_time(f[0]) if len(f) == 3 else None
        if t is not None:
            rows.append((t, number(f[1]), number(f[2])))
    # The first sample comes a moment after the start; whole quarter-hours off
    # means nvidia-smi and we disagree on the time zone: undo that.
    if rows and abs(rows[0][0] - start) > 60:
        shift = round((start - rows[0][0]) / 900) * 900
        print(f"* note, {name}: nvidia-smi's clock is {shift:+.0f} s off ours (time zone?); shifted")
        rows = [(t + shift, u, m) for t, u, m in rows]
    return rows


def run(name):
    r = dict(name=name, spf=nan, load=nan, batch=None, busy=nan, n_busy=0, peak=nan, rc=1, notes=[])
    try:
        times = dict(line.split() for line in open(f"{w}/{name}.times") if line.strip())
        log = open(f"{w}/{name}.log", errors="replace").read().splitlines()
    except OSError:
        return r
    r["rc"] = int(times["rc"])
    window = None
    for line in log:
        stamp, _, text = line.partition("\t")
        m, d, win = FINAL.search(text), DIFF.search(text), WINDOW.search(text)
        if m:
            # the loop is the last X s before the line: X = s/frame x rendered (more digits than "in X s")
            loop = float(m[7]) * int(m[2]) or float(m[5])
            window = (float(stamp) - loop, float(stamp))
            r.update(spf=float(m[7]), load=float(m[6]), batch=int(m[8]))
        elif d:
            r.update(spf=float(d[2]), load=float(d[3]), batch=int(d[1]))
        elif win:
            window = (float(win[1]), float(win[2]))
        elif name.startswith("ours") and text.strip():
            r["notes"].append(text.strip())     # warnings: graphs off, batch halved, ...
    rows = samples(name, float(times["start"]))
    mem = [m for _, _, m in rows if m is not None]
    r["peak"] = max(mem) if mem else nan
    if window:
        busy = [u for t, u, _ in rows if u is not None and window[0] <= t <= window[1]]
        r["n_busy"] = len(busy)
        r["busy"] = sum(busy) / len(busy) if busy else nan
    return r


runs = [run(n) for n in names]
ref = {r["name"]: r["spf"] for r in runs if r["name"].startswith("diffusers")}
d8, d1 = ref.get("diffusers-b8", nan), ref.get("diffusers-b1", nan)
dc8 = ref.get("diffusers-compile-b8", nan)
repeats = any(re.search(r"-r([2-9]|\d\d+)$", n) for n in names)
print(f"* GPU: {gpu}")
print("* 16-frame 512x512 50-step DDIM morph, CFG 7.5, fp16; ratios: diffusers' s/frame over ours (>1: ours faster); "
      "'vs compiled': diffusers with torch.compile on the UNet and VAE decoder, batch 8, warm")
print(f"* {'variant':<18} {'batch':>6} {'s/frame':>8} {'vs diff b8':>10} {'vs compiled':>11} {'vs diff b1':>10} "
      f"{'MFU':>6} {'GPU busy':>8} {'peak MiB':>8} {'loading s':>9}")
for r in runs:
    n = r["name"]
    m = re.fullmatch(r"ours-(.+)-b(\d+)-r(\d+)", n) or re.fullmatch(r"(diffusers(?:-compile)?)-b(\d+)", n)
    label, b = m[1], m[2]
    if repeats and not label.startswith("diffusers"):
        label += f" #{m[3]}"
    batch = b if r["batch"] in (None, int(b)) else f"{b}>{r['batch']}"
    if r["rc"] != 0 or math.isnan(r["spf"]):
        print(f"* {label:<18} {batch:>6}   FAILED (exit {r['rc']}; see {w}/{n}.log)")
        continue
    mfu = 82.9 / r["spf"] / 989
    ratio = lambda d, width=10: f"{d / r['spf']:{width - 1}.2f}x" if not math.isnan(d) else f"{'-':>{width}}"
    busy = f"{r['busy']:7.1f}%" if not math.isnan(r["busy"]) else f"{'-':>8}"
    print(f"* {label:<18} {batch:>6} {r['spf']:8.4f} {ratio(d8)} {ratio(dc8, 11)} {ratio(d1)} {100 * mfu:5.1f}% "
          f"{busy} {r['peak']:8.0f} {r['load']:9.1f}")
# the must-show: sdmorph's defaults at batch 8 against both references
for want in ("aoti-graphs", "graphs"):
    mine = [r for r in runs if re.fullmatch(rf"ours-{want}-b8-r\d+", r["name"]) and not math.isnan(r["spf"])]
    if mine:
        best = min(r["spf"] for r in mine)
        print(f"* sdmorph {want} batch 8, {best:.4f} s/frame: {d8 / best:.2f}x diffusers eager, "
              f"{dc8 / best:.2f}x diffusers + torch.compile (same run)")
        break
print("* MFU: 82.9 TFLOP per frame over s/frame, against 989 TFLOP/s dense fp16. GPU busy: mean NVML "
      "utilization.gpu (a kernel was running) sampled every 50 ms over the timed loop; peak: max memory.used, "
      "whole device, whole run.")
for r in runs:
    for note in dict.fromkeys(r["notes"]):
        print(f"* note, {r['name']}: {note[:200]}")
    if r["rc"] == 0 and r["n_busy"] < 5:
        print(f"* note, {r['name']}: only {r['n_busy']} utilization samples in the timed loop")
PY
}

# The real recipe (bench/recipes/pingpong3.yaml: 3 prompts pingpong, 120
# frames shown, 61 rendered, DPM++ 2M Karras 25 steps, 512x512) rendered
# to each output set in one run, fp16, batch 8: the render loop's s/frame
# (sdmorph's report: from the first batch to the last frame handed to the
# outputs and the pace measured) and s/frame to the outputs committed (the
# loop plus the encoders finishing after it: the GIF's second pass, x264's
# lookahead), each against .rgb alone and against the full-batch rate
# (output frames 0-55: the 7 full batches, no tail); then where the loop's
# time went (sdmorph's "loop" line: launching batches, waiting for the
# device, frames out of which the outputs' queue was full and the pace).
# Then the GIFs' sizes and PSNR against the .rgb frames.
recipe_runs="rgb mp4 mp4_gif mp4_gif_sheet mp4_gif_frame full_batches"
recipe() {
    local name v b=${SDM_RECIPE_BATCH:-8} runs=""
    local -a out
    echo "GPU: $(gpu_name)"
    for v in ${SDM_RECIPE_RUNS:-$recipe_runs}; do
        name="recipe-$v"
        rm -f "$W/$name".*
        cp bench/recipes/pingpong3.yaml "$W/$name.yaml"
        case $v in
        rgb) out=(-o "$W/$name.rgb") ;;
        mp4) out=(-o "$W/$name.mp4") ;;
        mp4_gif) out=(-o "$W/$name.mp4" -o "$W/$name.gif") ;;
        # the contact sheet is a recipe key (-o replaces it): outputs in the recipe
        mp4_gif_sheet)
            printf 'output: [%s, %s]\ncontact_sheet: %s\n' "$W/$name.mp4" "$W/$name.gif" "$W/$name.png" >> "$W/$name.yaml"
            out=() ;;
        mp4_gif_frame)
            printf 'gif_palette: frame\n' >> "$W/$name.yaml"
            out=(-o "$W/$name.mp4" -o "$W/$name.gif") ;;
        full_batches) out=(-o "$W/$name.rgb" --frames "0-$((7 * b - 1))") ;;
        *)
            echo "recipe: unknown run '$v' (runs: $recipe_runs)"
            return 2 ;;
        esac
        echo "--- recipe, $v"
        sampled "$name" "$SDMORPH" render "$W/$name.yaml" --model "$W/sd15-fp16" --device cuda --batch "$b" \
            -q "${out[@]}" || echo "recipe $v: FAILED"
        runs="$runs $name"
    done
    # shellcheck disable=SC2086 # run names
    $PY - "$W" "$(gpu_name)" $runs <<'PY'
import math, os, re, sys

w, gpu, names = sys.argv[1], sys.argv[2], sys.argv[3:]
FINAL = re.compile(r"sdmorph: (\d+) frames \((\d+) rendered\) at (\d+)x(\d+) in ([0-9.]+) s "
                   r"\(\+([0-9.]+) s loading[^)]*\), ([0-9.]+) s per rendered frame, batch (\d+)")
WHAT = {"rgb": ".rgb alone", "mp4": ".mp4", "mp4_gif": ".mp4 + .gif", "mp4_gif_sheet": ".mp4 + .gif + sheet",
        "mp4_gif_frame": ".mp4 + .gif (palette per frame)", "full_batches": ".rgb, frames 0-55 (full batches)"}
TIMING = re.compile(r"sdmorph: loop ([0-9.]+) s: launching ([0-9.]+), waiting for the device ([0-9.]+), "
                    r"frames out ([0-9.]+) \(outputs' queue full ([0-9.]+), pace ([0-9.]+)\); "
                    r"outputs finished ([0-9.]+) s after it")
res = {}
for n in names:
    try:
        text = open(f"{w}/{n}.log", errors="replace").read()
    except OSError:
        continue
    m = t = None
    for m in FINAL.finditer(text):
        pass
    for t in TIMING.finditer(text):
        pass
    if m:
        r = res[n[len("recipe-"):]] = dict(shown=int(m[1]), rendered=int(m[2]), loop=float(m[7]) * int(m[2]),
                                           load=float(m[6]), spf=float(m[7]), batch=int(m[8]))
        r.update(zip(("loop", "launch", "wait", "out", "full", "pace", "finish"), map(float, t.groups())) if t else {})
        r["spf_done"] = (r["loop"] + r.get("finish", math.nan)) / max(r["rendered"], 1)
rgb, full = res.get("rgb", {}).get("spf", math.nan), res.get("full_batches", {}).get("spf", math.nan)
rgb_done, full_done = (res.get(k, {}).get("spf_done", math.nan) for k in ("rgb", "full_batches"))
print(f"* GPU: {gpu}")
print("* recipe pingpong3: 120 frames shown, 61 rendered, DPM++ 2M Karras 25 steps, 512x512, fp16; s per rendered "
      "frame: of the render loop, and to the outputs committed (loop + encoders finishing after it)")
print(f"* {'outputs':<34} {'shown':>5} {'rendered':>8} {'batch':>5} {'loop s':>7} {'s/frame':>8} {'vs .rgb':>8} "
      f"{'vs full':>8} {'done s/fr':>9} {'vs .rgb':>8} {'vs full':>8} {'loading s':>9}")
for n in names:
    v = n[len("recipe-"):]
    r = res.get(v)
    if not r:
        print(f"* {WHAT.get(v, v):<34} FAILED (see {w}/{n}.log)")
        continue
    print(f"* {WHAT.get(v, v):<34} {r['shown']:>5} {r['rendered']:>8} {r['batch']:>5} {r['loop']:7.2f} "
          f"{r['spf']:8.4f} {r['spf'] / rgb:7.3f}x {r['spf'] / full:7.3f}x {r['spf_done']:9.4f} "
          f"{r['spf_done'] / rgb_done:7.3f}x {r['spf_done'] / full_done:7.3f}x {r['load']:9.1f}")
print("* vs .rgb / vs full: s/frame over .rgb alone's and over the full batches' (1.10 = 10% slower); "
      "done: to the outputs committed")
print(f"* {'where the loop went, s':<34} {'loop':>7} {'launch':>7} {'device':>7} {'out':>7} {'q full':>7} "
      f"{'pace':>7} {'finish':>7}")
for n in names:
    r = res.get(n[len("recipe-"):])
    if r and "launch" in r:
        print(f"* {WHAT.get(n[len('recipe-'):], n):<34} {r['loop']:7.2f} {r['launch']:7.2f} {r['wait']:7.2f} "
              f"{r['out']:7.2f} {r['full']:7.2f} {r['pace']:7.2f} {r['finish']:7.2f}")
print("* launch: queueing batches (host); device: waiting for a batch's frames; out: frames to outputs, pace, "
      "frame cache, of which q full: an encoder behind, pace: the pace's SSIM queue and report; finish: after "
      "the loop, encoders finishing and files committed")

# the GIFs against the frames they were made from
src = f"{w}/recipe-rgb.rgb"
try:
    import numpy as np
    from PIL import Image, ImageSequence
except ImportError as e:
    print(f"* note: GIF sizes and PSNR not measured ({e})")
    src = None
if src and os.path.exists(src):
    frames = np.fromfile(src, dtype=np.uint8).reshape(-1, 512, 512, 3)
    for n in names:
        gif = f"{w}/{n}.gif"
        if not os.path.exists(gif):
            continue
        ps = []
        with Image.open(gif) as im:
            for k, fr in enumerate(ImageSequence.Iterator(im)):
                a = np.asarray(fr.convert("RGB"), dtype=np.float64)
                if k >= len(frames):
                    break
                mse = ((a - frames[k]) ** 2).mean()
                ps.append(99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse))
        print(f"* gif {WHAT.get(n[len('recipe-'):], n)}: {os.path.getsize(gif) / 1e6:.2f} MB for {len(ps)} frames "
              f"(of {len(frames)}), PSNR against the frames mean {np.mean(ps):.2f} dB, min {np.min(ps):.2f} dB")
PY
}

# A 300-frame render (10 steps, batch 8, fp16, MP4) with the process's VmRSS
# and the GPU's memory.used sampled every 0.5 s: memory must stay flat. "At
# 10%" is the median of the samples in 5-15% of the render loop, "at 50%" in
# 45-55%, "end" in its last 10%; host RSS may grow by 10% at most from 10% to end.
memory() {
    local pid stamper fifo="$W/memory.fifo" rc=0 state rss gpu
    cat > "$W/memory.yaml" <<YAML
width: 512
height: 512
steps: 10
guidance: 7.5
seed: 1234
negative: "blurry, low quality"
keyframes:
  - prompt: "a rainy city street at night, neon signs, cinematic"
    frames: 299
  - "a dense forest in the rain, moss, cinematic"
YAML
    rm -f "$W/memory.mp4" "$fifo"
    : > "$W/memory.samples"
    mkfifo "$fifo"
    stamp < "$fifo" > "$W/memory.log" &
    stamper=$!
    "$SDMORPH" render "$W/memory.yaml" --model "$W/sd15-fp16" --device cuda --batch 8 -o "$W/memory.mp4" -q \
        > /dev/null 2> "$fifo" &
    pid=$!
    while :; do
        state=$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2> /dev/null) || true
        [ -n "$state" ] && [ "$state" != Z ] || break
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2> /dev/null) || true
        gpu=$(nvidia-smi -i "$GPU" --query-gpu=memory.used --format=csv,noheader,nounits 2> /dev/null | head -1) || true
        printf '%s %s %s\n' "${EPOCHREALTIME/,/.}" "${rss:-NA}" "${gpu:-NA}" >> "$W/memory.samples"
        sleep 0.5
    done
    wait "$pid" || rc=$?
    wait "$stamper" || true
    rm -f "$fifo"
    cut -f2- "$W/memory.log"
    if [ "$rc" != 0 ]; then
        echo "* memory: the 300-frame render FAILED (exit $rc)"
        return 1
    fi
    $PY - "$W/memory.samples" "$W/memory.log" <<'PY'
import re, sys
FINAL = re.compile(r"sdmorph: (\d+) frames \((\d+) rendered\) at (\d+)x(\d+) in ([0-9.]+) s "
                   r"\(\+([0-9.]+) s loading[^)]*\), ([0-9.]+) s per rendered frame, batch (\d+)")
rows = []
for line in open(sys.argv[1]):
    t, rss, gpu = line.split()
    rows.append((float(t), float(rss) / 1024 if rss != "NA" else None, float(gpu) if gpu != "NA" else None))
final = None
for line in open(sys.argv[2], errors="replace"):
    stamp, _, text = line.rstrip("\n").partition("\t")
    m = FINAL.search(text)
    if m:
        final = (float(stamp), m)
if not final:
    print("* memory: no final 'sdmorph: N frames' line")
    sys.exit(1)
end, m = final
loop = float(m[7]) * int(m[2]) or float(m[5])
start = end - loop
print(f"* memory: {m[1]} frames ({m[2]} rendered), batch {m[8]}, 10 steps: loop {loop:.1f} s "
      f"(+{m[6]} s loading), {m[7]} s per rendered frame")
inside = [r for r in rows if start <= r[0] <= end - 0.3]    # the line comes after the frees
if len(inside) < 5:
    print(f"* memory: only {len(inside)} samples inside the render loop")
    sys.exit(1)

def median(vals):
    vals = sorted(v for v in vals if v is not None)
    return vals[len(vals) // 2] if vals else None

# one sample can catch a batch in flight: the median of those in a tenth of the loop
def part(col, lo, hi):
    near = [r for r in inside if start + lo * loop <= r[0] <= start + hi * loop]
    return median(r[col] for r in near or [min(inside, key=lambda r: abs(r[0] - start - lo * loop))])

ok = True
for col, what in ((1, "host RSS"), (2, "GPU memory.used")):
    vals = [r[col] for r in rows if r[col] is not None]
    a, b, c = part(col, 0.05, 0.15), part(col, 0.45, 0.55), part(col, 0.90, 1.0)
    if not vals or None in (a, b, c):
        print(f"* memory: {what}: samples missing")
        ok = False
        continue
    grow = c - a
    print(f"* memory: {what} MiB at 10% {a:.0f}, 50% {b:.0f}, end {c:.0f}, max {max(vals):.0f} (whole run); "
          f"10%->end {grow:+.0f} MiB ({100 * grow / a:+.1f}%), 50%->end {c - b:+.0f} MiB")
    if col == 1 and grow > 0.10 * a:
        print("* memory: host RSS GREW more than 10% from 10% of the loop to its end")
        ok = False
print(f"* memory: {'flat' if ok else 'NOT flat'} ({len(rows)} samples, {len(inside)} inside the loop)")
sys.exit(0 if ok else 1)
PY
}

# How far apart are diffusers' own float16 and float32 images on these random
# weights, with its own noise (a float16 draw for float16) and with ours (a
# float32 draw, cast)? Tells whether a float16 gap is ours, the model's or the noise's.
fp16_spread() {
    local n
    for n in float32 float16; do
        if [ ! -f "$W/parity-$n-ddim.npy" ] || [ ! -f "$W/parity-$n-ddim.rgb" ]; then
            parity_one "$n" ddim false 1 0 || return 1
        fi
        parity_reference "$n" ddim "$W/parity-$n-ddim-dnoise.npy" --diffusers-noise || return 1
    done
    $PY - "$W" <<'PY'
import sys, numpy as np
w = sys.argv[1]
npy = lambda n: np.load(f"{w}/{n}.npy").astype(int)
rgb = lambda n: np.fromfile(f"{w}/{n}.rgb", dtype=np.uint8).reshape(512, 512, 3).astype(int)
ref32, ref16, own32, own16 = (npy("parity-float32-ddim"), npy("parity-float16-ddim"),
                              npy("parity-float32-ddim-dnoise"), npy("parity-float16-ddim-dnoise"))
ours16, ours32 = rgb("parity-float16-ddim"), rgb("parity-float32-ddim")
for name, a, b in [("diffusers fp32, its own noise vs our noise", own32, ref32),
                   ("diffusers fp16 (its own fp16 noise) vs diffusers fp32", own16, ref32),
                   ("diffusers fp16 (fp32-drawn noise) vs diffusers fp32", ref16, ref32),
                   ("ours fp16 vs diffusers fp16 (same noise)", ours16, ref16),
                   ("ours fp16 vs diffusers fp32", ours16, ref32),
                   ("ours fp32 vs diffusers fp32", ours32, ref32)]:
    d = np.abs(a - b)
    print(f"* {name}: mean {d.mean():.3f}/255, max {d.max()}, within 4/255: {100 * (d <= 4).mean():.2f}%")
PY
}

# Issue 19's must-shows, float32 on the random SD 1.5 weights: ours (one
# 512x512 frame, DDIM, 20 steps, seed 1234) against diffusers on the same
# noise (bench/models_parity.py reference), >= 99.9% of values within 1/255.
mp_render() {   # name model prompt [extra recipe lines]
    frame_recipe "$1" ddim false "$3" "${4:-}"
    rm -f "$W/$1.rgb"
    "$SDMORPH" render "$W/$1.yaml" --model "$2" --device cuda -o "$W/$1.rgb" -q
}

mp_reference() {   # name prompt [models_parity.py flags...]
    local name=$1 prompt=$2
    shift 2
    rm -f "$W/$name.npy"
    $PY bench/models_parity.py reference --weights "$W/sd15-diffusers" --out "$W/$name.npy" --prompt "$prompt" \
        --negative "blurry, low quality" --seed 1234 --steps 20 "$@"
}

# SDM_MP_PARTS: which of its checks run (default all: clipskip ti lora-kohya lora-diffusers single)
mp_export() {   # out export_sd.py flags...: a float32 bundle; its lines, or its log's end where it fails
    local out=$1
    shift
    $PY pipeline/export/export_sd.py "$@" --out "$out" --dtype float32 > "$out.log" 2>&1 ||
        { tail -n 25 "$out.log"; echo "* export to $out FAILED"; return 1; }
    grep -E '^export_sd' "$out.log"
}

models_parity() {
    local rc=0 d="$W/sd15-diffusers" p="a rainy city street at night, neon signs, cinematic" s
    local parts=" ${SDM_MP_PARTS:-clipskip ti lora-kohya lora-diffusers single} "
    local conv=${SDM_DIFFUSERS_SCRIPTS:-.deps/py}/convert_diffusers_to_original_stable_diffusion.py
    [ -f "$W/sd15-fp32/model.yaml" ] && [ -d "$d" ] || { echo "models_parity: run setup first"; return 1; }
    grep -q '^  layers:' "$W/sd15-fp32/model.yaml" ||
        { echo "models_parity: $W/sd15-fp32 is from an older export_sd.py; remove it and run setup"; return 1; }

    # clip skip 2 (A1111's) = diffusers' clip_skip=1
    if [[ $parts == *" clipskip "* ]]; then
        mp_render mp-clipskip "$W/sd15-fp32" "$p" "clip_skip: 2" && mp_reference mp-clipskip "$p" --clip-skip 2 &&
            compare_images "$W/mp-clipskip.rgb" "$W/mp-clipskip.npy" 1 0.999 "clip skip 2 vs diffusers clip_skip=1" ||
            rc=1
    fi

    # a 2-vector textual-inversion embedding, used by its file name
    mkdir -p "$W/mp-embeddings"
    if [[ $parts == *" ti "* ]]; then
        $PY bench/models_parity.py make-embedding --weights "$d" --out "$W/mp-embeddings/grimtoken.safetensors" \
            --vectors 2 --seed 7 &&
            mp_render mp-ti "$W/sd15-fp32" "a castle in grimtoken style, fog" \
                "embeddings: $(realpath "$W/mp-embeddings")" &&
            mp_reference mp-ti "a castle in grimtoken style, fog" --embedding "$W/mp-embeddings/grimtoken.safetensors" \
                --token grimtoken &&
            compare_images "$W/mp-ti.rgb" "$W/mp-ti.npy" 1 0.999 "textual inversion vs load_textual_inversion" || rc=1
    fi

    # a random LoRA in each layout, fused at export at scale 0.8
    for s in kohya diffusers; do
        [[ $parts == *" lora-$s "* ]] || continue
        $PY bench/models_parity.py make-lora --weights "$d" --layout "$s" --out "$W/mp-lora-$s.safetensors" --seed 11 &&
            mp_export "$W/sd15-fp32-lora-$s" --checkpoint "$d" --lora "$W/mp-lora-$s.safetensors:0.8" &&
            mp_render "mp-lora-$s" "$W/sd15-fp32-lora-$s" "$p" || { rc=1; continue; }
        mp_reference "mp-lora-$s" "$p" --lora "$W/mp-lora-$s.safetensors" --lora-scale 0.8 || {
            [ $? = 3 ] || rc=1
            continue
        }
        compare_images "$W/mp-lora-$s.rgb" "$W/mp-lora-$s.npy" 1 0.999 \
            "LoRA ($s) vs load_lora_weights+fuse_lora" || rc=1
    done

    # the same weights as one original-layout file, exported: the folder's frames
    if [[ $parts != *" single "* ]]; then
        :
    elif [ -f "$conv" ]; then
        rm -f "$W/sd15-single.safetensors"
        $PY "$conv" --model_path "$d" --checkpoint_path "$W/sd15-single.safetensors" --use_safetensors &&
            mp_export "$W/sd15-single-fp32" --checkpoint "$W/sd15-single.safetensors" \
                --tokenizer "${SDM_CLIP:-../shared/clip}" &&
            mp_render mp-single "$W/sd15-single-fp32" "$p" && mp_render mp-folder "$W/sd15-fp32" "$p" &&
            $PY - "$W/mp-single.rgb" "$W/mp-folder.rgb" <<'PY' || rc=1
import sys, numpy as np
a = np.fromfile(sys.argv[1], dtype=np.uint8).astype(int)
b = np.fromfile(sys.argv[2], dtype=np.uint8).astype(int)
d = np.abs(a - b)
print(f"* single-file vs folder export: max {d.max()}/255, {100 * (d <= 1).mean():.3f}% within 1/255")
sys.exit(0 if a.size == b.size and d.max() <= 1 else 1)
PY
    else
        echo "* single-file vs folder: SKIPPED ($conv missing: copy it there from the diffusers snapshot's scripts/)"
    fi
    return $rc
}

# Runs each step as its own process (a failure does not stop the next one),
# within the budget, and writes the summary. Exit 0: all passed; 1: one
# failed or ran out of time; 2: none failed, but the budget skipped some.
all() {
    local steps=${SDM_GPU_STEPS:-$STEPS_DEFAULT} budget=${SDM_GPU_BUDGET:-570} s lim rc t tpid tailer failed=0 skipped=0
    for s in $steps; do
        case " $STEPS_ALL " in
        *" $s "*) ;;
        *)
            echo "all: unknown step '$s' in SDM_GPU_STEPS (steps: $STEPS_ALL)" >&2
            return 2
            ;;
        esac
    done
    case " $steps " in
    *" setup "*) ;;
    *" sdxl"*) ;;  # the SDXL steps build and export what they need
    *) [ -x "$SDMORPH" ] && [ -f "$W/sd15-fp16/model.yaml" ] && [ -f "$W/sd15-fp32/model.yaml" ] ||
        steps="setup $steps" ;;
    esac
    trap '[ -n "${tpid:-}" ] && kill -TERM -- -"$tpid" 2> /dev/null; exit 130' INT TERM
    for s in $steps; do
        rm -f "$OUT/$s.log" "$OUT/$s.status"
        lim=0
        if [ "$budget" -gt 0 ]; then
            lim=$((budget - SECONDS))
            if [ "$lim" -lt 30 ]; then
                echo "skipped: the ${budget} s budget is spent" > "$OUT/$s.status"
                skipped=1
                continue
            fi
        fi
        echo "=== $s ($(date +%T)$([ "$lim" -gt 0 ] && echo ", at most $lim s"))"
        t=$SECONDS
        rc=0
        : > "$OUT/$s.log"
        # timeout leads a process group of its own: whatever the step leaves
        # behind (a render stopping gracefully after SIGTERM) goes with it
        timeout -k 10 "$lim" bash bench/gpu.sh "$s" < /dev/null > "$OUT/$s.log" 2>&1 &
        tpid=$!
        tail -n +1 -f --pid="$tpid" "$OUT/$s.log" &
        tailer=$!
        wait "$tpid" || rc=$?
        kill -KILL -- -"$tpid" 2> /dev/null || true
        wait "$tailer" || true
        tpid=
        case $rc in
        0) echo "ok, $((SECONDS - t)) s" > "$OUT/$s.status" ;;
        124 | 137) echo "TIMED OUT after $((SECONDS - t)) s" > "$OUT/$s.status" ;;
        *) echo "FAILED (exit $rc), $((SECONDS - t)) s" > "$OUT/$s.status" ;;
        esac
        [ "$rc" = 0 ] || failed=1
    done
    trap - INT TERM
    summary "$steps" | tee "$OUT/summary.txt"
    # a place that takes back few files (SDM_GPU_PACK=1): the logs in one archive
    if [ "${SDM_GPU_PACK:-0}" = 1 ]; then
        (cd "$OUT" && for s in $steps; do [ -f "$s.log" ] && echo "$s.log"; [ -f "$s.status" ] && echo "$s.status"; done |
            tar czf "steps-$(date +%H%M%S).tgz" -T - && for s in $steps; do rm -f "$s.log" "$s.status"; done)
    fi
    [ "$failed" = 0 ] || return 1
    [ "$skipped" = 0 ] || return 2
}

# Runs a command in a session of its own, its output to LOG: `all` kills
# what a step leaves in its process group, so return only once it leads one.
in_own_session() {   # log command...
    local log=$1 pid i
    shift
    setsid "$@" > "$log" 2>&1 < /dev/null &
    pid=$!
    for i in $(seq 1 100); do
        [ "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid" ] && break
        sleep 0.1
    done
}

# The AOTInductor UNet takes minutes to compile on the CPU: aoti_start
# exports $W/sd15-fp16-aoti (the same weights, plus unet.pt2) in a session
# of its own, so it outlives its step and runs beside the GPU checks;
# aoti_use waits for it and puts it in place of $W/sd15-fp16.
aoti_start() {
    if has_aoti; then
        echo "* aoti: $W/sd15-fp16 already lists unet_aoti"
        return 0
    fi
    rm -rf "$W/sd15-fp16-aoti"
    in_own_session "$W/aoti.log" $PY pipeline/export/export_sd.py --checkpoint "$W/sd15-diffusers" \
        --out "$W/sd15-fp16-aoti" --dtype float16 --aoti ${SDM_AOTI_ARGS:-}
    echo "* aoti: export started in the background (log $W/aoti.log)"
}

aoti_use() {
    local waited=0
    if has_aoti; then
        echo "* aoti: $W/sd15-fp16 already lists unet_aoti"
        return 0
    fi
    while pgrep -f "export_sd.py.*--out $W/sd15-fp16-aoti" > /dev/null; do
        sleep 5
        waited=$((waited + 5))
    done
    grep -v Warning "$W/aoti.log" 2> /dev/null | grep export_sd | tail -n 12 || true
    if ! grep -Eq '^[[:space:]]*unet_aoti:' "$W/sd15-fp16-aoti/model.yaml" 2> /dev/null; then
        echo "* aoti: FAILED, no unet_aoti in $W/sd15-fp16-aoti/model.yaml (log $W/aoti.log)"
        return 1
    fi
    rm -rf "$W/sd15-fp16-ts"
    mv "$W/sd15-fp16" "$W/sd15-fp16-ts"
    mv "$W/sd15-fp16-aoti" "$W/sd15-fp16"
    echo "* aoti: $W/sd15-fp16 now has unet.pt2 (waited $waited s; TorchScript-only bundle kept in $W/sd15-fp16-ts)"
}

# A bundle exported before model.yaml recorded the scheduler (and its
# diffusers copy, saved as DDIM): both told SD 1.5's own, PNDM with
# skip_prk_steps, so `auto` means the same on both sides.
scheduler_fix() {
    local yaml="$W/sd15-fp32/model.yaml" json="$W/sd15-diffusers/scheduler/scheduler_config.json"
    grep -q '^  scheduler:' "$yaml" && grep -q PNDMScheduler "$json" && return 0
    $PY - "$yaml" "$json" <<'PY'
import json, sys
yaml, path = sys.argv[1], sys.argv[2]
lines = open(yaml).read().splitlines(True)
if not any(l.startswith("  scheduler:") for l in lines):
    at = next(i for i, l in enumerate(lines) if l.startswith("schedule:")) + 1
    lines[at:at] = ["  scheduler: PNDMScheduler\n", "  skip_prk_steps: true\n"]
    open(yaml, "w").write("".join(lines))
cfg = json.load(open(path))
cfg.update(_class_name="PNDMScheduler", skip_prk_steps=True)
json.dump(cfg, open(path, "w"), indent=1)
PY
    echo "* sampler_parity: $yaml and $json told the checkpoint's scheduler (PNDMScheduler, skip_prk_steps)"
}

# The runs of sampler_parity: sampler[-karras][-etaE] (sd15_reference.py's names).
SAMPLER_RUNS="auto ddim ddim-eta1 euler euler-karras euler_a dpmpp_2m dpmpp_2m-karras dpmpp_2m_sde \
dpmpp_2m_sde-karras pndm lms lms-karras heun unipc lcm"

# Every run, float32: `sdmorph render` against diffusers' plain call with its
# own generator (no latents=), one pipeline for all: same prompt, negative,
# seed, steps, guidance.
sampler_runs() {
    local rc=0 run sampler karras eta
    for run in $SAMPLER_RUNS; do
        sampler=${run%%-*} karras=false eta=0
        case "$run" in *-karras*) karras=true ;; esac
        case "$run" in *-eta*) eta=${run##*-eta} ;; esac
        rm -f "$W/sampler-$run.npy"
        PARITY_ETA=$eta parity_render float32 "$sampler" "$karras" "sampler-$run" || rc=1
    done
    $PY bench/sd15_reference.py plain --weights "$W/sd15-diffusers" --out-dir "$W" --steps 20 --seed 1234 \
        --runs "$(echo $SAMPLER_RUNS | tr ' ' ',')" || return 1
    for run in $SAMPLER_RUNS; do
        [ -f "$W/sampler-$run.rgb" ] && [ -f "$W/sampler-$run.npy" ] || { echo "* sampler-$run: missing"; rc=1; continue; }
        compare_images "$W/sampler-$run.rgb" "$W/sampler-$run.npy" 1 0.999 "sampler-$run vs diffusers' plain call" ||
            rc=1
    done
    return $rc
}

# A 16-frame euler_a seed morph (seeds 1234 -> 99, one prompt): the largest
# change between adjacent frames against the median one.
seed_morph_steadiness() {
    cat > "$W/seedmorph.yaml" <<YAML
width: 512
height: 512
steps: 20
guidance: 7.5
sampler: euler_a
frames: 15
interp: slerp
negative: "blurry, low quality"
keyframes:
  - {prompt: "a rainy city street at night, neon signs, cinematic", seed: 1234}
  - {prompt: "a rainy city street at night, neon signs, cinematic", seed: 99}
YAML
    rm -f "$W/seedmorph.rgb"
    "$SDMORPH" render "$W/seedmorph.yaml" --model "$W/sd15-fp32" --device cuda -o "$W/seedmorph.rgb" -q || return 1
    $PY - "$W/seedmorph.rgb" <<'PY'
import sys, numpy as np
f = np.fromfile(sys.argv[1], dtype=np.uint8).reshape(-1, 512 * 512 * 3).astype(np.float64)
d = np.abs(np.diff(f, axis=0)).mean(axis=1)
med, big = np.median(d), d.max()
print(f"* euler_a seed morph, {len(f)} frames: adjacent-frame change largest {big:.2f}/255 "
      f"(frames {d.argmax()}-{d.argmax() + 1}), median {med:.2f}/255, ratio {big / med:.2f} (need <= 2)")
sys.exit(0 if big <= 2 * med else 1)
PY
}

sampler_parity() {
    local rc=0
    [ -f "$W/sd15-fp32/model.yaml" ] || { echo "* sampler_parity: no $W/sd15-fp32 (run setup)"; return 1; }
    scheduler_fix || return 1
    sampler_runs || rc=1
    seed_morph_steadiness || rc=1
    return $rc
}

retime_recipe() {   # steps retime
    cat <<EOF
width: 512
height: 512
steps: $1
sampler: ddim
seed: 42
guidance: 7.5
retime: $2
keyframes:
  - prompt: a rainy city street at night, neon signs
    frames: 24
  - prompt: a dense forest in the rain, moss, fog
EOF
}

retime() {
    local mode
    for mode in none even; do
        retime_recipe 30 "$mode" > "$W/retime-$mode.yaml"
        rm -f "$W/retime-$mode.json"    # no kept curve: the probe runs
        "$SDMORPH" render "$W/retime-$mode.yaml" --model "$W/sd15-fp16" --device cuda \
            -o "$W/retime-$mode.mp4" -o "$W/retime-$mode.rgb" > "$W/retime-$mode.log" 2>&1
        grep -E "frames \(|retime probe|transition 0->1" "$W/retime-$mode.log" || true
    done
    echo "* retime: $(grep -h 'retime probe' "$W/retime-even.log" | sed 's/^sdmorph: //')"
    for mode in none even; do
        echo "* retime $mode, 24 frames, 512x512, 30 steps: $(grep -h 'transition 0->1' "$W/retime-$mode.log" | sed 's/  */ /g')"
    done
    # do the probe's steps (its log says how many of the 30) predict the full render's pace along the transition?
    local ps
    ps=$(sed -n 's/.*retime probe: [0-9]* frames at \([0-9]*\) steps.*/\1/p' "$W/retime-even.log" | head -n 1)
    ps=${ps:-8}
    retime_recipe "$ps" none > "$W/retime-probe-steps.yaml"
    "$SDMORPH" render "$W/retime-probe-steps.yaml" --model "$W/sd15-fp16" --device cuda -o "$W/retime-$ps.rgb" -q
    "$SDMORPH" measure --raw 512x512 --each "$W/retime-none.rgb" > "$W/retime-each-30.txt"
    "$SDMORPH" measure --raw 512x512 --each "$W/retime-$ps.rgb" > "$W/retime-each-$ps.txt"
    $PY - "$W/retime-each-30.txt" "$W/retime-each-$ps.txt" "$ps" <<'PY'
import re, sys, numpy as np
def pairs(p):
    return np.array([float(l.split()[1]) for l in open(p) if re.match(r"^  [0-9]+-[0-9]+ ", l)])
a, b = pairs(sys.argv[1]), pairs(sys.argv[2])
ca, cb = np.cumsum(a) / a.sum(), np.cumsum(b) / b.sum()
print(f"* retime: pace at {sys.argv[3]} vs 30 steps over {a.size} pairs: Pearson r {np.corrcoef(a, b)[0, 1]:.3f}, "
      f"largest cumulative-distance gap {np.abs(ca - cb).max():.3f} (0: the same frame placement)")
PY
}

# ---- SDXL: random weights of the SDXL 1.0 shapes (../shared/reference/sdxl) --------------
SDXL_SIZE=${SDM_SDXL_SIZE:-1024}
SDXL_CFG=${SDM_SDXL:-../shared/reference/sdxl}
SDXL_PROMPT_A="a rainy city street at night, neon signs, cinematic"
SDXL_PROMPT_B="a dense forest in the rain, moss, cinematic"

sdxl_model() { echo "$W/sdxl-$1-$SDXL_SIZE"; }   # float32 | float16 | float16-fp8

sdxl_export() {   # dtype
    local out
    out=$(sdxl_model "$1")
    if [ -f "$out/model.yaml" ]; then
        echo "sdxl: $out already exported"
        return 0
    fi
    local -a aoti=()
    local dtype=${1%-fp8}
    # SDM_SDXL_AOTI=1: the float16 bundle also gets unet.pt2 and vae_decoder.pt2 for
    # SDM_SDXL_AOTI_FRAMES (8) frames per call (minutes of compile: not in the default budget);
    # float16-fp8 is that bundle with FP8 products in the UNet package (--aoti-fp8 static)
    [ "$1" = float16 ] && [ "${SDM_SDXL_AOTI:-0}" = 1 ] && aoti=(--aoti --aoti-frames "${SDM_SDXL_AOTI_FRAMES:-8}")
    [ "$1" = float16-fp8 ] && aoti=(--aoti --aoti-frames "${SDM_SDXL_AOTI_FRAMES:-8}" --aoti-fp8 static)
    # each line stamped with the time it came: where the export's minutes go
    { echo "export_sd.py started"; $PY pipeline/export/export_sd.py --random-weights "$SDXL_CFG" \
        --tokenizer "${SDM_CLIP:-../shared/clip}" --out "$out" --dtype "$dtype" --device cuda --image-size "$SDXL_SIZE" \
        "${aoti[@]}"; } 2>&1 | stamp > "$W/sdxl-export-$1.log"
}

# Both bundles, exported side by side (SDM_SDXL_PARALLEL=0: one after the other).
sdxl_setup() {
    # SDM_SDXL_DTYPES=float16: the speed bench's bundle alone; "float16 float16-fp8": and its FP8 twin
    local t=$SECONDS rc=0 p dt pb built=1 dtypes=${SDM_SDXL_DTYPES:-float32 float16}
    # the build beside the exports (they need no sdmorph)
    if ! { [ -x "$SDMORPH" ] && [ "${SDM_SDXL_BUILD:-1}" = 0 ]; }; then
        build_sdmorph > "$W/sdxl-build.log" 2>&1 &
        pb=$!
    fi
    local -a pids=()
    for dt in $dtypes; do
        if [ "${SDM_SDXL_PARALLEL:-1}" = 1 ]; then
            sdxl_export "$dt" &
            pids+=($!)
        else
            sdxl_export "$dt" || rc=1
        fi
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    if [ -n "${pb:-}" ]; then
        wait "$pb" || built=0
        cat "$W/sdxl-build.log"
    fi
    for dt in $dtypes; do
        [ -f "$W/sdxl-export-$dt.log" ] && tail -n 4 "$W/sdxl-export-$dt.log"
    done
    [ "$built" = 1 ] || return 1
    if [ "$rc" != 0 ]; then
        echo "* sdxl bundles: export FAILED (logs $W/sdxl-export-*.log)"
        return 1
    fi
    echo "* sdxl bundles:$(for dt in $dtypes; do printf ' %s' "$(sdxl_model "$dt")"; done)" \
        "(${SDXL_SIZE}x$SDXL_SIZE; VAE decoder" \
        "$(grep -o '^vae_dtype: .*' "$(sdxl_model float16)/model.yaml" || echo 'in the bundle dtype')), $((SECONDS - t)) s"
}

# The two exports in a session of their own (as aoti_start does), so they
# run on beside the SD 1.5 steps and the next call's sdxl_parity waits for
# them; the build is setup's.
sdxl_start() {
    SDM_SDXL_BUILD=0 in_own_session "$W/sdxl-start.log" bash bench/gpu.sh sdxl_setup
    echo "* sdxl: both exports started in the background (logs $W/sdxl-export-*.log)"
}

# Waits for sdxl_start's exports of SDM_SDXL_DTYPES, if any run.
sdxl_wait() {
    local waited=0 dt
    for dt in ${SDM_SDXL_DTYPES:-float32 float16}; do
        while pgrep -f -- "export_sd.py.*--out $(sdxl_model "$dt") " > /dev/null; do
            sleep 5
            waited=$((waited + 5))
        done
    done
    [ "$waited" = 0 ] || echo "sdxl: waited $waited s for the exports"
    SDM_SDXL_BUILD=0 sdxl_setup
}

# One guided UNet call at the bench's largest batch, part by part, beside
# the float16 bundle's TorchScript UNet (bench/sdxl_profile.py).
sdxl_profile() {
    local skip=(--skip vae) s b
    for s in ${SDM_SDXL_PROFILE_SKIP:-}; do skip+=(--skip "$s"); done
    b=$(echo ${SDM_SDXL_BATCHES:-4 8} | tr ' ' '\n' | sort -n | tail -n 1)
    [ -f "$(sdxl_model float16)/unet.pt" ] || { echo "sdxl_profile: no float16 bundle (run sdxl_start, sdxl_wait)"; return 1; }
    $PY bench/sdxl_profile.py --config "$SDXL_CFG" --batch "$b" --size "$SDXL_SIZE" "${skip[@]}" \
        --bundle "$(sdxl_model float16)" 2>&1 | tee "$W/sdxl-profile.log" | grep '^\*' || return 1
}

# The float16 bundle's TorchScript VAE decoder a frame per call, beside
# eager, as it is and with TorchScript's fuser or optimizations off
# (sdxl_profile.py --ts-vae): what makes its 400 ms a frame.
sdxl_vae_profile() {
    [ -f "$(sdxl_model float16)/vae_decoder.pt" ] || { echo "sdxl_vae_profile: no float16 bundle (run sdxl_start, sdxl_wait)"; return 1; }
    $PY bench/sdxl_profile.py --config "$SDXL_CFG" --size "$SDXL_SIZE" --bundle "$(sdxl_model float16)" --ts-vae 2>&1 |
        tee "$W/sdxl-vae-profile.log" | grep '^\*' || return 1
}

# The parity recipe: keyframe A, the midpoint (t = 0.5, lerp), keyframe B.
sdxl_parity_recipe() {
    cat > "$W/sdxl-parity.yaml" <<YAML
width: $SDXL_SIZE
height: $SDXL_SIZE
steps: ${SDM_SDXL_PARITY_STEPS:-20}
guidance: 7.5
seed: 1234
sampler: ddim
interp: lerp
negative: "blurry, low quality"
frames: 2
keyframes:
  - "$SDXL_PROMPT_A"
  - "$SDXL_PROMPT_B"
YAML
}

sdxl_parity() {
    local rc=0 dt tol frac p32 p16
    sdxl_parity_recipe
    # the two renders and diffusers' reference side by side: each spends
    # most of its time loading (minutes at SDXL's size, one after the other),
    # and the GPU holds all three
    for dt in float32 float16; do
        rm -f "$W/sdxl-parity-$dt.rgb"
        "$SDMORPH" render "$W/sdxl-parity.yaml" --model "$(sdxl_model $dt)" --device cuda --batch 1 --frames 0-1 \
            -o "$W/sdxl-parity-$dt.rgb" -q > "$W/sdxl-parity-$dt.log" 2>&1 &
        [ $dt = float32 ] && p32=$! || p16=$!
    done
    $PY bench/sdxl_reference.py parity --config "$SDXL_CFG" --tokenizer "${SDM_CLIP:-../shared/clip}" \
        --out-dir "$W" --size "$SDXL_SIZE" --steps "${SDM_SDXL_PARITY_STEPS:-20}" || { echo "* sdxl reference FAILED"; rc=1; }
    for dt in float32 float16; do
        if [ $dt = float32 ]; then wait "$p32"; else wait "$p16"; fi || { echo "* sdxl parity $dt: sdmorph FAILED"; rc=1; }
        cat "$W/sdxl-parity-$dt.log"
    done
    [ $rc = 0 ] || return 1
    for dt in float32 float16; do
        [ "$dt" = float32 ] && tol=1 frac=0.999 || tol=4 frac=0.99
        compare_images "$W/sdxl-parity-$dt.rgb" "$W/ref-$dt-key.npy" $tol $frac \
            "sdxl $dt ${SDXL_SIZE}x$SDXL_SIZE keyframe vs StableDiffusionXLPipeline" "$SDXL_SIZE" 0 || rc=1
        compare_images "$W/sdxl-parity-$dt.rgb" "$W/ref-$dt-mid.npy" $tol $frac \
            "sdxl $dt ${SDXL_SIZE}x$SDXL_SIZE morph midpoint (embedding and pooled lerped, t=0.5)" "$SDXL_SIZE" 1 || rc=1
    done
    return $rc
}

# Issue 19's LoRA item for SDXL: a random LoRA in kohya's format over the
# layers kohya's trainer gives an SDXL LoRA (every linear layer of the UNet's
# transformers, named as in the original UNet, input_blocks/middle_block/
# output_blocks, and both text encoders' attention and MLP; bench/models_parity.py
# make-lora --config), fused by export_sd.py at scale 0.8 into a float32 bundle
# of the same random weights as sdxl_setup's, against diffusers'
# load_lora_weights + fuse_lora(lora_scale=0.8) on StableDiffusionXLPipeline
# (bench/sdxl_reference.py parity --lora; without peft, diffusers'
# lora_state_dict conversion fused as PEFT fuses, and a line says so):
# keyframe A of the sdxl_parity recipe, >= 99.9% of values within 1/255, and
# the LoRA must move the frame (from diffusers' without it, made first in the
# same call: --plain-too).
# SDM_SDXL_LORA_LAYOUTS: "kohya-sgm" (default), "kohya" (diffusers' block
# names), "diffusers" (PEFT's layout); each bundle (about 14 GB) is removed
# once rendered, unless SDM_SDXL_LORA_KEEP=1.
sdxl_lora_parity() {
    local rc=0 s name out ref steps=${SDM_SDXL_PARITY_STEPS:-20}
    [ -x "$SDMORPH" ] || build_sdmorph || return 1
    sdxl_parity_recipe
    for s in ${SDM_SDXL_LORA_LAYOUTS:-kohya-sgm}; do
        name="sdxl-lora-$s" out="$(sdxl_model float32)-lora-$s" ref="$W/ref-lora-$s-float32-key.npy"
        rm -rf "$out"
        rm -f "$W/$name.rgb" "$ref" "$W/ref-lora-$s-plain-float32-key.npy"
        $PY bench/models_parity.py make-lora --config "$SDXL_CFG" --layout "$s" --out "$W/$name.safetensors" \
            --seed 11 || { echo "* sdxl LoRA ($s): make-lora FAILED"; rc=1; continue; }
        if ! $PY pipeline/export/export_sd.py --random-weights "$SDXL_CFG" --tokenizer "${SDM_CLIP:-../shared/clip}" \
            --lora "$W/$name.safetensors:0.8" --out "$out" --dtype float32 --device cuda --image-size "$SDXL_SIZE" \
            > "$W/$name-export.log" 2>&1; then
            tail -n 20 "$W/$name-export.log"
            echo "* sdxl LoRA ($s): export FAILED (log $W/$name-export.log)"
            rc=1
            continue
        fi
        grep -E '^export_sd: LoRA' "$W/$name-export.log" || true
        "$SDMORPH" render "$W/sdxl-parity.yaml" --model "$out" --device cuda --batch 1 --frames 0 \
            -o "$W/$name.rgb" -q || { echo "* sdxl LoRA ($s): sdmorph FAILED"; rc=1; }
        [ "${SDM_SDXL_LORA_KEEP:-0}" = 1 ] || rm -rf "$out"
        [ -f "$W/$name.rgb" ] || continue
        $PY bench/sdxl_reference.py parity --config "$SDXL_CFG" --tokenizer "${SDM_CLIP:-../shared/clip}" \
            --out-dir "$W" --size "$SDXL_SIZE" --steps "$steps" --dtypes float32 --labels key \
            --prefix "ref-lora-$s" --lora "$W/$name.safetensors" --lora-scale 0.8 --plain-too ||
            { echo "* sdxl LoRA ($s): diffusers reference FAILED"; rc=1; continue; }
        compare_images "$W/$name.rgb" "$ref" 1 0.999 \
            "sdxl LoRA ($s) fused at export vs diffusers' (the line above), fp32 ${SDXL_SIZE}x$SDXL_SIZE keyframe" \
            "$SDXL_SIZE" 0 || rc=1
        # a LoRA that changed nothing would pass the above: it must move the frame
        $PY - "$W/$name.rgb" "$W/ref-lora-$s-plain-float32-key.npy" "$SDXL_SIZE" "$s" <<'PY' || rc=1
import sys, numpy as np
n = int(sys.argv[3])
ours = np.fromfile(sys.argv[1], dtype=np.uint8)[:n * n * 3].astype(int)
plain = np.load(sys.argv[2]).astype(int).reshape(-1)
d = np.abs(ours - plain)
moved = (d > 1).mean()
print(f"* sdxl LoRA ({sys.argv[4]}) moves the keyframe from the plain model's (diffusers, no LoRA): mean "
      f"{d.mean():.2f}/255, {100 * moved:.1f}% of values by more than 1/255 (need 1%)")
sys.exit(0 if moved >= 0.01 else 1)
PY
    done
    return $rc
}

sdxl_bench() {
    local b name runs="" frames=${SDM_SDXL_FRAMES:-16} steps=${SDM_SDXL_STEPS:-30} batches=${SDM_SDXL_BATCHES:-4 8}
    local cb
    echo "GPU: $(gpu_name)"
    cat > "$W/sdxl-bench.yaml" <<YAML
width: $SDXL_SIZE
height: $SDXL_SIZE
steps: $steps
guidance: 7.5
seed: 1234
sampler: ddim
negative: "blurry, low quality"
frames: $((frames - 1))
keyframes:
  - "$SDXL_PROMPT_A"
  - "$SDXL_PROMPT_B"
YAML
    # diffusers first: it needs no bundle, so sdxl_start's exports (and an
    # AOTInductor compile) go on beside it, and sdmorph's runs wait for them
    cb=0
    [ "${SDM_SDXL_COMPILE:-1}" = 1 ] && cb=$(echo $batches | tr ' ' '\n' | sort -n | tail -n 1)
    # SDM_SDXL_DIFFUSERS=0: sdmorph's runs alone (a call short of time; no ratios then)
    if [ "${SDM_SDXL_DIFFUSERS:-1}" = 1 ]; then
        echo "--- diffusers eager (batches $batches)$([ "$cb" != 0 ] && echo ", then + torch.compile at batch $cb")"
        sampled sdxl-diffusers $PY bench/sdxl_reference.py bench --config "$SDXL_CFG" \
            --tokenizer "${SDM_CLIP:-../shared/clip}" --size "$SDXL_SIZE" --frames "$frames" --steps "$steps" \
            --batches "$(echo $batches | tr ' ' ',')" --compile-batch "$cb" --cache-dir "$INDUCTOR_CACHE" ||
            echo "diffusers: FAILED"
    fi
    # SDM_SDXL_VARIANTS, each a run per batch (default aoti-graphs, sdmorph's
    # defaults): the bench's variants (variant_flags), on the float16 bundle or
    # the one after an @; @fp8 is the float16-fp8 bundle (SDM_SDXL_DTYPES=
    # "float16 float16-fp8"). SDM_SDXL_NO_AOTI=1 adds graphs-timings: TorchScript
    # alone, which splits a gap between the AOTInductor UNet and the rest.
    local variants=${SDM_SDXL_VARIANTS:-aoti-graphs} v bundles=float16 model flags
    [ "${SDM_SDXL_NO_AOTI:-0}" = 1 ] && variants="$variants graphs-timings"
    case " $variants " in *@fp8" "*) bundles="float16 float16-fp8" ;; esac
    SDM_SDXL_DTYPES=$bundles sdxl_wait || return 1
    for v in $bundles; do
        grep -E 'unet_aoti|vae_decoder_aoti|vae_dtype|fp8' "$(sdxl_model "$v")/model.yaml" || true
    done
    for b in $batches; do
        for v in $variants; do
            flags=$(variant_flags "$v") || return 1
            case $v in
            *@fp8) model=$(sdxl_model float16-fp8) ;;
            *@*) model=${v#*@} ;;
            *) model=$(sdxl_model float16) ;;
            esac
            name="sdxl-ours-$v-b$b"
            echo "--- sdmorph $v, batch $b${flags:+, $flags}"
            rm -f "$W/$name.rgb"
            # shellcheck disable=SC2086 # the variant's flags, split
            sampled "$name" "$SDMORPH" render "$W/sdxl-bench.yaml" --model "$model" --device cuda \
                --batch "$b" $flags -o "$W/$name.rgb" -q || echo "sdmorph $name: FAILED"
            runs="$runs $name"
        done
    done
    sdxl_table "$(gpu_name)" "$frames" "$steps" $runs
}

# sdmorph's runs (s/frame from its last line, peak memory.used from
# nvidia-smi) against the reference's lines (s/frame, torch's peak).
sdxl_table() {   # gpu frames steps run...
    $PY - "$W" "$SDXL_SIZE" "$@" <<'PY'
import math, re, sys
w, size, gpu, frames, steps, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
FINAL = re.compile(r"sdmorph: \d+ frames \(\d+ rendered\) at \d+x\d+ in [0-9.]+ s \(\+([0-9.]+) s loading[^)]*\), "
                   r"([0-9.]+) s per rendered frame, batch (\d+)")
REF = re.compile(r"diffusers (eager|compiled) batch (\d+): ([0-9.]+) s/frame, peak ([0-9.]+) GiB"
                 r"(?: \(torch\), reserved ([0-9.]+) GiB)?")
def peak(name):
    mem = []
    try:
        for line in open(f"{w}/{name}.smi", errors="replace"):
            f = [x.strip() for x in line.split(",")]
            if len(f) == 3:
                try:
                    mem.append(float(f[2]))
                except ValueError:
                    pass
    except OSError:
        pass
    return max(mem) / 1024 if mem else float("nan")
ours, ref = [], {}
for n in names:
    try:
        text = open(f"{w}/{n}.log", errors="replace").read()
    except OSError:
        text = ""
    m = FINAL.search(text)
    loop = re.search(r"sdmorph: loop [^\n]*", text)
    dev = re.search(r"sdmorph: device time [^\n]*", text)
    mem = re.search(r"sdmorph: device memory [^\n]*", text)
    loading = re.search(r"sdmorph: loading \(--timings\)[^\n]*", text)
    # which UNet and decoder ran: the AOTInductor package's info line, or a warning why not
    used = [what + (" AOTInductor" if re.search(what + r": [^\n]*\(AOTInductor", text) else " TorchScript")
            for what in ("UNet", "VAE decoder")]
    variant = re.sub(r"^sdxl-ours-|-b\d+$", "", n)
    if m:
        ours.append((int(m[3]), float(m[2]), peak(n), float(m[1]), "" if variant == "aoti-graphs" else f" {variant}",
                     "; ".join([", ".join(used)] + [x[0] for x in (loop, dev, mem, loading) if x])))
    else:
        print(f"* sdxl sdmorph run {n}: FAILED or no timing line (see {w}/{n}.log)")
try:
    for line in open(f"{w}/sdxl-diffusers.log", errors="replace"):
        m = REF.search(line)
        if m:
            ref[(m[1], int(m[2]))] = (float(m[3]), float(m[4]), float(m[5] or "nan"))
except OSError:
    pass
print(f"* GPU: {gpu}")
print(f"* SDXL {frames}-frame {size}x{size} {steps}-step DDIM morph, CFG 7.5, fp16 (VAE decode fp32), random weights")
for b, spf, pk, load, how, loop in ours:
    print(f"* sdmorph batch {b}{how}: {spf:.4f} s/frame, peak {pk:.1f} GiB (nvidia-smi, whole device), "
          f"loading {load:.1f} s; {loop}")
for (kind, b), (spf, pk, rsv) in sorted(ref.items()):
    print(f"* diffusers {kind} batch {b}: {spf:.4f} s/frame, peak {pk:.1f} GiB (torch allocated), {rsv:.1f} GiB "
          f"reserved (torch's cache: compare sdmorph's 'device memory' line, which adds CUDA's context)")
if ref:
    print(f"* diffusers' process, all its runs: peak {peak('sdxl-diffusers'):.1f} GiB (nvidia-smi, whole device)")
if ours:
    best = min(ours, key=lambda r: r[1])
    eager = min((v[0] for (k, _), v in ref.items() if k == "eager"), default=math.nan)
    comp = min((v[0] for (k, _), v in ref.items() if k == "compiled"), default=math.nan)
    print(f"* sdxl: sdmorph best (batch {best[0]}{best[4]}) {best[1]:.4f} s/frame: {eager / best[1]:.2f}x diffusers eager (best "
          f"batch), {comp / best[1]:.2f}x diffusers + torch.compile (target >= 1.3x)")
PY
}

sdxl() {
    sdxl_setup && sdxl_parity
    local rc=$?
    sdxl_bench || rc=1
    return $rc
}

# --- multi_gpu: one host's GPUs in one render (--devices), and shards + join -----------------------

multi_gpu_recipe() {
    cat <<EOF
width: 512
height: 512
steps: ${SDM_MG_STEPS:-25}
sampler: ddim
seed: 42
guidance: 7.5
keyframes:
  - prompt: a rainy city street at night, neon signs
    frames: 63
  - prompt: a dense forest in the rain, moss, fog
EOF
}

# The render loop's seconds and the loading's, from sdmorph's report line in log $1.
mg_seconds() { sed -n 's/.* in \([0-9.]*\) s (+\([0-9.]*\) s loading[^)]*).*/\1 \2/p' "$1" | tail -n 1; }

mg_seconds_since() { echo "$1 ${EPOCHREALTIME/,/.}" | awk '{printf "%.2f", $2 - $1}'; }

mg_run() {   # name sdmorph-flags...: renders to $W/mg-NAME.{mp4,rgb}; prints the wall seconds
    local name=$1 t0=${EPOCHREALTIME/,/.}
    shift
    "$SDMORPH" render "$W/mg.yaml" --model "$W/sd15-fp16" "$@" -o "$W/mg-$name.mp4" -o "$W/mg-$name.rgb" \
        > "$W/mg-$name.log" 2>&1 || { tail -n 20 "$W/mg-$name.log" >&2; return 1; }
    mg_seconds_since "$t0"
}

mg_same() { cmp -s "$W/mg-$1.$3" "$W/mg-$2.$3" && echo "identical" || echo "DIFFER"; }

mg_shards() {   # two shards at once, one per GPU, then the join (no GPU): prints the wall seconds
    local t0=${EPOCHREALTIME/,/.} p1 rc=0
    "$SDMORPH" render "$W/mg.yaml" --model "$W/sd15-fp16" --device cuda:0 --shard 1/2 -o "$W/mg-s1.rgb" -q \
        > "$W/mg-s1.log" 2>&1 &
    p1=$!
    "$SDMORPH" render "$W/mg.yaml" --model "$W/sd15-fp16" --device cuda:1 --shard 2/2 -o "$W/mg-s2.rgb" -q \
        > "$W/mg-s2.log" 2>&1 || rc=1
    wait "$p1" || rc=1
    [ $rc = 0 ] || { tail -n 20 "$W/mg-s1.log" "$W/mg-s2.log" >&2; return 1; }
    "$SDMORPH" join "$W/mg.yaml" "$W/mg-s1.json" "$W/mg-s2.json" -o "$W/mg-join.mp4" -o "$W/mg-join.rgb" \
        > "$W/mg-join.log" 2>&1 || { cat "$W/mg-join.log" >&2; return 1; }
    mg_seconds_since "$t0"
}

multi_gpu() {
    local n one all shards loop1 load1 loopn loadn verdict
    n=$(nvidia-smi -L 2> /dev/null | grep -c '^GPU' || true)
    if [ "${n:-0}" -lt 2 ]; then
        echo "* multi_gpu: needs two GPUs, this host has ${n:-0}"
        return 1
    fi
    [ -f "$W/sd15-fp16/model.yaml" ] || SDM_GPU_FP32=0 setup
    multi_gpu_recipe > "$W/mg.yaml"
    rm -f "$W"/mg-*
    one=$(mg_run one --device cuda:0) || return 1
    all=$(mg_run all --devices all) || return 1
    grep -hE "frames \(|per device|dropped|warning" "$W/mg-one.log" "$W/mg-all.log" || true
    read -r loop1 load1 <<< "$(mg_seconds "$W/mg-one.log")"
    read -r loopn loadn <<< "$(mg_seconds "$W/mg-all.log")"
    echo "* multi_gpu: 64 frames 512x512 ${SDM_MG_STEPS:-25} steps DDIM, $(gpu_name) x$n: one GPU ${loop1} s" \
        "(+${load1} s loading, ${one} s wall); --devices all ${loopn} s (+${loadn} s, ${all} s wall)"
    awk -v a="$loop1" -v b="$loopn" -v c="$one" -v d="$all" \
        'BEGIN { printf "* multi_gpu: speed-up %.2fx (render loop), %.2fx (wall, loading included)\n", a / b, c / d }'
    echo "* multi_gpu: --devices all vs one GPU: frames $(mg_same one all rgb), MP4 $(mg_same one all mp4)"
    grep -h "per device" "$W/mg-all.log" | sed 's/^sdmorph: /* multi_gpu: /' || true
    shards=$(mg_shards) || return 1
    echo "* multi_gpu: shard 1/2 on cuda:0 and 2/2 on cuda:1 at once, then join: ${shards} s wall;" \
        "vs one GPU: frames $(mg_same one join rgb), MP4 $(mg_same one join mp4)"
    verdict="$(mg_same one all rgb)$(mg_same one all mp4)$(mg_same one join rgb)$(mg_same one join mp4)"
    [ "$verdict" = identicalidenticalidenticalidentical ]
}

# Image-to-image against diffusers' own pipeline: the picture's latent drawn
# from the VAE's distribution and then the noise, both from the seed's CPU
# generator, the schedule from the step the strength selects. The fp32
# bundle is exported again where it predates the VAE encoder.
IMG2IMG_RUNS=${SDM_IMG2IMG_RUNS:-auto-s0.5 auto-s0.8 ddim-s0.8 euler_a-s0.5 dpmpp_2m-s0.8 unipc-s0.5 lms-s0.8 heun-s0.5}
img2img_parity() {
    local rc=0 run sampler karras strength pic recipes=()
    [ -f "$W/sd15-fp32/model.yaml" ] || { echo "* img2img_parity: no $W/sd15-fp32 (run setup)"; return 1; }
    grep -q 'vae_encoder:' "$W/sd15-fp32/model.yaml" ||
        $PY pipeline/export/export_sd.py --checkpoint "$W/sd15-diffusers" --out "$W/sd15-fp32" --dtype float32
    $PY recipes/painting.py "$W/img2img-start.png" 512 512
    pic=$(realpath "$W/img2img-start.png")
    for run in $IMG2IMG_RUNS; do
        strength=${run##*-s} sampler=${run%%-*} karras=false
        case "$run" in *-karras*) karras=true ;; esac
        rm -f "$W/img2img-$run.rgb" "$W/img2img-$run.npy"
        frame_recipe "img2img-$run" "$sampler" "$karras" "a rainy city street at night, neon signs, cinematic" \
            "image: \"$pic\"
strength: $strength
output: \"$(realpath "$W")/img2img-$run.rgb\""
        recipes+=("$W/img2img-$run.yaml")
    done
    # one process: the model loads once for every run
    "$SDMORPH" render "${recipes[@]}" --model "$W/sd15-fp32" --device cuda -q || rc=1
    $PY bench/sd15_reference.py img2img --weights "$W/sd15-diffusers" --out-dir "$W" --steps 20 --seed 1234 \
        --image "$pic" --runs "$(echo $IMG2IMG_RUNS | tr ' ' ',')" || return 1
    for run in $IMG2IMG_RUNS; do
        [ -f "$W/img2img-$run.rgb" ] && [ -f "$W/img2img-$run.npy" ] || { echo "* img2img-$run: missing"; rc=1; continue; }
        compare_images "$W/img2img-$run.rgb" "$W/img2img-$run.npy" 1 0.999 \
            "img2img-$run vs diffusers' StableDiffusionImg2ImgPipeline" || rc=1
    done
    return $rc
}

summary() {   # steps
    local s
    echo "=== summary: GPU $(gpu_name), commit $(git rev-parse --short HEAD 2> /dev/null || echo '?'), $(date '+%F %T')"
    for s in $1; do
        [ -f "$OUT/$s.status" ] || continue
        echo "$s: $(cat "$OUT/$s.status")"
        [ -f "$OUT/$s.log" ] && grep '^\* ' "$OUT/$s.log" | sed 's/^\* /  /' || true
    done
}

# Issue 17's FP8 lever: the fp16 bundle again, its UNet package for 8
# frames per call with FP8 products ($SDM_FP8_MODE: static, row or tensor),
# then what it costs: frame 0 of an 8-frame morph at --batch 8 against
# diffusers fp16 (4/255 is the float16 path's bound, not this one's). What
# it gains: SDM_BENCH_VARIANTS="aoti-graphs aoti-graphs@$W/sd15-fp16-fp8" bench.
# The FP8 bundle's export alone (aoti_fp8_start runs it in a session of its own).
aoti_fp8_export() {
    local m="$W/sd15-fp16-fp8" mode=${SDM_FP8_MODE:-static}
    [ -d "$W/sd15-diffusers" ] || { echo "aoti_fp8: run setup first"; return 1; }
    grep -q "^  fp8: $mode\$" "$m/model.yaml" 2> /dev/null && return 0
    rm -rf "$m"
    { $PY pipeline/export/export_sd.py --checkpoint "$W/sd15-diffusers" --out "$m" --dtype float16 --aoti \
        --aoti-frames 8 --aoti-fp8 "$mode" 2>&1 | stamp > "$W/aoti-fp8.log"; } ||
        { cut -f2 "$W/aoti-fp8.log" | tail -n 30; echo "* aoti_fp8: export FAILED"; return 1; }
}

# Its compile (minutes) beside the next steps; aoti_fp8 waits for it.
aoti_fp8_start() {
    in_own_session "$W/aoti-fp8-start.log" bash bench/gpu.sh aoti_fp8_export
    echo "* aoti_fp8: export started in the background (log $W/aoti-fp8.log)"
}

aoti_fp8() {
    local m="$W/sd15-fp16-fp8" mode=${SDM_FP8_MODE:-static}
    while pgrep -f "export_sd.py.*--out $m" > /dev/null; do sleep 5; done
    aoti_fp8_export || { cat "$W/aoti-fp8-start.log" 2> /dev/null; return 1; }
    cut -f2 "$W/aoti-fp8.log" | grep -E "FP8|added|compile took|batch 16: vs eager" || true
    "$SDMORPH" info "$m" | grep -E "aoti|FP8" || true
    parity_batched 4 0.99 "$m" "fp8-$mode"
}

# One guided UNet call (8 frames) timed and split by kernel (bench/unet_profile.py):
# each SDPA kernel, each attention shape alone (heads of 40 also padded to
# 64), Inductor's compile, and FP8 copies: issue 17's levers, one run.
unet_profile() {
    echo "GPU: $(gpu_name)"
    $PY bench/unet_profile.py --config "${SDM_SD15:-../shared/reference/sd15}/unet_config.json" --batch 16 \
        --compile default ${SDM_PROFILE_ARGS:---fp8 static --fp8 row}
}

# The test suite's checks that only run where there is CUDA.
cuda_tests() {
    local t rc=0
    [ -d .deps/media ] && export MEDIA_PREFIX=.deps/media
    make -j"$(nproc)" all build/models/analytic-step/model.yaml build/models/analytic-xl/model.yaml \
        build/tests/test_denoiser build/tests/test_torch_api build/tests/test_retime build/tests/test_sdxl \
        > "$W/make-tests.log" 2>&1 || { tail -n 30 "$W/make-tests.log"; return 1; }
    for t in test_denoiser test_torch_api test_retime test_sdxl; do
        SDM_BUILD=build SDM_BIN="$PWD/sdmorph" SDM_PYTHON=$(command -v "$PY") timeout 300 "build/tests/$t" > "$W/$t.log" 2>&1 || rc=1
        grep -E "^(retimed weights|retime probe cost|padded|released on CUDA|skipped)" "$W/$t.log" | sed 's/^/  /' || true
        echo "* $t on $(gpu_name): $(tail -n 1 "$W/$t.log")"
    done
    return $rc
}

cmd=${1:-setup}
[ $# -gt 0 ] && shift
case " $STEPS_ALL all " in
*" $cmd "*) "$cmd" "$@" ;;
*)
    echo "usage: bench/gpu.sh [$(echo "$STEPS_ALL all" | tr ' ' '|')]" >&2
    exit 2
    ;;
esac
