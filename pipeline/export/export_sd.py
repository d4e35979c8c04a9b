#!/usr/bin/env python3
"""Turn a diffusers Stable Diffusion checkpoint into an sdmorph model bundle.

    python3 pipeline/export/export_sd.py --checkpoint DIR_OR_HUB_ID --out BUNDLE_DIR
        [--dtype float16|float32] [--device cuda|cpu]
    python3 pipeline/export/export_sd.py --checkpoint model.safetensors|model.ckpt --out BUNDLE_DIR
        [--tokenizer DIR | --config DIR] [--vae FILE] [--lora FILE[:SCALE]]...
    python3 pipeline/export/export_sd.py --random-weights ../shared/reference/sd15 \
        --tokenizer ../shared/clip --out BUNDLE_DIR [--save-diffusers DIR]
    ... --aoti     also compile the UNet and the VAE decoder with AOTInductor
                   into BUNDLE_DIR/unet.pt2 and vae_decoder.pt2

Needs torch, diffusers and transformers (a hub id also needs internet the
first time). The bundle holds the text encoder, UNet, VAE decoder and VAE
encoder (vae_encoder.pt: an image to the latent distribution's moments, for
image-to-image starts) traced to TorchScript and frozen, the tokenizer files, and model.yaml filled from
the checkpoint's configs. The text encoder takes token embeddings and gives
every layer (after the final norm); its token table is
token_embedding.safetensors, which sdmorph reads: so textual-inversion
embeddings load at render time and clip_skip picks a layer (bundles from
export_sd.py 2 and before take ids and give the last layer only). Each traced module is run against its eager
original on one input; a bundle that differs is not written.

A single-file checkpoint (SD 1.x or 2.x, as model sites serve them) is
read offline: its family comes from its keys, the component configs from
the published ones (pipeline/export/checkpoint.py; --config DIR: a
diffusers folder's instead), the tokenizer from --tokenizer DIR (CLIP's
vocab.json and merges.txt), the --config folder or transformers' cache;
diffusers' from_single_file converts the weights. A .ckpt is a pickle: it
is read with torch.load(weights_only=True) only, and one that holds more
than tensors is refused without running anything. --vae FILE replaces the
VAE (an A1111-style .vae.safetensors/.vae.pt, or a diffusers VAE's
weights); --lora FILE[:SCALE] (repeatable; kohya's or diffusers' format,
SDXL's too) is fused into the UNet and text encoder weights
(pipeline/export/lora.py).
model.yaml's source: section records the checkpoint, VAE and LoRAs with
their SHA-256 and scales, and this exporter's version.

--random-weights builds the SD 1.5 (or SDXL) shapes from their config files
with seeded random weights (no download): for benchmarks and parity checks;
--save-diffusers keeps those weights in diffusers' layout so the reference
pipeline can load exactly the same model (SDXL's are made on the export
device, and bench/sdxl_reference.py makes the same ones again instead:
pipeline/export/random_weights.py).

SDXL (a folder or hub id whose UNet has SDXL's added conditioning, an SDXL
single file, or --random-weights of SDXL's configs): both text encoders are
written (text_encoder.pt, text_encoder_2.pt, each with its token table;
they give their layers without the final norm, as SDXL reads the layer
before the last, and the second one more layer, its projected output, whose
row at the end of text is the pooled embedding); the UNet takes (x, t, emb
[B,77,2048], pooled [B,1280], time_ids [B,6]). model.yaml says family: sdxl,
text.penultimate, text_2 (the second encoder: width, pad id "!", layers,
pooled width) and force_zeros_for_empty_prompt. SDXL's VAE overflows in
float16: a float16 export keeps the VAE decoder in float32 (vae_dtype in
model.yaml) where its config says force_upcast; --vae-dtype float16 with an
fp16-fixed VAE (--vae FILE) decodes in float16. An SDXL LoRA (kohya's
lora_unet_/lora_te1_/lora_te2_ with the original UNet's block names or
diffusers', or diffusers' unet./text_encoder./text_encoder_2.) is fused into
the UNet and both text encoders.

--aoti (torch >= 2.6, CUDA): once the TorchScript bundle is written, the
same UNet is exported with torch.export (batch dynamic, 1..--aoti-max-batch,
shared by x, t and emb; latent size fixed at the bundle's default) and
compiled by AOTInductor (freezing on, max-autotune off; minutes) into
unet.pt2, and the VAE decoder likewise into vae_decoder.pt2 (batch 1..N,
N the frames sdmorph decodes per call: 8 at 512x512 in float16, fewer for
larger images or a float32 decoder, 1 for SDXL's float32 decode at
1024x1024; decode_chunk). Each package is loaded back (in a
child process) and run against the eager module at several batch sizes;
only then does model.yaml name it (files.unet_aoti with aoti:,
files.vae_decoder_aoti with aoti_vae:). If the UNet's compile fails or its
outputs differ, the TorchScript bundle stays as written and the exit status
is 1 (a VAE decoder that fails is only left out, with a warning); if the
child crashes while loading (seen with torch 2.11's Python loader), the
package is added with a warning: sdmorph checks it against its TorchScript
module when it loads it, and uses TorchScript alone if they differ.
--aoti-frames N compiles it for one batch instead: N frames per call
(sdmorph's --batch N), a UNet batch of 2N with guidance, and the VAE
decoder for min(N, 8) frames; Inductor then chooses kernels for that shape
(11% faster than the range on an H100), and other calls run on TorchScript.
--aoti-attention flash|efficient|cudnn bakes that SDPA kernel into unet.pt2
(torch.export fixes the choice; the default is what torch picks on this
GPU); the export log names the kernel the package calls.
--aoti-fp8 static|row|tensor (opt-in; Ada/Hopper, fp8_linear.py): the UNet
package's attention projections and feed-forward layers run FP8 (e4m3)
matrix products; static scales are calibrated here on the check inputs.
model.yaml's aoti.fp8 says so; its frames differ from the float16 bundle's.
To add unet.pt2 to an existing bundle, export it again with --aoti (from
the same checkpoint, or from the --save-diffusers copy of random weights):
everything is rewritten.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundle_yaml  # noqa: E402
import checkpoint as ckpt  # noqa: E402
import lora as lora_mod  # noqa: E402
import fp8_linear  # noqa: E402
import random_weights  # noqa: E402
import safetensors_io  # noqa: E402

# Recorded in model.yaml (source.exporter): what made a bundle.
EXPORTER = "export_sd.py 4"
SINGLE_FILE_EXT = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def die(msg):
    print(f"export_sd: {msg}", file=sys.stderr)
    sys.exit(1)


class TextEncoder(torch.nn.Module):
    """ids [B,L] int64 -> last hidden state [B,L,H], as diffusers' pipelines use it (the reference)."""

    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, ids):
        return self.clip(ids, return_dict=False)[0]


