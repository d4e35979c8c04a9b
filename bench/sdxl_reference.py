#!/usr/bin/env python3
"""The reference side of the SDXL GPU checks: diffusers'
StableDiffusionXLPipeline on the random weights sdmorph's SDXL bundles were
exported from, made again here (pipeline/export/random_weights.py: the same
configs, seed and order, on the GPU) instead of saved and loaded.

    sdxl_reference.py parity --config DIR --tokenizer DIR --out-dir DIR --size 1024 --steps 20
        [--dtypes float32,float16] [--labels key,mid] [--prefix ref] [--lora FILE --lora-scale X [--plain-too]]
    sdxl_reference.py bench --config DIR --tokenizer DIR --size 1024 --frames 16 --steps 30
        --batches 4,8 [--compile-batch 8] [--cache-dir DIR]

parity writes, per dtype, ref-DTYPE-key.npy (the first prompt alone) and
ref-DTYPE-mid.npy (the morph's midpoint: prompt_embeds and
pooled_prompt_embeds both lerped halfway between the two prompts', the
negative prompt's as they are), uint8 [H,W,3]; DDIM (from the Euler config:
leading spacing, steps_offset 1), guidance 7.5, the initial noise drawn as
sdmorph draws it (float32, CPU generator, seed 1234, cast) and passed as
latents=. diffusers decodes in float32 where the VAE says force_upcast, as
sdmorph's SDXL bundles do. With --lora, diffusers' load_lora_weights +
fuse_lora(lora_scale) first; where peft (which those need) is missing,
diffusers' own reading of the file instead (lora_state_dict: kohya's
names, the original UNet's blocks among them, converted to its modules,
and the alphas; then its conversion to PEFT's names, as load_lora_weights
does it), each pair fused here as PEFT fuses one: W += scale * alpha / r *
B @ A. A "* " line says which. --prefix names the files
(PREFIX-DTYPE-LABEL.npy), --labels picks the images; --plain-too: the
same images without the LoRA too, first (PREFIX-plain-DTYPE-LABEL.npy).

bench times a 16-frame morph (both embeddings lerped, seed fixed) in
batches, eager at each batch, then with torch.compile on the UNet and the
VAE decode at --compile-batch (warm: the compile happens in a warm-up batch
of the same shape), and prints per run: s/frame and torch's peak memory.
"""
import argparse
import os
import sys
import time

T_START = time.time()

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pipeline", "export"))
import random_weights  # noqa: E402

PROMPT_A = "a rainy city street at night, neon signs, cinematic"
PROMPT_B = "a dense forest in the rain, moss, cinematic"
NEGATIVE = "blurry, low quality"
SEED = 1234


def pipeline(a, dtype, sampler="ddim"):
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    unet, vae, texts, sched = random_weights.build(a.config, a.weights_seed, "cuda")
    tok = CLIPTokenizer(f"{a.tokenizer}/vocab.json", f"{a.tokenizer}/merges.txt", model_max_length=77)
    tok2 = CLIPTokenizer(f"{a.tokenizer}/vocab.json", f"{a.tokenizer}/merges.txt", model_max_length=77,
                         pad_token="!")
    cls = DDIMScheduler if sampler == "ddim" else EulerDiscreteScheduler
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=texts[0], text_encoder_2=texts[1], tokenizer=tok,
                                     tokenizer_2=tok2, unet=unet, scheduler=cls.from_config(sched),
                                     force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cuda", dtype)


def encodings(pipe):
    """(prompt_embeds, pooled) of both prompts and of the negative prompt."""
    with torch.no_grad():
        ea, na, pa, npa = pipe.encode_prompt(PROMPT_A, device="cuda", num_images_per_prompt=1,
                                             do_classifier_free_guidance=True, negative_prompt=NEGATIVE)
        eb, _, pb, _ = pipe.encode_prompt(PROMPT_B, device="cuda", num_images_per_prompt=1,
                                          do_classifier_free_guidance=True, negative_prompt=NEGATIVE)
    return (ea, pa), (eb, pb), (na, npa)


