#!/usr/bin/env bash
# Prepares .deps/ (ignored by git) on the development machine for a GPU
# machine that has torch but no FFmpeg, no diffusers and no ../shared:
#
#   bench/gpu_deps.sh DIFFUSERS_GIT_DIR
#
# - .deps/media: a static FFmpeg/x264/libyaml/... prefix (../shared/device/make-media-prefix.sh)
# - .deps/py: diffusers' src/diffusers (and its scripts' single-file converter)
#   from a git directory of diffusers (a snapshot brought by the search
#   tool's fetch); never committed
# - .deps/shared: ../shared/reference/{sd15,sdxl} and ../shared/clip
# - .deps/env.sh: the variables bench/gpu.sh reads, sourced by bench/gpu_call.sh
#
# Then carry .deps to the GPU machine and run bench/gpu_call.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
git_dir=${1:?usage: bench/gpu_deps.sh DIFFUSERS_GIT_DIR}
mkdir -p .deps/py .deps/shared
[ -f .deps/media/lib/pkgconfig/libavcodec.pc ] || ../shared/device/make-media-prefix.sh .deps/media
if [ ! -d .deps/py/diffusers ]; then
    tmp=$(mktemp -d)
    git -C "$git_dir" archive HEAD src/diffusers scripts/convert_diffusers_to_original_stable_diffusion.py |
        tar -x -C "$tmp"
    mv "$tmp/src/diffusers" .deps/py/
    mv "$tmp/scripts/convert_diffusers_to_original_stable_diffusion.py" .deps/py/
    rm -rf "$tmp"
fi
for d in reference/sd15 reference/sdxl clip; do
    rm -rf ".deps/shared/${d#*/}"
    cp -r "../shared/$d" ".deps/shared/${d#*/}"
done
cat > .deps/env.sh <<'ENV'
# sourced on the GPU machine, from the repository root (bench/gpu_call.sh)
export PYTHONPATH=$PWD/.deps/py${PYTHONPATH:+:$PYTHONPATH}
export SDM_SD15=$PWD/.deps/shared/sd15 SDM_CLIP=$PWD/.deps/shared/clip SDM_SDXL=$PWD/.deps/shared/sdxl
export SDM_DIFFUSERS_SCRIPTS=$PWD/.deps/py
ENV
du -sh .deps
