#!/usr/bin/env python3
"""Where an SDXL frame's time goes, part by part (issue 20's speed work).

    sdxl_profile.py --config ../shared/reference/sdxl [--batch 8] [--size 1024]
                    [--skip compile|aoti|vae] [--bundle DIR [--ts-vae]]

On random weights of the SDXL shapes (pipeline/export/random_weights.py), one
guided call of the UNet (2 x batch samples, fp16) and one VAE decode of
`batch` latents (float32, as SDXL's force_upcast has it), each timed:
  - eager (diffusers' modules as they are),
  - torch.compile (default mode, as bench/sdxl_reference.py compiles them),
  - Inductor with freezing on, as export_sd.py compiles a bundle's UNet
    (export_sd.UNetXL) into its AOTInductor package,
  - with --bundle DIR, the bundle's own TorchScript UNet (DIR/unet.pt, a
    float16 SDXL bundle of the same size), which sdmorph runs where no
    AOTInductor package serves: timed here beside eager, it says whether
    a gap is in the module or in sdmorph's loop around it.
  - with --ts-vae (and --bundle), only the VAE decode a frame per call, as
    sdmorph runs it: eager beside the bundle's TorchScript vae_decoder.pt as
    it is, with TorchScript's fuser off, and with its graph optimizations
    off (each a fresh load: TorchScript optimizes on its first calls). The
    TorchScript decoder took 400 ms a frame in sdmorph's render where
    AOTInductor's took 66 (bench/README, 2026-12-08): which setting, if any,
    makes the difference. Plain calls timed with CUDA events (sdmorph's
    decode is not replayed from a graph).
The sdmorph render spends 30 guided UNet calls per batch and one decode, so
the lines say which part makes up a gap between sdmorph and compiled
diffusers. ms per call: the median of 5 replays of a CUDA graph of the call
(unet_profile.graphed_ms; sdmorph's loop replays graphs too); peak memory
from torch's allocator.
"""
import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pipeline", "export"))
import export_sd  # noqa: E402
import random_weights  # noqa: E402

sys.path.insert(0, HERE)
import unet_profile  # noqa: E402


def say(msg):
    print(msg, flush=True)


def timed(fn, runs=5):
    """Median ms per call of fn() replayed from a CUDA graph, as sdmorph's
    loop runs (unet_profile.graphed_ms), and the allocator's peak GiB."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        ms = unet_profile.graphed_ms(fn, runs)
    return ms, torch.cuda.max_memory_allocated() / 2**30


def event_ms(fn, runs=5):
    """Median ms of plain calls of fn() (after two), CUDA events around each."""
    times = []
    with torch.no_grad():
        for i in range(runs + 2):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            if i >= 2:
                times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def ts_vae(bundle, vae, z):
    """The bundle's TorchScript VAE decoder on one frame z, three ways, beside
    eager; sdmorph's settings (TF32 on, as for a float16 bundle)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    say(f"* vae decode float32 eager, 1 frame a call: {event_ms(lambda: vae.decode(z, return_dict=False)[0]):.1f} ms")
    path = os.path.join(bundle, "vae_decoder.pt")
    ways = [("as sdmorph runs it", {}),
            ("fuser off", {"fuser": False}),
            ("graph optimizations off", {"optimize": False})]
    for label, how in ways:
        torch._C._jit_set_texpr_fuser_enabled(how.get("fuser", True))
        torch._C._set_graph_executor_optimize(how.get("optimize", True))
        ts = torch.jit.load(path, map_location="cuda").eval()
        say(f"* vae decode TorchScript ({label}), 1 frame a call: {event_ms(lambda: ts(z)):.1f} ms")
        del ts
    torch._C._jit_set_texpr_fuser_enabled(True)
    torch._C._set_graph_executor_optimize(True)


def compiled_timed(call, fn, runs, label, options=None):
    """torch.compile(fn) with Inductor's options, compiled by a first
    call(compiled), then timed; label: a format with {ms}, printed with the
    peak memory."""
    t0 = time.time()
    compiled = torch.compile(fn, options=options)
    with torch.no_grad():
        call(compiled)
    say(f"  (compiled in {time.time() - t0:.0f} s)")
    ms, gib = timed(lambda: call(compiled), runs=runs)
    say("* " + label.format(ms=ms) + f", peak {gib:.1f} GiB")
    del compiled
    torch._dynamo.reset()


