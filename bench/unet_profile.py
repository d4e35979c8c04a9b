#!/usr/bin/env python3
"""Where a guided SD UNet call spends its GPU time: per attention kernel,
and compiled by Inductor as export_sd.py --aoti compiles it (CUDA;
diffusers' source on PYTHONPATH).

    unet_profile.py (--weights DIR | --config unet_config.json) [--batch 16]
        [--iters 20] [--compile SPEC ...] [--vae-config vae_config.json]

DIR is a diffusers checkpoint (bench/gpu.sh setup saves one in
build/gpu/sd15-diffusers); --config builds the UNet with random weights
instead (speed does not depend on the values). --batch is the UNet's
batch: 2 x sdmorph's --batch with guidance. Prints, in float16:
  - one eager UNet call's time with each SDPA backend that runs (auto =
    what torch picks; the others forced), each captured as a CUDA graph so
    that launches do not count;
  - each attention shape of the model alone, per backend, in TFLOP/s (heads
    of 40 also padded to 64, per backend: issue 17's head-size lever);
  - the profiler's split of one call's kernel time into convolution, matrix
    products, attention, normalisation and the rest, with the FLOPs of each
    (torch's flop counter) and the rate they ran at.
--vae-config adds the VAE decoder (--vae-batch frames per call), eager and
compiled. --compile SPEC (repeatable) does the same for the UNet compiled by
Inductor with freezing on, as the AOTInductor export compiles it (the
package itself cannot be profiled here: torch 2.11's Python loaders crash
on it). SPEC is "default" or extra Inductor options, KEY=VALUE[,KEY=VALUE],
e.g. coordinate_descent_tuning=1 or max_autotune_gemm=1.
--fp8 MODE (repeatable; tensor, row or static, pipeline/export/fp8_linear.py) does
the same for a copy of the UNet whose attention projections and
feed-forward layers run FP8 matrix products, eager and compiled (each
--compile SPEC, else default), with its max and mean |diff| against the
float16 UNet.
Lines starting with "* " are results (bench/gpu.sh collects them).
"""
import argparse
import json
import statistics
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

PEAK = 989.4e12     # dense fp16 tensor-core FLOP/s of an H100/H200 SXM


BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION}


def graphed_ms(fn, iters):
    """Median ms of fn() replayed from a CUDA graph (warmed up eagerly first)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    del g
    return statistics.median(times)


def category(name):
    n = name.lower()
    if n.startswith("triton_"):
        # Inductor's kernels: templates are its own matrix products or
        # convolutions; the rest fuse pointwise work or reductions
        if n.startswith("triton_tem"):
            return "convolution" if "conv" in n else "matmul"
        return "normalisation" if "norm" in n else "elementwise/other"
    if any(k in n for k in ("flash", "fmha", "attention", "sdpa", "cudnn_generated_fort_native_sdpa")):
        return "attention"
    if any(k in n for k in ("conv", "fprop", "implicit", "dgrad", "wgrad", "winograd")):
        return "convolution"
    if any(k in n for k in ("gemm", "matmul", "cutlass", "sm90_xmma", "cublas", "s16816", "h16816", "nvjet")):
        return "matmul"
    if any(k in n for k in ("norm", "welford")):
        return "normalisation"
    return "elementwise/other"


def flop_split(fn, args_):
    """FLOPs of one call by category, from torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        fn(*args_)
    split = {}
    for op, n in fc.get_flop_counts()["Global"].items():
        name = str(op)
        cat = ("attention" if "attention" in name else "convolution" if "convolution" in name
               else "matmul" if any(k in name for k in ("mm", "linear", "baddbmm")) else "elementwise/other")
        split[cat] = split.get(cat, 0) + n
    return split