def noise(a, dtype, n=1):
    shape = (1, 4, a.size // 8, a.size // 8)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(SEED)).to("cuda", dtype)
    return x.repeat(n, 1, 1, 1)


def fuse_lora_without_peft(pipe, path, scale):
    """diffusers' reading of a LoRA file and its names for PEFT, without
    peft: each pair fused here as PEFT fuses it (the module docstring).
    Returns the number of layers."""
    from diffusers.utils.state_dict_utils import (convert_state_dict_to_diffusers, convert_state_dict_to_peft,
                                                  convert_unet_state_dict_to_peft)

    sd, alphas = pipe.lora_state_dict(path, unet_config=pipe.unet.config)
    values = set((alphas or {}).values())
    if len(values) > 1:     # PEFT's alpha_pattern then: not done here
        raise SystemExit(f"{path}: {len(values)} alpha values; without peft, one only")
    n = 0
    for prefix, model in (("unet", pipe.unet), ("text_encoder", pipe.text_encoder),
                          ("text_encoder_2", pipe.text_encoder_2)):
        part = {k[len(prefix) + 1:]: v for k, v in sd.items() if k.startswith(prefix + ".")}
        if not part:
            continue
        # as load_lora_adapter (the UNet) and _load_lora_into_text_encoder convert them
        part = convert_unet_state_dict_to_peft(part) if prefix == "unet" else \
            convert_state_dict_to_peft(convert_state_dict_to_diffusers(part))
        layers = dict(model.named_modules())
        for k, down in part.items():
            if ".lora_A." not in k:
                continue
            w = layers[k.split(".lora_A.")[0]].weight
            up = part[k.replace(".lora_A.", ".lora_B.")].to(w.device, torch.float32)
            down = down.to(w.device, torch.float32)
            alpha = next(iter(values)) if values else down.shape[0]
            w += (scale * alpha / down.shape[0] * (up.flatten(1) @ down.flatten(1)).reshape(w.shape)).to(w.dtype)
            n += 1
    return n


def add_lora(pipe, a, name):
    try:
        import peft  # noqa: F401  (diffusers' load_lora_weights needs it)
    except ImportError:
        n = fuse_lora_without_peft(pipe, a.lora, a.lora_scale)
        print(f"* reference {name}: no peft here: diffusers' lora_state_dict({os.path.basename(a.lora)}) and its "
              f"PEFT names, {n} layers fused at {a.lora_scale} as PEFT fuses them (not load_lora_weights)", flush=True)
        return
    pipe.load_lora_weights(a.lora)
    pipe.fuse_lora(lora_scale=a.lora_scale)
    print(f"* reference {name}: diffusers' load_lora_weights({os.path.basename(a.lora)}) + "
          f"fuse_lora(lora_scale={a.lora_scale})", flush=True)


def parity_images(pipe, a, name, dtype, prefix):
    ka, kb, neg = encodings(pipe)
    mid = tuple(torch.lerp(x, y, 0.5) for x, y in zip(ka, kb))
    for label, (emb, pooled) in (("key", ka), ("mid", mid)):
        if label not in a.labels.split(","):
            continue
        img = pipe(prompt_embeds=emb, pooled_prompt_embeds=pooled, negative_prompt_embeds=neg[0],
                   negative_pooled_prompt_embeds=neg[1], latents=noise(a, dtype),
                   num_inference_steps=a.steps, guidance_scale=7.5, height=a.size, width=a.size,
                   output_type="np").images[0]
        np.save(os.path.join(a.out_dir, f"{prefix}-{name}-{label}.npy"), (img * 255).round().astype(np.uint8))
        print(f"reference {name} {label}: written as {prefix}-{name}-{label}.npy ({a.size}x{a.size}, {a.steps} "
              "DDIM steps)", flush=True)


def parity(a):
    for name in a.dtypes.split(","):
        dtype = getattr(torch, name)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = dtype != torch.float32
        pipe = pipeline(a, dtype)
        if a.lora and a.plain_too:    # the same images without the LoRA first
            parity_images(pipe, a, name, dtype, f"{a.prefix}-plain")
        if a.lora:
            add_lora(pipe, a, name)
        parity_images(pipe, a, name, dtype, a.prefix)
        del pipe
        torch.cuda.empty_cache()


def bench_run(pipe, a, frames, batch, neg):
    for i in range(0, len(frames), batch):
        chunk = frames[i:i + batch]
        n = len(chunk)
        pipe(prompt_embeds=torch.cat([e for e, _ in chunk]), pooled_prompt_embeds=torch.cat([p for _, p in chunk]),
             negative_prompt_embeds=neg[0].repeat(n, 1, 1), negative_pooled_prompt_embeds=neg[1].repeat(n, 1),
             latents=noise(a, torch.float16, n), num_inference_steps=a.steps, guidance_scale=7.5, height=a.size,
             width=a.size, output_type="np")


def bench_one(pipe, a, frames, batch, neg, label):
    c0 = time.perf_counter()
    bench_run(pipe, a, frames[:batch], batch, neg)     # warm-up (and, compiled, the compile)
    torch.cuda.synchronize()
    warm = time.perf_counter() - c0
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    bench_run(pipe, a, frames, batch, neg)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    # reserved: what torch's cache holds at most, the part of the device's
    # memory in use that sdmorph's --timings line compares with
    print(f"{label} batch {batch}: {dt / len(frames):.4f} s/frame, peak {torch.cuda.max_memory_allocated() / 2**30:.2f} "
          f"GiB (torch), reserved {torch.cuda.max_memory_reserved() / 2**30:.2f} GiB, warm-up {warm:.1f} s", flush=True)


def bench(a):
    if a.cache_dir:
        os.makedirs(a.cache_dir, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(a.cache_dir)
    pipe = pipeline(a, torch.float16)
    ka, kb, neg = encodings(pipe)
    frames = [tuple(torch.lerp(x, y, i / a.frames) for x, y in zip(ka, kb)) for i in range(a.frames)]
    print(f"diffusers loaded in {time.time() - T_START:.1f} s", flush=True)
    for b in [int(x) for x in a.batches.split(",") if x]:
        bench_one(pipe, a, frames, b, neg, "diffusers eager")
    if a.compile_batch:
        # what diffusers' documentation shows: the UNet and the VAE's decode compiled in place
        pipe.unet = torch.compile(pipe.unet)
        pipe.vae.decode = torch.compile(pipe.vae.decode)
        bench_one(pipe, a, frames, a.compile_batch, neg, "diffusers compiled")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["parity", "bench"])
    ap.add_argument("--config", required=True, help="the SDXL configs (../shared/reference/sdxl)")
    ap.add_argument("--tokenizer", required=True, help="CLIP's vocab.json and merges.txt")
    ap.add_argument("--weights-seed", type=int, default=0, help="export_sd.py's --seed")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out-dir", default=".")
    ap.add_argument("--dtypes", default="float32,float16")
    ap.add_argument("--labels", default="key,mid",
                    help="parity: the images (key: the first prompt, mid: the midpoint)")
    ap.add_argument("--prefix", default="ref", help="parity: the files' names, PREFIX-DTYPE-LABEL.npy")
    ap.add_argument("--lora", help="parity: a LoRA file for load_lora_weights + fuse_lora")
    ap.add_argument("--lora-scale", type=float, default=1.0)
    ap.add_argument("--plain-too", action="store_true",
                    help="parity with --lora: also the images without it first (PREFIX-plain-DTYPE-LABEL.npy)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--batches", default="4,8")
    ap.add_argument("--compile-batch", type=int, default=0, help="0: no torch.compile run")
    ap.add_argument("--cache-dir")
    a = ap.parse_args()
    with torch.no_grad():
        return (parity if a.mode == "parity" else bench)(a)


if __name__ == "__main__":
    sys.exit(main())