def clip_text_model(clip):
    """The module holding CLIP's embeddings, layers and final norm: transformers
    4.x wraps it as CLIPTextModel.text_model; later versions may not."""
    tm = getattr(clip, "text_model", clip)
    if not hasattr(tm, "embeddings") or not hasattr(tm, "final_layer_norm"):
        raise SystemExit("export_sd: this transformers' CLIPTextModel has no embeddings/final_layer_norm "
                         "where sdmorph's export looks for them")
    return tm


class TextEncoderLayers(torch.nn.Module):
    """inputs_embeds [B,L,H] -> every layer's hidden state after the final
    layer norm, [layers,B,L,H]. sdmorph looks the token embeddings up itself
    (token_embedding.safetensors), so textual-inversion vectors can take a
    token's place, and picks layer layers-clip_skip: A1111's clip skip s is
    the hidden state s-1 layers before the last, then the final norm
    (diffusers' clip_skip=s-1). Layer `layers` is diffusers' last_hidden_state.

    CLIP's pre-norm layers are written out here over transformers' own
    submodules (layer_norm1/2, self_attn's q/k/v/out_proj, mlp), whose names
    its checkpoints fix; the causal attention is torch's SDPA. So the export
    does not depend on how a transformers version collects hidden states;
    check_text_layers compares the result with transformers' on ids.

    SDXL (raw=True): every layer's hidden state as it is, without the final
    norm (SDXL reads the layer before the last so); with projection (the
    second encoder's text_projection), one more layer follows: the final
    norm of the last layer, projected, at every position, whose row at the
    end of text is CLIP's pooled, projected output (text_embeds).
    [layers(+1),B,L,H]; the projection must keep the width (ViT-bigG's
    1280 -> 1280)."""

    def __init__(self, clip, raw=False, projection=None):
        super().__init__()
        tm = clip_text_model(clip)
        self.pos = torch.nn.Parameter(tm.embeddings.position_embedding.weight.detach().clone(), requires_grad=False)
        self.layers = tm.encoder.layers
        self.norm = tm.final_layer_norm
        self.heads = clip.config.num_attention_heads
        self.raw = raw
        self.projection = projection

    def attention(self, attn, h):
        B, L, H = h.shape
        d = H // self.heads

        def split(t):
            return t.reshape(B, L, self.heads, d).transpose(1, 2)

        q, k, v = split(attn.q_proj(h)), split(attn.k_proj(h)), split(attn.v_proj(h))
        if hasattr(torch.nn.functional, "scaled_dot_product_attention"):
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:   # torch 1.13: the same, written out
            mask = torch.full((L, L), torch.finfo(h.dtype).min, dtype=h.dtype, device=h.device).triu(1)
            o = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5 + mask, dim=-1) @ v
        return attn.out_proj(o.transpose(1, 2).reshape(B, L, H))

    def forward(self, x):
        h = x + self.pos[: x.shape[1]].unsqueeze(0).to(x.dtype)
        outs = []
        for layer in self.layers:
            h = h + self.attention(layer.self_attn, layer.layer_norm1(h))
            h = h + layer.mlp(layer.layer_norm2(h))
            outs.append(h if self.raw else self.norm(h))
        if self.projection is not None:
            outs.append(self.projection(self.norm(h)))
        return torch.stack(outs)


def first_eos(ids, eos_id):
    """Per row of ids [B,L], the position of the first end of text (CLIP pools there)."""
    hit = (ids == eos_id).int()
    return hit.argmax(dim=-1)


def check_text_layers(text, layers_ts, ids, tol, xl=False, eos_id=None, what="text_encoder"):
    """The exported encoder on looked-up embeddings against transformers' own
    on ids: the last layer and clip skip 2 (hidden_states[-2], then the norm);
    SDXL's (xl): the raw layer before the last, and the second encoder's
    pooled, projected output at the end of text."""
    with torch.no_grad():
        out = text(ids, output_hidden_states=True, return_dict=True)
        got = layers_ts(clip_text_model(text).embeddings.token_embedding(ids)).float()
    n = len(out.hidden_states) - 1
    if xl:
        cases = [("penultimate layer", got[n - 2], out.hidden_states[-2].float())]
        if hasattr(out, "text_embeds"):
            rows = torch.arange(ids.shape[0], device=ids.device)
            cases.append(("pooled", got[n][rows, first_eos(ids, eos_id)], out.text_embeds.float()))
    else:
        cases = [("last layer", got[-1], out.last_hidden_state.float()),
                 ("clip skip 2", got[-2], clip_text_model(text).final_layer_norm(out.hidden_states[-2]).float())]
    for name, g, w in cases:
        err = (g - w).abs().max().item()
        print(f"export_sd: {what} {name}: vs transformers on ids max |diff| {err:.3g}", file=sys.stderr)
        if not (err <= tol * max(w.abs().max().item(), 1.0)):
            die(f"{what}: {name} differs from transformers' (max |diff| {err:.3g}); bundle not written")


class UNet(torch.nn.Module):
    """(x [B,C,h,w], t [B] float32, emb [B,L,H]) -> eps or v [B,C,h,w].
    channels_last: the convolutions run on NHWC activations (cuDNN's native
    layout for fp16 on tensor cores); what goes in and out stays NCHW, the
    layout sdmorph's tensors have."""

    def __init__(self, unet, channels_last=False):
        super().__init__()
        self.unet = unet
        self.channels_last = channels_last

    def forward(self, x, t, emb):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.unet(x, t, encoder_hidden_states=emb, return_dict=False)[0]
        return out.contiguous() if self.channels_last else out


class UNetXL(UNet):
    """SDXL's: (x, t, emb [B,L,2048], pooled [B,1280], time_ids [B,6]) -> eps
    or v, the added conditioning passed as diffusers' pipeline passes it."""

    def forward(self, x, t, emb, pooled, time_ids):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.unet(x, t, encoder_hidden_states=emb, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids},
                        return_dict=False)[0]
        return out.contiguous() if self.channels_last else out


def unet_module(unet, channels_last=False):
    """The UNet's wrapper: SDXL's takes the added conditioning too."""
    xl = getattr(unet.config, "addition_embed_type", None) == "text_time"
    return (UNetXL if xl else UNet)(unet, channels_last)


class VAEDecoder(torch.nn.Module):
    """latents / scaling_factor [B,C,h,w] -> image [B,3,8h,8w] in about [-1,1];
    channels_last as in UNet."""

    def __init__(self, vae, channels_last=False):
        super().__init__()
        self.vae = vae
        self.channels_last = channels_last

    def forward(self, z):
        if self.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        out = self.vae.decode(z, return_dict=False)[0]
        return out.contiguous() if self.channels_last else out