def unet_inputs(batch, lat, dtype):
    g = torch.Generator().manual_seed(0)
    n = 2 * batch       # guided: the negative and the positive halves in one call
    size = float(8 * lat)   # time ids: original size, crop (0, 0), target size
    return (torch.randn(n, 4, lat, lat, generator=g).to("cuda", dtype),
            torch.full((n,), 500.0, device="cuda"),
            torch.randn(n, 77, 2048, generator=g).to("cuda", dtype),
            torch.randn(n, 1280, generator=g).to("cuda", dtype),
            torch.tensor([[size, size, 0.0, 0.0, size, size]] * n).to("cuda", dtype))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--skip", action="append", default=[], choices=["compile", "aoti", "vae"])
    ap.add_argument("--bundle", metavar="DIR", help="also time DIR/unet.pt, a float16 SDXL bundle's TorchScript UNet")
    ap.add_argument("--ts-vae", action="store_true",
                    help="only the VAE decode a frame per call: eager and the bundle's TorchScript decoder, three ways")
    a = ap.parse_args()
    if a.ts_vae and not a.bundle:
        ap.error("--ts-vae needs --bundle")
    lat = a.size // 8
    t0 = time.time()
    unet, vae, _, _ = random_weights.build(a.config, 0, "cuda")
    unet = unet.to(torch.float16)
    vae = vae.to(torch.float32)
    say(f"* GPU {torch.cuda.get_device_name()}, torch {torch.__version__}; SDXL random weights, "
        f"{a.size}x{a.size}, batch {a.batch} (UNet calls of {2 * a.batch}); built in {time.time() - t0:.0f} s")
    x = unet_inputs(a.batch, lat, torch.float16)
    module = export_sd.unet_module(unet).eval()
    z = torch.randn(a.batch, 4, lat, lat, generator=torch.Generator().manual_seed(1)).to("cuda")
    if a.ts_vae:
        ts_vae(a.bundle, vae, z[:1].contiguous())
        return

    ms, gib = timed(lambda: module(*x))
    say(f"* unet eager: {ms:.1f} ms per call, peak {gib:.1f} GiB")
    if a.bundle:
        ts = torch.jit.load(os.path.join(a.bundle, "unet.pt"), map_location="cuda").eval()
        with torch.no_grad():
            for _ in range(3):      # TorchScript's profiling runs optimize the graph on its first calls
                ts(*x)
        ms, gib = timed(lambda: ts(*x))
        say(f"* unet TorchScript ({a.bundle}/unet.pt): {ms:.1f} ms per call, peak {gib:.1f} GiB")
        del ts
    if "vae" not in a.skip:
        ms, gib = timed(lambda: vae.decode(z, return_dict=False)[0], runs=3)
        say(f"* vae decode float32 eager: {ms:.1f} ms per {a.batch} frames, peak {gib:.1f} GiB")
        # sdmorph decodes export_sd.decode_chunk frames per call (its peak
        # bounded, as diffusers' enable_vae_slicing does): at what cost per frame
        chunk = min(a.batch, export_sd.decode_chunk(lat, lat, z.element_size()))
        zc = z[:chunk].contiguous()
        ms, gib = timed(lambda: vae.decode(zc, return_dict=False)[0], runs=3)
        say(f"* vae decode float32 eager, {chunk} at a time (sdmorph's chunk): {ms * a.batch / chunk:.1f} ms per "
            f"{a.batch} frames, peak {gib:.1f} GiB")
    if "compile" not in a.skip:
        if "vae" not in a.skip:
            compiled_timed(lambda f: f(z, return_dict=False)[0], vae.decode, 3,
                           f"vae decode float32 torch.compile: {{ms:.1f}} ms per {a.batch} frames")
        compiled_timed(lambda f: f(*x), module, 5, "unet torch.compile: {ms:.1f} ms per call")
    if "aoti" not in a.skip:
        # AOTInductor's generated kernels are Inductor's with freezing on; its
        # package cannot be timed here (torch 2.11's Python loader crashes on
        # these packages: export_sd.py's CHECK_CHILD), so Inductor with the
        # same option stands in for it, on the module the export compiles
        # (its attention processor, StaticHeadsAttention, as export_sd sets it)
        unet.set_attn_processor(export_sd.StaticHeadsAttention())
        compiled_timed(lambda f: f(*x), module, 5,
                       "unet torch.compile + freezing (AOTInductor's config): {ms:.1f} ms per call",
                       options={"freezing": True})


if __name__ == "__main__":
    main()
