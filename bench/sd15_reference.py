#!/usr/bin/env python3
"""The reference side of the GPU checks: diffusers' StableDiffusionPipeline
on the same weights sdmorph's bundle was exported from.

    sd15_reference.py parity --weights DIR --out ref.npy --seed 1234 --steps 20
        [--sampler ddim|dpmpp_2m_karras] [--dtype float32|float16] [--diffusers-noise]
    sd15_reference.py plain --weights DIR --out-dir DIR --seed 1234 --steps 20 --runs auto,ddim-eta1,...
        (a run: auto|ddim|euler|euler_a|dpmpp_2m|dpmpp_2m_sde|pndm|lms|heun|unipc|lcm [-karras] [-etaE])
    sd15_reference.py bench --weights DIR --frames 16 --batch 8 --steps 50
        [--compile [--compile-mode MODE] [--cache-dir DIR]]

parity writes the uint8 RGB image [H,W,3] diffusers makes. Its initial noise
is drawn as sdmorph draws it: float32 from a CPU generator seeded with --seed,
then cast to the pipeline's dtype, and passed as latents=. --diffusers-noise
lets the pipeline draw it instead (randn_tensor with a CPU generator), which
for float16 draws float16 on the CPU: other numbers than the float32 draw.
plain is diffusers' own call, float32, once per run on one pipeline: the
checkpoint's scheduler (auto) or another built with from_config of its
config as users do, and
generator=torch.Generator().manual_seed(seed) with no latents=, so the
initial latents and every step's noise come from diffusers' own stream.
bench times a 16-frame morph (prompt embeddings interpolated, seed fixed),
in batches, and prints seconds per frame, peak GPU memory, the loading time
and the timed window (epoch seconds, for sampling the GPU's busy fraction).
--compile runs it as a Python user would make it fast: torch.compile on the
UNet and on the VAE decoder (mode "default" unless --compile-mode says
otherwise), compiled during the warm-up (one batch of the same shape, so the
timed run never recompiles) and timed warm; --cache-dir keeps Inductor's
caches (TORCHINDUCTOR_CACHE_DIR) there, so a later run reuses the compile.
"""
import argparse
import os
import sys
import time

T_START = time.time()

import numpy as np
import torch

PROMPT_A = "a rainy city street at night, neon signs, cinematic"
PROMPT_B = "a dense forest in the rain, moss, cinematic"
NEGATIVE = "blurry, low quality"