class VAEEncoder(torch.nn.Module):
    """image [B,3,8h,8w] in [-1,1] -> the latent distribution's moments
    [B,2C,h,w] (mean, then logvar; unscaled), as diffusers'
    AutoencoderKL.encode(x).latent_dist.parameters: sdmorph draws the
    latent from them with the frame's generator, as image-to-image does."""

    def __init__(self, vae, channels_last=False):
        super().__init__()
        self.vae = vae
        self.channels_last = channels_last

    def forward(self, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.vae.encoder(x)
        quant = getattr(self.vae, "quant_conv", None)
        if quant is not None:
            h = quant(h)
        return h.contiguous()


class StaticHeadsAttention:
    """Attention as diffusers' AttnProcessor2_0 computes it for Stable
    Diffusion, but with the head size a Python int. Traced, diffusers'
    `key.shape[-1] // heads` becomes arithmetic on a device tensor whose
    int() waits for the GPU in every attention call: a stall per layer, and
    a sampling loop that cannot be captured as a CUDA graph."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        if attention_mask is not None or attn.spatial_norm is not None or attn.norm_q is not None \
                or attn.norm_k is not None:
            die("this checkpoint's attention uses masks or extra norms, which the export does not handle")
        residual = hidden_states
        spatial = hidden_states.ndim == 4
        if spatial:
            shape = hidden_states.shape
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        heads = attn.heads
        head_dim = attn.to_k.out_features // heads
        q = attn.to_q(hidden_states).unflatten(-1, (heads, head_dim)).transpose(1, 2)
        k = attn.to_k(context).unflatten(-1, (heads, head_dim)).transpose(1, 2)
        v = attn.to_v(context).unflatten(-1, (heads, head_dim)).transpose(1, 2)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).flatten(2).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if spatial:
            out = out.transpose(1, 2).reshape(shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def shares_storage_free(sd):
    """The tensors with no two sharing memory (safetensors refuses shared ones)."""
    seen, out = set(), {}
    for k, v in sd.items():
        storage = v.untyped_storage() if hasattr(v, "untyped_storage") else v.storage()
        key = (storage.data_ptr(), v.storage_offset())
        out[k] = v.clone().contiguous() if storage.data_ptr() in seen else v.contiguous()
        seen.add(key[0])
    return out


def load_single_file(args, tmp):
    """A .safetensors/.ckpt checkpoint through diffusers' from_single_file,
    offline. Returns the pipeline, the tokenizer folder and the pad token."""
    path = args.checkpoint
    try:
        sd = ckpt.load_state_dict(path)
        family = ckpt.detect_family(sd, path)
        tok_dir = ckpt.find_tokenizer(args.tokenizer, args.config)
        cfg = args.config or ckpt.write_config_dir(os.path.join(tmp, "config"), family, tok_dir, args.prediction,
                                                   args.image_size)
    except ckpt.CheckpointError as e:
        die(str(e))
    src = path
    nested = ckpt.nest_text_model(sd)
    if nested:
        print(f"export_sd: {path}: the text encoder's {nested} keys put back under text_model. "
              "(a file written with transformers >= 5.6)", file=sys.stderr)
    if nested or not path.endswith(".safetensors"):
        # diffusers reads the file itself: give it the tensors read (and renamed) here
        from safetensors.torch import save_file
        src = os.path.join(tmp, "checkpoint.safetensors")
        save_file(shares_storage_free(sd), src)
    del sd
    from diffusers import StableDiffusionPipeline

    print(f"export_sd: {path}: {family}; converting with diffusers' from_single_file (configs: {cfg})",
          file=sys.stderr)
    if family == "sdxl":
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline.from_single_file(src, config=cfg, local_files_only=True,
                                                          torch_dtype=torch.float32)
    else:
        pipe = StableDiffusionPipeline.from_single_file(src, config=cfg, local_files_only=True, safety_checker=None,
                                                        feature_extractor=None, requires_safety_checker=False,
                                                        torch_dtype=torch.float32)
    if src != path:
        os.remove(src)
    pads = [read_pad_token(os.path.join(cfg, "tokenizer"))]
    if family == "sdxl":
        pads.append(read_pad_token(os.path.join(cfg, "tokenizer_2")))
    return pipe, cfg, tok_dir, pads


def load_vae_file(path, cfg_dir):
    """An A1111-style VAE file (LDM keys: encoder.*, decoder.*, quant_conv),
    or a diffusers AutoencoderKL's weights."""
    from diffusers import AutoencoderKL

    try:
        sd = ckpt.load_state_dict(path)
    except ckpt.CheckpointError as e:
        die(str(e))
    if any(k.startswith("decoder.up_blocks.") for k in sd):
        vae = AutoencoderKL(**AutoencoderKL.load_config(os.path.join(cfg_dir, "vae")))
        missing, unexpected = vae.load_state_dict(sd, strict=False)
        if missing or unexpected:
            die(f"{path}: not a VAE of this model ({len(missing)} weights missing, {len(unexpected)} unexpected)")
        return vae
    if not any(k.startswith(("decoder.conv_in", "first_stage_model.decoder", "vae.decoder")) for k in sd):
        die(f"{path} does not look like a VAE (no decoder weights)")
    return AutoencoderKL.from_single_file(sd, config=cfg_dir, subfolder="vae", local_files_only=True,
                                          torch_dtype=torch.float32)


def source_record(args, loras):
    """model.yaml's source: section (what the bundle was exported from)."""
    rec = {"exporter": EXPORTER}
    if args.random_weights:
        rec["checkpoint"] = f"random weights of {os.path.basename(os.path.normpath(args.random_weights))} " \
                            f"(seed {args.seed})"
    elif os.path.isfile(args.checkpoint):
        print(f"export_sd: hashing {args.checkpoint} ...", file=sys.stderr)
        rec["checkpoint"] = os.path.basename(args.checkpoint)
        rec["checkpoint_sha256"] = ckpt.sha256_file(args.checkpoint)
    else:
        rec["checkpoint"] = args.checkpoint if not os.path.isdir(args.checkpoint) else \
            os.path.basename(os.path.normpath(args.checkpoint))
    if args.vae:
        rec["vae"] = os.path.basename(args.vae)
        rec["vae_sha256"] = ckpt.sha256_file(args.vae)
    rec["loras"] = [dict(file=os.path.basename(p), scale=s, sha256=ckpt.sha256_file(p)) for p, s in loras]
    return rec


def load_folder(src):
    """A diffusers checkpoint folder or hub id: (unet, vae, texts, sched,
    tok_dir, pads); texts and pads have a second entry for SDXL."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(src, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(src, subfolder="vae")
    texts = [CLIPTextModel.from_pretrained(src, subfolder="text_encoder")]
    xl = getattr(unet.config, "addition_embed_type", None) == "text_time"
    if xl:
        from transformers import CLIPTextModelWithProjection

        texts.append(CLIPTextModelWithProjection.from_pretrained(src, subfolder="text_encoder_2"))
    tok_dirs = ["tokenizer", "tokenizer_2"][:len(texts)]
    if os.path.isdir(src):
        sched = json.load(open(os.path.join(src, "scheduler", "scheduler_config.json")))
        dirs = [os.path.join(src, d) for d in tok_dirs]
    else:
        from huggingface_hub import hf_hub_download
        sched = json.load(open(hf_hub_download(src, "scheduler/scheduler_config.json")))
        dirs = []
        for d in tok_dirs:
            dirs.append(os.path.dirname(hf_hub_download(src, f"{d}/vocab.json")))
            hf_hub_download(src, f"{d}/merges.txt")
            try:
                hf_hub_download(src, f"{d}/special_tokens_map.json")
            except Exception:
                pass
    return unet, vae, texts, sched, dirs[0], [read_pad_token(d) for d in dirs]


def load_components(args, tmp):
    """(unet, vae, texts, sched, tok_dir, pads, force_zeros): SD's one text
    encoder and pad token, SDXL's two each; force_zeros: an empty negative
    prompt is zeros (model_index.json's; None where not said)."""
    cfg_dir, force_zeros = None, None
    if args.checkpoint and args.checkpoint.endswith(SINGLE_FILE_EXT):
        # before diffusers is imported: a refused .ckpt needs nothing but torch
        pipe, cfg_dir, tok_dir, pads = load_single_file(args, tmp)
        unet, vae = pipe.unet, pipe.vae
        texts = [pipe.text_encoder] + ([pipe.text_encoder_2] if getattr(pipe, "text_encoder_2", None) else [])
        sched = dict(pipe.scheduler.config, _class_name=type(pipe.scheduler).__name__)
        force_zeros = random_weights.force_zeros_for_empty_prompt(cfg_dir)
        del pipe
    elif args.random_weights:
        unet, vae, texts, sched = random_weights.build(args.random_weights, args.seed, args.device_name)
        if args.image_size:
            unet.register_to_config(sample_size=args.image_size // 8)
        force_zeros = random_weights.force_zeros_for_empty_prompt(args.random_weights)
        tok_dir = args.tokenizer
        if not tok_dir:
            die("--random-weights needs --tokenizer DIR with CLIP's vocab.json and merges.txt")
        # SDXL's second tokenizer pads with "!"
        pads = ["<|endoftext|>", "!"][:len(texts)]
        if args.save_diffusers:
            save_diffusers(args.save_diffusers, unet, vae, texts, sched, tok_dir, pads, force_zeros)
    else:
        unet, vae, texts, sched, tok_dir, pads = load_folder(args.checkpoint)
        if os.path.isdir(args.checkpoint):
            force_zeros = random_weights.force_zeros_for_empty_prompt(args.checkpoint)
    for f in ("vocab.json", "merges.txt"):
        if not os.path.isfile(os.path.join(tok_dir, f)):
            die(f"tokenizer file missing: {os.path.join(tok_dir, f)}")
    if args.vae:
        if cfg_dir is None and args.checkpoint and os.path.isdir(args.checkpoint):
            cfg_dir = args.checkpoint
        if cfg_dir is None:
            family = "sdxl" if len(texts) > 1 else "sd1"
            cfg_dir = args.config or ckpt.write_config_dir(os.path.join(tmp, "config"), family, tok_dir)
        vae = load_vae_file(args.vae, cfg_dir)
    for path, scale in args.loras:
        try:
            n = lora_mod.fuse(path, scale, unet, *texts)
        except ckpt.CheckpointError as e:
            die(str(e))
        print(f"export_sd: LoRA {path} fused at scale {scale:g} ({n} layers)", file=sys.stderr)
    return unet.eval(), vae.eval(), [t.eval() for t in texts], sched, tok_dir, pads, force_zeros


def read_pad_token(tok_dir):
    """SD 1.x pads with <|endoftext|>; SD 2.x's tokenizer says "!" (id 0)."""
    path = os.path.join(tok_dir, "special_tokens_map.json")
    if os.path.isfile(path):
        pad = json.load(open(path)).get("pad_token", "<|endoftext|>")
        return pad["content"] if isinstance(pad, dict) else pad
    return "<|endoftext|>"


def save_diffusers(out, unet, vae, texts, sched, tok_dir, pads, force_zeros=None):
    os.makedirs(out, exist_ok=True)
    unet.save_pretrained(os.path.join(out, "unet"))
    vae.save_pretrained(os.path.join(out, "vae"))
    for i, text in enumerate(texts):
        text.save_pretrained(os.path.join(out, "text_encoder_2" if i else "text_encoder"))
    os.makedirs(os.path.join(out, "scheduler"), exist_ok=True)
    # the checkpoint's own scheduler class: diffusers' default pipeline is what `sampler: auto` renders
    json.dump(dict(sched, _class_name=sched.get("_class_name", "PNDMScheduler")),
              open(os.path.join(out, "scheduler", "scheduler_config.json"), "w"), indent=1)
    for i, pad in enumerate(pads):
        tdir = os.path.join(out, "tokenizer_2" if i else "tokenizer")
        os.makedirs(tdir, exist_ok=True)
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(tok_dir, f), os.path.join(tdir, f))
        if i:
            json.dump({"pad_token": pad}, open(os.path.join(tdir, "special_tokens_map.json"), "w"))
    if len(texts) > 1:
        json.dump({"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": bool(force_zeros)},
                  open(os.path.join(out, "model_index.json"), "w"), indent=1)


def trace_checked(name, module, inputs, tol, reference=None):
    """Traces and freezes; refuses a traced module whose output differs from
    the eager one (or from `reference`, diffusers' own output)."""
    with torch.inference_mode(False), torch.no_grad():
        eager = module(*inputs) if reference is None else reference
        traced = torch.jit.trace(module, inputs, check_trace=False)
        traced = torch.jit.freeze(traced.eval())
        # the second run is the one that uses the optimized, frozen graph
        traced(*inputs)
        got = traced(*inputs)
    err = (got.float() - eager.float()).abs().max().item()
    scale = eager.float().abs().max().item()
    print(f"export_sd: {name}: traced vs eager max |diff| {err:.3g} (output max {scale:.3g})", file=sys.stderr)
    if not (err <= tol * max(scale, 1.0)):
        die(f"{name}: traced module differs from the eager one (max |diff| {err:.3g}); bundle not written")
    return traced


def check_capturable(name, traced, inputs):
    """sdmorph replays its sampling loop as a CUDA graph: say so if this
    module cannot be captured (it then runs step by step, slower)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    try:
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(3):
                traced(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            traced(*inputs)
        graph.replay()
        torch.cuda.synchronize()
        print(f"export_sd: {name}: captures as a CUDA graph", file=sys.stderr)
    except RuntimeError as e:
        print(f"export_sd: warning: {name} cannot be captured as a CUDA graph ({str(e).splitlines()[0]}); "
              "sdmorph will run it step by step", file=sys.stderr)


class Ticker:
    """Prints how long a long step has been running, every `every` seconds."""

    def __init__(self, what, every=30.0):
        self.what, self.every, self.t0 = what, every, time.time()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.done.wait(self.every):
            print(f"export_sd: {self.what}: {time.time() - self.t0:.0f} s", file=sys.stderr, flush=True)

    def __enter__(self):
        print(f"export_sd: {self.what} ...", file=sys.stderr, flush=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.seconds = time.time() - self.t0


def batch_range(ep, want):
    """The batch range the exported program accepts (its one symbolic size)."""
    ranges = list(ep.range_constraints.values())
    if len(ranges) != 1:
        return want
    try:
        return int(ranges[0].lower), int(ranges[0].upper)
    except (TypeError, ValueError):
        return want


# Runs a .pt2 on saved inputs in a child process and prints one JSON line
# per batch. A child, because torch 2.11's Python package loader
# (aoti_load_package) was seen to crash (SIGSEGV) on the SD 1.5 package
# that the C++ loader sdmorph uses runs; the loader is called here the way
# sdmorph calls it (single-threaded runner, explicit device).
CHECK_CHILD = r"""
import json, sys, torch
path, data, device = sys.argv[1], sys.argv[2], int(sys.argv[3])
cases = torch.load(data)
loader = torch._C._aoti.AOTIModelPackageLoader(path, "model", True, 1, device)
run = loader.run if hasattr(loader, "run") else loader.boxed_run
with torch.no_grad():
    for b, (inputs, eager) in sorted(cases.items()):
        dev = torch.device("cuda", device)
        got = run([x.to(dev) for x in inputs])[0]
        err = (got.float().cpu() - eager.float()).abs().max().item()
        print(json.dumps({"batch": b, "err": err, "scale": eager.float().abs().max().item(),
                          "shape": list(got.shape)}), flush=True)
"""


class AotiFailed(Exception):
    """An AOTInductor build that could not be made or does not agree."""


def aoti_check(name, module, make_inputs, path, lo, hi, tol, tmp):
    """The package against the eager module at batches lo, 2, 6 and hi
    (make_inputs(b, generator) -> inputs). Returns the smallest batch it may
    be used for (2 where batch 1 alone is wrong), or None where it could not
    be run at all in Python."""
    import json
    import subprocess

    g = torch.Generator().manual_seed(1)
    cases = {}
    with torch.no_grad():
        for b in sorted({lo, 2, 6, hi} & set(range(lo, hi + 1))):
            inputs = make_inputs(b, g)
            cases[b] = ([x.cpu() for x in inputs], module(*inputs).cpu())
    data = os.path.join(tmp, "check.pt")
    torch.save(cases, data)
    device = inputs[0].device.index if inputs[0].device.index is not None else torch.cuda.current_device()
    with Ticker(f"loading {name} back and running it against the eager module") as tk:
        r = subprocess.run([sys.executable, "-c", CHECK_CHILD, path, data, str(device)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=1800)
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    if r.returncode < 0 and not results:
        print(f"export_sd: WARNING: the process that loads {name} back died (signal {-r.returncode}) "
              f"before running it", file=sys.stderr)
        return None
    if r.returncode != 0 or len(results) != len(cases):
        tail = "\n".join(r.stderr.strip().splitlines()[-15:])
        raise AotiFailed(f"{name} could not be run back (exit status {r.returncode}):\n{tail}")
    min_ok = lo
    for res in results:
        b, err, scale = res["batch"], res["err"], res["scale"]
        print(f"export_sd: {name} batch {b}: vs eager max |diff| {err:.3g} (output max {scale:.3g})",
              file=sys.stderr)
        if res["shape"][0] != b:
            raise AotiFailed(f"{name} gives {res['shape']} for batch {b}")
        if not (err <= tol * max(scale, 1.0)):
            if b == 1 and hi >= 2:
                print(f"export_sd: batch 1 is off: {name} is named for batches from 2", file=sys.stderr)
                min_ok = 2
                continue
            raise AotiFailed(f"{name} differs from the eager module at batch {b} (max |diff| {err:.3g})")
    print(f"export_sd: checked in {tk.seconds:.1f} s", file=sys.stderr)
    return min_ok


def attention_kernels(path):
    """The SDPA kernels a .pt2 package calls (from its generated sources)."""
    import re
    import zipfile

    found = set()
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith((".cpp", ".h", ".py", ".json")):
                text = z.read(name).decode("utf-8", "replace")
                found.update(re.findall(r"_scaled_dot_product_(flash|efficient|cudnn|fused)\w*attention", text))
    return ", ".join(sorted(found)) or "none found"


def sdpa_choice(name):
    """A context that makes torch choose SDPA kernel `name` (None: its own pick)."""
    import contextlib

    if not name:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([{"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                         "cudnn": SDPBackend.CUDNN_ATTENTION}[name]])


def aoti_compile_checked(name, module, make_inputs, path, batches, tol, tmp, autotune=False, attention=None):
    """torch.export + AOTInductor of `module` into `path` (a .pt2), checked
    against the eager module. Its inputs (make_inputs(b, generator)) share
    the batch, dimension 0: batches (lo, hi) is the range to compile for, one
    batch where lo == hi; attention: the SDPA kernel to bake in. Returns the
    batch range the package takes and whether the check ran; AotiFailed
    where it cannot be made."""
    import torch._inductor
    from torch.export import Dim, export

    if not hasattr(torch._inductor, "aoti_compile_and_package") or not hasattr(torch._C, "_aoti"):
        raise AotiFailed(f"--aoti needs torch >= 2.6 (this is {torch.__version__})")
    lo, hi = batches
    inputs = make_inputs(lo if lo == hi else 2, torch.Generator().manual_seed(0))
    if lo == hi:
        dynamic = None
    else:
        batch = Dim("batch", min=lo, max=hi)
        dynamic = tuple({0: batch} for _ in inputs)     # the inputs share the batch
    with torch.no_grad(), sdpa_choice(attention):
        with Ticker(f"torch.export of {name}") as tk:
            try:
                ep = export(module, tuple(inputs), dynamic_shapes=dynamic)
            except Exception as e:
                msg = "\n".join(str(e).strip().splitlines()[:12])
                raise AotiFailed(f"torch.export refused {name} with batch {lo}..{hi} ({type(e).__name__}):\n{msg}\n"
                                 f"(a constraint error suggests a smaller --aoti-max-batch)")
        print(f"export_sd: exported in {tk.seconds:.1f} s", file=sys.stderr)
        if lo != hi:
            lo, hi = batch_range(ep, (lo, hi))
        # freezing: weights become constants (folded, convolutions laid out
        # for the GPU); max_autotune (--aoti-autotune) times Triton kernels
        # against the library ones: maybe faster, but the compile then takes
        # many times longer. Convolutions stay with cuDNN (bench/unet_profile.py
        # saw them at about 75% of the fp16 peak): timing Triton ones for
        # each of them would only add compile time.
        configs = {"freezing": True, "max_autotune": bool(autotune)}
        if autotune and hasattr(torch._inductor.config, "max_autotune_conv_backends"):
            configs["max_autotune_conv_backends"] = "ATEN"
        with Ticker(f"AOTInductor compile of {name} (minutes)") as tk:
            try:
                torch._inductor.aoti_compile_and_package(ep, package_path=path, inductor_configs=configs)
            except Exception as e:
                msg = "\n".join(str(e).strip().splitlines()[:12])
                raise AotiFailed(f"AOTInductor could not compile {name} ({type(e).__name__}):\n{msg}")
        print(f"export_sd: AOTInductor compile took {tk.seconds:.1f} s; attention kernel: {attention_kernels(path)}",
              file=sys.stderr)
    del ep
    checked_lo = aoti_check(name, module, make_inputs, path, lo, hi, tol, tmp)
    return (lo if checked_lo is None else checked_lo), hi, checked_lo is not None


def fp8_unet(unet, mode, make_inputs):
    """A copy of the UNet whose attention projections and feed-forward layers
    run FP8 products (fp8_linear.py); static scales from calls on inputs
    like the package's check inputs (their timesteps span the schedule)."""
    def calls(q):
        g = torch.Generator().manual_seed(2)
        module = unet_module(q)
        return [lambda inputs=make_inputs(16, g): module(*inputs) for _ in range(2)]

    q, n = fp8_linear.fp8_copy(unet, mode, calls)
    print(f"export_sd: unet.pt2 gets FP8 products ({mode} scales) in {n} layers", file=sys.stderr)
    return q


# What the VAE decoder is called with at most: sdmorph decodes this many
# frames per call (sdm_decode_chunk in pipeline/engine.c: the same rule).
DECODE_CHUNK = 8


def decode_chunk(latent_h, latent_w, elem_bytes):
    """Frames per VAE call for latents of latent_h x latent_w decoded in a
    dtype of elem_bytes: as many as keep the decoder's activations to those
    of 8 frames at 512x512 in float16 (about 4 GiB), at least 1; SDXL's
    float32 decode at 1024x1024 thus runs a frame at a time."""
    return max(1, min(DECODE_CHUNK, (DECODE_CHUNK * 64 * 64 * 2) // (latent_h * latent_w * elem_bytes)))


def add_aoti(args, unet, vae, unet_in, z, h, w, fields, tol):
    """Compiles unet.pt2 and vae_decoder.pt2 beside the written bundle, then
    names them in model.yaml. A UNet that fails ends the export (status 1;
    the TorchScript bundle stays as written); a VAE decoder that fails is
    left out with a warning. unet_in: the UNet's check inputs (x, t, emb,
    and SDXL's pooled and time ids), whose rows the packages' checks reuse;
    z: the VAE decoder's (its dtype)."""
    x, t = unet_in[0], unet_in[1]
    C = x.shape[1]

    def unet_inputs(b, g):
        rows = torch.arange(b, device=x.device) % unet_in[2].shape[0]
        return (torch.randn(b, C, h, w, generator=g).to(x.device, x.dtype),
                torch.linspace(981.0, 1.0, b).to(t.device, t.dtype),
                *(c[rows].contiguous() for c in unet_in[2:]))

    def vae_inputs(b, g):
        return (torch.randn(b, C, h, w, generator=g).to(z.device, z.dtype),)

    # the decoder's images: four 8-bit levels in fp16 (its group norms at
    # 512x512 add up more rounding than the UNet's), tol in fp32
    vae_tol = 8 / 255 if z.dtype == torch.float16 else tol
    frames = args.aoti_frames
    unet_batches = (2 * frames, 2 * frames) if frames else (1, args.aoti_max_batch)
    if args.aoti_fp8:
        try:
            unet = fp8_unet(unet, args.aoti_fp8, unet_inputs)
        except Exception as e:
            die(f"--aoti-fp8 {args.aoti_fp8}: the FP8 UNet could not be made ({type(e).__name__}: "
                f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})\nunet.pt2 not added; the TorchScript "
                f"bundle is complete")
        fields = dict(fields, comment=fields["comment"] + f"\nunet.pt2: FP8 (e4m3, {args.aoti_fp8} scales) attention "
                      f"projections and feed-forward layers")
    chunk = decode_chunk(h, w, z.element_size())
    vae_batches = (min(frames, chunk),) * 2 if frames else (1, chunk)
    shapes, unchecked = {}, []
    tmp = tempfile.mkdtemp(dir=args.out, prefix=".aoti-")
    try:
        for key, name, module, make_inputs, batches, tolerance in (
                ("aoti", "unet.pt2", unet_module(unet), unet_inputs, unet_batches, tol),
                ("aoti_vae", "vae_decoder.pt2", VAEDecoder(vae), vae_inputs, vae_batches, vae_tol)):
            try:
                lo, hi, checked = aoti_compile_checked(name, module, make_inputs, os.path.join(tmp, name), batches,
                                                       tolerance, tmp, args.aoti_autotune, args.aoti_attention)
            except AotiFailed as e:
                if key == "aoti":
                    die(f"{e}\nunet.pt2 not added; the TorchScript bundle is complete")
                print(f"export_sd: WARNING: {e}\nvae_decoder.pt2 not added", file=sys.stderr)
                continue
            shapes[key] = dict(latent_height=h, latent_width=w, min_batch=lo, max_batch=hi,
                               fp8=args.aoti_fp8 if key == "aoti" else None)
            if not checked:
                unchecked.append(name)
        bundle_yaml.write_model_yaml(tmp, bundle_yaml.model_yaml(**fields, **shapes))
        for key, name in (("aoti", "unet.pt2"), ("aoti_vae", "vae_decoder.pt2")):
            if key in shapes:
                os.replace(os.path.join(tmp, name), os.path.join(args.out, name))
        os.replace(os.path.join(tmp, "model.yaml"), os.path.join(args.out, "model.yaml"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for key, name in (("aoti", "unet.pt2"), ("aoti_vae", "vae_decoder.pt2")):
        if key in shapes:
            print(f"export_sd: {name} added ({h}x{w} latents, batch {shapes[key]['min_batch']}.."
                  f"{shapes[key]['max_batch']})", file=sys.stderr)
    for name in unchecked:
        print(f"export_sd: WARNING: {name} is added UNCHECKED by this script: sdmorph runs it against its "
              f"TorchScript module when it loads it, and uses TorchScript alone if the two differ", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="diffusers checkpoint directory or hub id, or a single-file "
                     "checkpoint (.safetensors, .ckpt)")
    src.add_argument("--random-weights", metavar="CONFIG_DIR", help="SD configs (unet/vae/text_encoder/scheduler_config.json; "
                     "SDXL's also text_encoder_2_config.json and model_index.json)")
    ap.add_argument("--tokenizer", help="directory with CLIP's vocab.json and merges.txt (random weights, "
                    "single files)")
    ap.add_argument("--config", metavar="DIR", help="single files: a diffusers checkpoint folder whose configs "
                    "(and tokenizer) to use instead of the built-in SD 1.x/2.x ones")
    ap.add_argument("--prediction", choices=["epsilon", "v_prediction"],
                    help="single files: the prediction type (default: epsilon for SD 1.x, v_prediction for 2.x)")
    ap.add_argument("--image-size", type=int, metavar="PX",
                    help="single files and random weights: the default image size (default: 512 for SD 1.x, "
                    "768 for 2.x, 1024 for SDXL)")
    ap.add_argument("--vae", metavar="FILE", help="replace the VAE with this file's (A1111-style or diffusers)")
    ap.add_argument("--vae-dtype", choices=["float16", "float32"], default=None,
                    help="what the VAE decoder computes in (default: the bundle's dtype; SDXL's float32 where its "
                    "config says force_upcast, as it overflows in float16: an fp16-fixed VAE, --vae FILE, "
                    "may take float16)")
    ap.add_argument("--lora", action="append", default=[], metavar="FILE[:SCALE]",
                    help="fuse a LoRA (kohya's or diffusers' format; SD or SDXL) at SCALE (default 1); repeatable")
    ap.add_argument("--save-diffusers", metavar="DIR", help="with --random-weights: also save the weights for diffusers")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=["float16", "float32"], default=None, help="default: float16 on CUDA, float32 on CPU")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--seed", type=int, default=0, help="weights seed for --random-weights")
    ap.add_argument("--channels-last", action="store_true",
                    help="trace the UNet and VAE with NHWC convolutions (CUDA; measure with bench/gpu.sh)")
    ap.add_argument("--aoti", action="store_true",
                    help="also compile the UNet and VAE decoder with AOTInductor (unet.pt2, vae_decoder.pt2; CUDA, "
                    "torch >= 2.6)")
    ap.add_argument("--aoti-autotune", action="store_true",
                    help="with --aoti: let Inductor time its kernel choices (slow: more than 6 minutes for SD 1.5 "
                    "on an H100)")
    ap.add_argument("--aoti-max-batch", type=int, default=63, metavar="N",
                    help="largest UNet batch unet.pt2 takes (a guided batch is 2 per frame; default 63: "
                    "diffusers' Upsample2D branches on batch >= 64, so torch.export refuses a range that "
                    "reaches 64)")
    ap.add_argument("--aoti-frames", type=int, default=0, metavar="N",
                    help="with --aoti: compile for exactly N frames per call (sdmorph's --batch N; a UNet batch "
                    "of 2N with guidance) instead of a batch range; other calls run on TorchScript")
    ap.add_argument("--aoti-attention", choices=["flash", "efficient", "cudnn"], default=None,
                    help="with --aoti: the SDPA kernel the packages call (default: torch's pick on this GPU)")
    ap.add_argument("--aoti-fp8", choices=["tensor", "row", "static"], default=None,
                    help="with --aoti: unet.pt2's attention projections and feed-forward layers run FP8 (e4m3) "
                    "matrix products (Ada/Hopper), their inputs scaled per tensor, per row, or by static scales "
                    "calibrated here; opt-in: its frames differ from the float16 bundle's (the TorchScript "
                    "unet.pt stays float16)")
    args = ap.parse_args()

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype_name = args.dtype or ("float16" if device.type == "cuda" else "float32")
    dtype = getattr(torch, dtype_name)
    if dtype == torch.float16 and device.type != "cuda":
        die("float16 bundles are traced on CUDA; use --dtype float32 on the CPU")
    if args.aoti and device.type != "cuda":
        die("--aoti compiles the UNet for CUDA: use it with --device cuda")
    if args.channels_last and device.type != "cuda":
        die("--channels-last is a layout for CUDA's convolutions: use it with --device cuda")
    if args.aoti_max_batch < 2:
        die("--aoti-max-batch must be at least 2")
    if not 0 <= args.aoti_frames <= 256:
        die("--aoti-frames must be 1..256 (frames per call)")
    if args.aoti_fp8:
        if not args.aoti:
            die("--aoti-fp8 changes the AOTInductor UNet: use it with --aoti")
        why = fp8_linear.supported(device)
        if why:
            die(f"--aoti-fp8: {why}")
    args.loras = [lora_mod.parse_arg(x) for x in args.lora]
    for path in [args.vae] + [p for p, _ in args.loras]:
        if path and not os.path.isfile(path):
            die(f"{path}: no such file")

    # float32 bundles are checked, and later compared, in true float32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    args.device_name = str(device)
    os.makedirs(args.out, exist_ok=True)
    load_tmp = tempfile.mkdtemp(dir=args.out, prefix=".load-")
    try:
        unet, vae, texts, sched, tok_dir, pads, force_zeros = load_components(args, load_tmp)
        source = source_record(args, args.loras)
        # the tokenizer files may be in load_tmp: keep them
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(tok_dir, f), os.path.join(load_tmp, f))
        tok_dir = load_tmp
    except BaseException:
        shutil.rmtree(load_tmp, ignore_errors=True)
        raise
    vocab = json.load(open(os.path.join(tok_dir, "vocab.json"), encoding="utf-8"))
    for t in ("<|startoftext|>", "<|endoftext|>", *pads):
        if t not in vocab:
            die(f"{tok_dir}/vocab.json has no '{t}'")
    export(args, device, dtype_name, unet, vae, texts, sched, tok_dir, load_tmp, vocab, pads, force_zeros, source)


def token_ids(vocab, pads, L, device, g):
    """Two prompts' ids as each text encoder reads them: bos, five words
    (drawn from g), eos, then its own padding."""
    ids = torch.full((2, L), vocab[pads[0]], dtype=torch.int64)
    ids[:, 0] = vocab["<|startoftext|>"]
    ids[:, 1:6] = torch.randint(0, 40000, (2, 5), generator=g)
    ids[:, 6] = vocab["<|endoftext|>"]
    out = [ids.to(device)]
    for pad in pads[1:]:
        other = ids.clone()
        other[:, 7:] = vocab[pad]
        out.append(other.to(device))
    return out


def export_texts(texts, ids, tol, eos_id):
    """The text encoders traced and checked: [(name, traced, table)], and
    the UNet's text inputs from transformers' own modules on ids: emb
    (SD: the last layer; SDXL: both encoders' layer before the last, side
    by side) and SDXL's pooled embedding (None for SD)."""
    xl = len(texts) > 1
    out = []
    for i, (text, tid) in enumerate(zip(texts, ids)):
        name = "text_encoder_2" if i else "text_encoder"
        projection = getattr(text, "text_projection", None) if xl and i == 1 else None
        if projection is not None and projection.out_features != projection.in_features:
            die(f"{name}: its projection changes the width ({projection.in_features} -> {projection.out_features}); "
                f"sdmorph's bundles take the pooled embedding at the encoder's width")
        with torch.no_grad():
            embeds = clip_text_model(text).embeddings.token_embedding(tid).detach()
        traced = trace_checked(name, TextEncoderLayers(text, raw=xl, projection=projection), (embeds,), tol)
        check_text_layers(text, traced, tid, tol, xl=xl, eos_id=eos_id, what=name)
        out.append((name, traced, clip_text_model(text).embeddings.token_embedding.weight.detach()))
    with torch.no_grad():
        if not xl:
            return out, TextEncoder(texts[0])(ids[0]).detach(), None
        runs = [text(tid, output_hidden_states=True, return_dict=True) for text, tid in zip(texts, ids)]
        emb = torch.cat([r.hidden_states[-2] for r in runs], dim=-1).detach()
        return out, emb, runs[1].text_embeds.detach()


def vae_dtype_for(args, vae, xl, dtype):
    """What the VAE decoder computes in: SDXL's decodes in float32 where its
    config says force_upcast (it overflows in float16), unless --vae-dtype says."""
    if args.vae_dtype:
        return getattr(torch, args.vae_dtype)
    if xl and dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        return torch.float32
    return dtype


def export(args, device, dtype_name, unet, vae, texts, sched, tok_dir, load_tmp, vocab, pads, force_zeros, source):
    """Traces, checks and writes the bundle (then --aoti's packages)."""
    dtype = getattr(torch, dtype_name)
    xl = len(texts) > 1
    unet_cfg, vae_cfg, text_cfg = unet.config, vae.config, texts[0].config
    L = text_cfg.max_position_embeddings
    h = w = unet_cfg.sample_size
    C = unet_cfg.in_channels
    vae_scale = 2 ** (len(vae_cfg.block_out_channels) - 1)
    prediction = sched.get("prediction_type", "epsilon")
    if prediction not in ("epsilon", "v_prediction"):
        die(f"prediction_type '{prediction}' is not supported (epsilon or v_prediction)")
    if sched.get("beta_schedule", "linear") not in ("scaled_linear", "linear"):
        die(f"beta_schedule '{sched.get('beta_schedule')}' is not supported")
    vae_dtype = vae_dtype_for(args, vae, xl, dtype)

    unet, vae = unet.to(device, dtype), vae.to(device, vae_dtype)
    texts = [t.to(device, dtype) for t in texts]
    g = torch.Generator().manual_seed(0)
    ids = token_ids(vocab, pads, L, device, g)
    x = torch.randn(2, C, h, w, generator=g).to(device, dtype)
    t = torch.tensor([981.0, 21.0]).to(device)
    tol = 2e-2 if dtype == torch.float16 else 1e-3
    vae_tol = 2e-2 if vae_dtype == torch.float16 else 1e-3

    text_ts, emb, pooled = export_texts(texts, ids, tol, vocab["<|endoftext|>"])
    unet_in = (x, t, emb)
    if xl:
        # time ids: the default image's size, no crop, as diffusers makes them
        tids = torch.tensor([[h * vae_scale, w * vae_scale, 0, 0, h * vae_scale, w * vae_scale]] * 2,
                            dtype=dtype, device=device)
        unet_in = (x, t, emb, pooled, tids)
    with torch.no_grad():
        z = (torch.randn(1, C, h, w, generator=g) / vae_cfg.scaling_factor).to(device, vae_dtype)
        # diffusers' own attention gives the reference outputs
        ref_unet = unet_module(unet)(*unet_in)
        ref_vae = VAEDecoder(vae)(z)
        image = (torch.rand(1, 3, h * vae_scale, w * vae_scale, generator=g) * 2 - 1).to(device, vae_dtype)
        ref_enc = vae.encode(image).latent_dist.parameters
    unet.set_attn_processor(StaticHeadsAttention())
    vae.set_attn_processor(StaticHeadsAttention())
    cl = args.channels_last
    if cl:
        unet, vae = unet.to(memory_format=torch.channels_last), vae.to(memory_format=torch.channels_last)
    unet_ts = trace_checked("unet", unet_module(unet, cl), unet_in, tol, ref_unet)
    vae_ts = trace_checked("vae_decoder", VAEDecoder(vae, cl), (z,), vae_tol, ref_vae)
    enc_ts = trace_checked("vae_encoder", VAEEncoder(vae, cl), (image,), vae_tol, ref_enc)
    if device.type == "cuda":
        check_capturable("unet", unet_ts, unet_in)

    tmp = tempfile.mkdtemp(dir=args.out, prefix=".export-")
    for i, (name, traced, table) in enumerate(text_ts):
        torch.jit.save(traced, os.path.join(tmp, name + ".pt"))
        safetensors_io.write(os.path.join(tmp, "token_embedding_2.safetensors" if i else "token_embedding.safetensors"),
                             {"weight": table})
    torch.jit.save(unet_ts, os.path.join(tmp, "unet.pt"))
    torch.jit.save(vae_ts, os.path.join(tmp, "vae_decoder.pt"))
    torch.jit.save(enc_ts, os.path.join(tmp, "vae_encoder.pt"))
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(tok_dir, f), os.path.join(tmp, f))
    shutil.rmtree(load_tmp, ignore_errors=True)
    family = "sdxl" if xl else "sd2" if text_cfg.hidden_size == 1024 else "sd1"
    layout = " (UNet and VAE convolutions channels_last)" if cl else ""
    text = dict(token_length=L, hidden_size=text_cfg.hidden_size, bos_id=vocab["<|startoftext|>"],
                eos_id=vocab["<|endoftext|>"], pad_id=vocab[pads[0]], layers=text_cfg.num_hidden_layers)
    extra = {}
    if xl:
        text["penultimate"] = True
        extra = dict(text_2=dict(hidden_size=texts[1].config.hidden_size, pad_id=vocab[pads[1]],
                                 layers=texts[1].config.num_hidden_layers, pooled_size=pooled.shape[-1]),
                     force_zeros_for_empty_prompt=True if force_zeros is None else bool(force_zeros))
    vae_dtype_name = str(vae_dtype).replace("torch.", "")
    if vae_dtype_name != dtype_name:
        extra["vae_dtype"] = vae_dtype_name
    fields = dict(
        comment=f"sdmorph model bundle, exported from "
                f"{'random weights' if args.random_weights else args.checkpoint}{layout}",
        family=family, prediction=prediction, dtype=dtype_name, latent_channels=C, vae_scale=vae_scale,
        scaling_factor=vae_cfg.scaling_factor, width=w * vae_scale, height=h * vae_scale, text=text,
        schedule=dict(train_steps=sched.get("num_train_timesteps", 1000), beta_start=sched.get("beta_start", 0.0001),
                      beta_end=sched.get("beta_end", 0.02), beta_schedule=sched.get("beta_schedule", "linear"),
                      steps_offset=sched.get("steps_offset", 0),
                      set_alpha_to_one=bool(sched.get("set_alpha_to_one", True)),
                      **bundle_yaml.scheduler_fields(sched)),
        vae_encoder=True, source=source, **extra)
    bundle_yaml.write_model_yaml(tmp, bundle_yaml.model_yaml(**fields))
    # model.yaml last: it marks a bundle as complete
    for f in sorted(os.listdir(tmp), key=lambda f: f == "model.yaml"):
        os.replace(os.path.join(tmp, f), os.path.join(args.out, f))
    os.rmdir(tmp)
    # packages from an earlier export are of other weights: model.yaml no longer names them
    for stale in ("unet.pt2", "vae_decoder.pt2"):
        if os.path.exists(os.path.join(args.out, stale)):
            os.remove(os.path.join(args.out, stale))
    print(f"export_sd: bundle written to {args.out} ({family}, {prediction}, {dtype_name}"
          f"{', VAE decoder ' + vae_dtype_name if vae_dtype_name != dtype_name else ''})", file=sys.stderr)
    if args.aoti:
        del text_ts, unet_ts, vae_ts, enc_ts
        torch.cuda.empty_cache()
        add_aoti(args, unet, vae, unet_in, z, h, w, fields, tol)


if __name__ == "__main__":
    main()