def kernel_split(call, steps=3):
    """Kernel time (ms per call) by category, and the biggest kernels."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            call()
        torch.cuda.synchronize()
    by_cat, by_name = {}, {}
    for ev in prof.key_averages():
        t = ev.device_time_total if hasattr(ev, "device_time_total") else ev.cuda_time_total
        if t <= 0 or ev.key.startswith(("cuda", "Memcpy", "Memset")) or ev.key.startswith("aten::"):
            continue
        by_cat[category(ev.key)] = by_cat.get(category(ev.key), 0) + t / 1e3 / steps
        by_name[ev.key] = by_name.get(ev.key, 0) + t / 1e3 / steps
    return by_cat, sorted(by_name.items(), key=lambda kv: -kv[1])[:12]


def attention_shapes(batch):
    """(label, q shape, kv length) of SD 1.5's attention calls at 512x512."""
    out = []
    for tokens, dim in ((4096, 320), (1024, 640), (256, 1280), (64, 1280)):
        heads = 8
        out.append((f"self {tokens}x{dim // heads}", (batch, heads, tokens, dim // heads), tokens))
        out.append((f"cross {tokens}x{dim // heads}", (batch, heads, tokens, dim // heads), 77))
    return out


def padded_head_rates(q, kv, flops, iters):
    """Issue 17's head-size lever: SD 1.5's heads of 40 padded with zeros to
    the next multiple of 64 (q.k and the output's first 40 columns
    unchanged; the scale kept at 1/sqrt(40)), per backend, the padding and
    the slice included; the rate counts the unpadded FLOPs."""
    d = q.shape[-1]
    pd = (d + 63) // 64 * 64
    pad = torch.nn.functional.pad
    out = []
    ref = torch.nn.functional.scaled_dot_product_attention(q, kv, kv)

    def call():
        return torch.nn.functional.scaled_dot_product_attention(pad(q, (0, pd - d)), pad(kv, (0, pd - d)),
                                                                pad(kv, (0, pd - d)), scale=d ** -0.5)[..., :d]
    for name, be in BACKENDS.items():
        try:
            with sdpa_kernel([be]):
                diff = (call() - ref).abs().max().item()
                ms = graphed_ms(call, iters)
            out.append(f"{name}@{pd} {flops / ms / 1e9:.0f} (max |diff| {diff:.2g})")
        except Exception:
            out.append(f"{name}@{pd} -")
    return out


def parse_spec(spec):
    """'default' or KEY=VALUE[,KEY=VALUE] -> Inductor options, each value of
    the type the option has (1/0 or true/false for a flag)."""
    import torch._inductor.config as ic

    opts = {}
    if spec != "default":
        for kv in spec.split(","):
            k, _, v = (p.strip() for p in kv.partition("="))
            cur = ic
            for part in k.split("."):
                cur = getattr(cur, part, None)
            if not k or not v or cur is None:
                sys.exit(f"unet_profile.py: --compile '{spec}': expected KEY=VALUE[,KEY=VALUE] of Inductor "
                         f"options, or default")
            opts[k] = (v.lower() in ("1", "true", "yes") if isinstance(cur, bool)
                       else type(cur)(v) if isinstance(cur, (int, float)) else v)
    return opts


def report(label, call, flops, iters):
    """Time, rate and kernel split of one call (a model on fixed inputs)."""
    total = sum(flops.values())
    ms = graphed_ms(call, iters)
    print(f"* {label}: {ms:.2f} ms per call, {total / ms / 1e9:.0f} TFLOP/s, MFU {100 * total / ms / 1e-3 / PEAK:.1f}%")
    by_cat, top = kernel_split(call)
    kt = sum(by_cat.values())
    print(f"--- {label}: kernel time by category, {kt:.2f} ms per call")
    for cat, t in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        f = flops.get(cat, 0)
        rate = f"{f / t / 1e9:.0f} TFLOP/s" if f else "-"
        print(f"* {label}, {cat}: {t:.2f} ms ({100 * t / kt:.1f}%), {f / 1e12:.3f} TFLOP, {rate}")
    print(f"--- {label}: biggest kernels (ms per call)")
    for name, t in top:
        print(f"  {t:7.3f}  {name[:150]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--weights", help="diffusers checkpoint directory")
    src.add_argument("--config", help="a UNet config (unet_config.json): random weights")
    ap.add_argument("--batch", type=int, default=16, help="UNet batch (2 x frames per call with guidance)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--compile", action="append", default=[], metavar="SPEC",
                    help="also profile the UNet compiled by Inductor: 'default' or KEY=VALUE[,KEY=VALUE]")
    ap.add_argument("--fp8", action="append", default=[], choices=["tensor", "row", "static"],
                    help="also the UNet with FP8 attention projections and feed-forward layers (pipeline/export/fp8_linear.py)")
    ap.add_argument("--no-eager", action="store_true", help="skip the eager backends and attention shapes")
    ap.add_argument("--vae-config", help="also the VAE decoder (vae_config.json, random weights), eager and compiled")
    ap.add_argument("--vae-batch", type=int, default=8, help="frames per VAE decoder call (sdmorph decodes 8)")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("unet_profile.py: needs CUDA")
    if not (a.weights or a.config or a.vae_config):
        sys.exit("unet_profile.py: give --weights or --config (the UNet), and/or --vae-config")
    specs = [(spec, parse_spec(spec)) for spec in a.compile]
    dev, dt = torch.device("cuda"), torch.float16
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, float16")
    if a.weights or a.config:
        unet_section(a, specs, dev, dt)
    if a.vae_config:
        vae_section(a, specs, dev, dt)


def compiled_reports(what, module, call_of, ref, flops, specs, iters):
    """`module` compiled by Inductor (freezing on, plus each spec's options),
    timed and split as report() does; call_of(compiled) -> a no-argument call."""
    for spec, opts in specs:
        torch._dynamo.reset()
        call = call_of(torch.compile(module, options={"freezing": True, **opts}))
        t0 = time.time()
        try:
            out = call()
            torch.cuda.synchronize()
        except Exception as e:
            print(f"* {what} inductor {spec}: compile FAILED ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
            continue
        diff = (out.float() - ref.float()).abs().max().item()
        print(f"* {what} inductor {spec}: compiled in {time.time() - t0:.0f} s, max |diff| vs eager {diff:.4f}")
        report(f"{what} inductor {spec}", call, flops, iters)


def vae_section(a, specs, dev, dt):
    """The VAE decoder on --vae-batch latents at 64x64 (512x512 images)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(**json.load(open(a.vae_config))).to(dev, dt).eval()

    class Decoder(torch.nn.Module):     # what sdmorph's vae_decoder runs: decode alone
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, z_):
            return self.vae.decode(z_, return_dict=False)[0]

    dec = Decoder()
    z = torch.randn(a.vae_batch, vae.config.latent_channels, 64, 64, generator=torch.Generator().manual_seed(0))
    z = z.to(dev, dt)
    flops = flop_split(dec, (z,))
    total = sum(flops.values())
    print(f"* VAE decoder call, {a.vae_batch} frames: {total / 1e12:.2f} TFLOP ({total / a.vae_batch / 1e12:.2f} "
          f"TFLOP per frame)")

    def call_of(m):
        def call():
            with torch.no_grad():
                return m(z)
        return call

    ref = call_of(dec)()
    report("VAE eager", call_of(dec), flops, a.iters)
    compiled_reports("VAE", dec, call_of, ref, flops, specs or [("default", {})], a.iters)


def unet_section(a, specs, dev, dt):
    """The UNet at --batch: eager per attention kernel, then compiled."""
    from diffusers import UNet2DConditionModel
    if a.config:
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**json.load(open(a.config))).to(dev, dt).eval()
    else:
        unet = UNet2DConditionModel.from_pretrained(a.weights, subfolder="unet", torch_dtype=dt).to(dev).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, unet.config.in_channels, 64, 64, generator=g).to(dev, dt)
    t = torch.full((a.batch,), 500.0, device=dev)
    emb = torch.randn(a.batch, 77, unet.config.cross_attention_dim, generator=g).to(dev, dt)
    print(f"UNet batch {a.batch}")

    def eager():
        with torch.no_grad():
            return unet(x, t, encoder_hidden_states=emb, return_dict=False)[0]

    flops = flop_split(unet, (x, t, emb))
    total_flops = sum(flops.values())
    print(f"* UNet call: {total_flops / 1e12:.2f} TFLOP ({total_flops / a.batch / 1e9:.1f} GFLOP per sample)")
    ref = eager()

    if not a.no_eager:
        for name, be in BACKENDS.items():
            try:
                with sdpa_kernel([be]):
                    ms = graphed_ms(eager, a.iters)
                    diff = (eager() - ref).abs().max().item()
            except Exception as e:  # a backend that does not take these shapes
                print(f"* eager, {name} attention: not available ({type(e).__name__}: "
                      f"{str(e).splitlines()[0][:120]})")
                continue
            print(f"* eager, {name} attention: {ms:.2f} ms per call, {total_flops / ms / 1e9:.0f} TFLOP/s, "
                  f"max |diff| vs auto {diff:.4f}")
        print("--- attention alone (TFLOP/s; 4*B*H*Lq*Lk*D per call)")
        for label, shape, lk in attention_shapes(a.batch):
            q = torch.randn(shape, device=dev, dtype=dt)
            kv = torch.randn(shape[0], shape[1], lk, shape[3], device=dev, dtype=dt)
            f = 4 * shape[0] * shape[1] * shape[2] * lk * shape[3]
            row = []
            for name, be in BACKENDS.items():
                try:
                    with sdpa_kernel([be]):
                        ms = graphed_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, kv, kv), a.iters)
                    row.append(f"{name} {f / ms / 1e9:.0f}")
                except Exception:
                    row.append(f"{name} -")
            if shape[3] % 64:
                row += padded_head_rates(q, kv, f, a.iters)
            print(f"* attention {label}: " + ", ".join(row))
        report("UNet eager", eager, flops, a.iters)

    def call_of(m):
        def call():
            with torch.no_grad():
                return m(x, t, encoder_hidden_states=emb, return_dict=False)[0]
        return call

    compiled_reports("UNet", unet, call_of, ref, flops, specs, a.iters)
    for mode in a.fp8:
        fp8_reports(mode, unet, x, emb, call_of, ref, flops, specs, a.iters)


def fp8_reports(mode, unet, x, emb, call_of, ref, flops, specs, iters):
    """A copy of the UNet with FP8 linears (mode: fp8_linear's), eager and
    compiled, against the float16 output `ref`."""
    import os

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pipeline", "export"))
    import fp8_linear

    def calls(q):
        # the scales from calls across the schedule (noise level changes the activations)
        return [lambda tt=tt: q(x, torch.full((x.shape[0],), tt, device=x.device), encoder_hidden_states=emb,
                                return_dict=False) for tt in (999.0, 750.0, 500.0, 250.0, 1.0)]

    try:
        q, n = fp8_linear.fp8_copy(unet, mode, calls)
        out = call_of(q)()
    except Exception as e:
        print(f"* UNet fp8 {mode}: FAILED ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
        return
    d = (out.float() - ref.float()).abs()
    print(f"* UNet fp8 {mode}: {n} linears; vs float16 max |diff| {d.max().item():.4f}, mean |diff| "
          f"{d.mean().item():.5f} (mean |out| {ref.float().abs().mean().item():.4f})")
    report(f"UNet fp8 {mode} eager", call_of(q), flops, iters)
    compiled_reports(f"UNet fp8 {mode}", q, call_of, ref, flops, specs or [("default", {})], iters)
    del q


if __name__ == "__main__":
    main()