def pipeline(weights, dtype, sampler):
    from diffusers import (AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTokenizer

    unet = UNet2DConditionModel.from_pretrained(weights, subfolder="unet", torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(weights, subfolder="vae", torch_dtype=dtype)
    text = CLIPTextModel.from_pretrained(weights, subfolder="text_encoder", torch_dtype=dtype)
    tok = CLIPTokenizer(f"{weights}/tokenizer/vocab.json", f"{weights}/tokenizer/merges.txt", model_max_length=77)
    cls = DDIMScheduler if sampler == "ddim" else DPMSolverMultistepScheduler
    extra = {} if sampler == "ddim" else {"use_karras_sigmas": True}
    sched = cls.from_pretrained(weights, subfolder="scheduler", **extra)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cuda")


# sdmorph's sampler names: diffusers' class and the config keys they set
SCHEDULERS = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "pndm": ("PNDMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}


def scheduler_for(own_sched, sampler, karras):
    """The checkpoint's own scheduler (auto), or another from_config of its
    config, as users switch them."""
    import diffusers

    if sampler == "auto":
        return own_sched
    name, extra = SCHEDULERS[sampler]
    extra = dict(extra, **({"use_karras_sigmas": True} if karras else {}))
    return getattr(diffusers, name).from_config(own_sched.config, **extra)


def parse_run(label):
    """sampler[-karras][-etaE], as bench/gpu.sh names its runs."""
    parts = label.split("-")
    eta = next((float(p[3:]) for p in parts[1:] if p.startswith("eta")), 0.0)
    return parts[0], "karras" in parts[1:], eta


def plain(a):
    """One pipeline, each run's image: a run's scheduler is the checkpoint's
    own (auto) or another from_config(its config), as users switch them."""
    import json

    import diffusers

    pipe = pipeline(a.weights, torch.float32, "ddim")
    own = json.load(open(f"{a.weights}/scheduler/scheduler_config.json"))
    own_sched = getattr(diffusers, own["_class_name"]).from_config(own)
    for label in a.runs.split(","):
        sampler, karras, eta = parse_run(label)
        pipe.scheduler = scheduler_for(own_sched, sampler, karras)
        print(f"* diffusers {label}: {type(pipe.scheduler).__name__}, its own noise (CPU generator, seed {a.seed})")
        img = pipe(PROMPT_A, negative_prompt=NEGATIVE, num_inference_steps=a.steps, guidance_scale=7.5,
                   generator=torch.Generator().manual_seed(a.seed), eta=eta, output_type="np").images[0]
        np.save(f"{a.out_dir}/sampler-{label}.npy", (img * 255).round().astype(np.uint8))


def img2img(a):
    """diffusers' StableDiffusionImg2ImgPipeline on the same components, one
    image per run sampler[-karras]-sSTRENGTH: the picture (--image) as a PIL
    image, generator=torch.Generator().manual_seed(seed), no latents=, so the
    pipeline draws the picture's latent and then the noise itself."""
    import json

    import diffusers
    from PIL import Image

    base = pipeline(a.weights, torch.float32, "ddim")
    pipe = diffusers.StableDiffusionImg2ImgPipeline(**base.components).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    own = json.load(open(f"{a.weights}/scheduler/scheduler_config.json"))
    own_sched = getattr(diffusers, own["_class_name"]).from_config(own)
    picture = Image.open(a.image).convert("RGB")
    for label in a.runs.split(","):
        run, strength = label.rsplit("-s", 1)
        sampler, karras, _ = parse_run(run)
        pipe.scheduler = scheduler_for(own_sched, sampler, karras)
        print(f"* diffusers img2img {label}: {type(pipe.scheduler).__name__}, strength {strength}, "
              f"its own draws (CPU generator, seed {a.seed})")
        img = pipe(PROMPT_A, image=picture, strength=float(strength), negative_prompt=NEGATIVE,
                   num_inference_steps=a.steps, guidance_scale=7.5, generator=torch.Generator().manual_seed(a.seed),
                   output_type="np").images[0]
        np.save(f"{a.out_dir}/img2img-{label}.npy", (img * 255).round().astype(np.uint8))
    mean_or_draw(pipe, picture, a)


def mean_or_draw(pipe, picture, a):
    """The numbers behind following diffusers' draw of the picture's latent
    rather than taking the distribution's mean: the VAE's std against its
    mean, and the frame with the mean in place of the draw (the same draws
    made, so only that changes)."""
    import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img as i2i

    x = pipe.image_processor.preprocess(picture).to("cuda", torch.float32)
    with torch.no_grad():
        dist = pipe.vae.encode(x).latent_dist
    print(f"* img2img: the VAE's latent distribution on the picture: std mean {dist.std.mean().item():.3g}, "
          f"max {dist.std.max().item():.3g}; |mean| mean {dist.mean.abs().mean().item():.3g}")
    kw = dict(image=picture, strength=0.5, negative_prompt=NEGATIVE, num_inference_steps=a.steps, guidance_scale=7.5,
              output_type="np")
    drawn = pipe(PROMPT_A, generator=torch.Generator().manual_seed(a.seed), **kw).images[0]
    original = i2i.retrieve_latents

    def mean_latents(encoder_output, generator=None, sample_mode="sample"):
        encoder_output.latent_dist.sample(generator)  # the same draws, then the mean
        return encoder_output.latent_dist.mode()

    i2i.retrieve_latents = mean_latents
    try:
        mean = pipe(PROMPT_A, generator=torch.Generator().manual_seed(a.seed), **kw).images[0]
    finally:
        i2i.retrieve_latents = original
    d = np.abs((drawn * 255).round() - (mean * 255).round())
    print(f"* img2img: the mean instead of the draw (strength 0.5, {pipe.scheduler.__class__.__name__}) changes "
          f"the frame by max {d.max():.0f}/255, mean {d.mean():.3f}/255, {100 * (d <= 1).mean():.2f}% within 1/255")


def seed_noise(seed, dtype, shape):
    """sdmorph's initial noise: torch.randn in float32 with a fresh CPU
    generator, then moved and cast (a float16 draw gives other numbers)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to("cuda", dtype)


def parity(a):
    dtype = getattr(torch, a.dtype)
    pipe = pipeline(a.weights, dtype, a.sampler)
    g = torch.Generator().manual_seed(a.seed)
    latents = None
    if a.diffusers_noise:
        print(f"* noise for diffusers {a.dtype} {a.sampler}: its own draw (randn_tensor, CPU generator, {a.dtype})")
    else:
        f = pipe.vae_scale_factor
        shape = (1, pipe.unet.config.in_channels, 512 // f, 512 // f)
        latents = seed_noise(a.seed, dtype, shape)
        # prepare_latents only scales what it is given: by 1.0 for DDIM and DPM++
        sigma = pipe.scheduler.init_noise_sigma
        try:
            given = pipe.prepare_latents(1, shape[1], 512, 512, dtype, torch.device("cuda"), g, latents.clone())
        except TypeError as e:      # another diffusers version
            given, kept = None, f"prepare_latents not checked: {e}"
        if given is not None:
            if sigma != 1.0 or given.dtype != dtype or not torch.equal(given, latents):
                print(f"noise: prepare_latents changed the given latents (init_noise_sigma {sigma})", file=sys.stderr)
                return 1
            kept = f"prepare_latents keeps it: init_noise_sigma {sigma}"
        print(f"* noise for diffusers {a.dtype} {a.sampler}: float32 CPU draw, seed {a.seed}, cast to {a.dtype}, "
              f"passed as latents= ({kept})")
    img = pipe(PROMPT_A, negative_prompt=NEGATIVE, num_inference_steps=a.steps, guidance_scale=7.5,
               generator=g, latents=latents, output_type="np").images[0]
    np.save(a.out, (img * 255).round().astype(np.uint8))


def compile_pipeline(pipe, mode):
    """What diffusers' documentation shows: the UNet module and the VAE's
    decode compiled in place; the pipeline calls them as before."""
    pipe.unet = torch.compile(pipe.unet, mode=mode)
    pipe.vae.decode = torch.compile(pipe.vae.decode, mode=mode)


def bench(a):
    dtype = torch.float16
    if a.cache_dir:
        os.makedirs(a.cache_dir, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(a.cache_dir)
    pipe = pipeline(a.weights, dtype, "ddim")
    if a.compile:
        compile_pipeline(pipe, a.compile_mode)
    with torch.no_grad():
        ea, na = pipe.encode_prompt(PROMPT_A, "cuda", 1, True, NEGATIVE)
        eb, nb = pipe.encode_prompt(PROMPT_B, "cuda", 1, True, NEGATIVE)
    ts = [i / a.frames for i in range(a.frames)]
    embeds = [torch.lerp(ea, eb, t) for t in ts]
    shape = (1, 4, 64, 64)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(1234)).to("cuda", dtype)

    def run(frames):
        for i in range(0, len(frames), a.batch):
            chunk = frames[i:i + a.batch]
            pipe(prompt_embeds=torch.cat(chunk), negative_prompt_embeds=na.repeat(len(chunk), 1, 1),
                 latents=noise.repeat(len(chunk), 1, 1, 1), num_inference_steps=a.steps, guidance_scale=7.5,
                 output_type="np")

    c0 = time.perf_counter()
    run(embeds[:a.batch])           # warm-up (and, with --compile, the compile)
    torch.cuda.synchronize()
    warm = time.perf_counter() - c0
    torch.cuda.reset_peak_memory_stats()
    w0 = time.time()
    t0 = time.perf_counter()
    run(embeds)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    what = f"torch.compile mode {a.compile_mode}, warm-up with the compile {warm:.1f} s; " if a.compile else ""
    print(f"diffusers batch {a.batch}: {dt / a.frames:.4f} s/frame, peak GPU memory "
          f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (torch), {w0 - T_START:.1f} s loading "
          f"({what}imports, weights, warm-up)")
    print(f"timed window: {w0:.3f} {w0 + dt:.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["parity", "plain", "img2img", "bench"])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="ddim", choices=["ddim", "dpmpp_2m_karras"])
    ap.add_argument("--runs", default="auto", help="plain: the runs, comma-separated; each writes "
                    "OUT_DIR/sampler-RUN.npy")
    ap.add_argument("--out-dir", default=".", help="plain, img2img: where the images go")
    ap.add_argument("--image", help="img2img: the starting picture (runs are sampler[-karras]-sSTRENGTH, each "
                    "writing OUT_DIR/img2img-RUN.npy)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--diffusers-noise", action="store_true",
                    help="let the pipeline draw the initial noise (in --dtype) instead of sdmorph's float32 draw")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--compile", action="store_true", help="bench: torch.compile the UNet and the VAE decoder")
    ap.add_argument("--compile-mode", default="default",
                    choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])
    ap.add_argument("--cache-dir", help="bench: TORCHINDUCTOR_CACHE_DIR, kept between runs")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if a.mode == "plain":
        return plain(a)
    if a.mode == "img2img":
        return img2img(a)
    return parity(a) if a.mode == "parity" else bench(a)


if __name__ == "__main__":
    sys.exit(main())
