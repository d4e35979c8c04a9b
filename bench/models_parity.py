#!/usr/bin/env python3
"""The diffusers side of bench/gpu.sh's models_parity step (issue 19's
must-shows), on the random-weight SD 1.5 weights setup saved
($W/sd15-diffusers), float32; and the SDXL LoRA of its sdxl_lora_parity step:

    models_parity.py make-lora --weights DIR --layout kohya|diffusers --out FILE.safetensors [--seed N]
    models_parity.py make-lora --config DIR --layout kohya-sgm|kohya|diffusers --out FILE.safetensors [--seed N]
    models_parity.py make-embedding --weights DIR --out FILE.safetensors [--vectors N] [--seed N]
    models_parity.py reference --weights DIR --out ref.npy --prompt P [--negative N] [--seed S] [--steps N]
        [--lora FILE --lora-scale X] [--embedding FILE --token NAME] [--clip-skip N]

make-lora: a random rank-4 LoRA over every attention projection of the
UNet's transformer blocks and the text encoder's self-attention, in kohya's
layout (lora_unet_*/lora_te_*, alpha = rank/2) or diffusers' PEFT layout
(unet./text_encoder. lora_A/lora_B, alpha = rank). With --config (SDXL's
configs, ../shared/reference/sdxl; the models made as random_weights.py
makes them, on the GPU where there is one, for their layers' shapes): over
the layers kohya's trainer gives an SDXL LoRA, every linear layer of the
UNet's transformers (attention, feed-forward, proj_in/proj_out: 722) and
both text encoders' self-attention and MLP, as kohya names them
(lora_unet_*, lora_te1_*, lora_te2_*, alpha = rank/2) with the original
(SGM) UNet's block names (kohya-sgm, what kohya's SDXL LoRAs hold) or
diffusers' (kohya), or in PEFT's layout (unet./text_encoder./text_encoder_2.).
make-embedding: a random textual-inversion embedding [N, 768] ("emb_params"),
as kohya's trainer and A1111 write them.
reference: diffusers' StableDiffusionPipeline, DDIM, guidance 7.5, with
sdmorph's initial noise (float32 CPU draw of --seed), and where asked
load_lora_weights + fuse_lora(lora_scale), load_textual_inversion(token),
clip_skip = A1111's clip skip - 1 (diffusers counts one less); writes the
uint8 RGB image [512,512,3].
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pipeline", "export"))
import random_weights  # noqa: E402
import safetensors_io  # noqa: E402


def attention_layers(weights):
    """(prefix, module path, in, out) of the layers a LoRA touches."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(weights, subfolder="unet")
    text = CLIPTextModel.from_pretrained(weights, subfolder="text_encoder")
    out = []
    for name, m in unet.named_modules():
        attention = name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") or name.endswith(".to_out.0")
        if isinstance(m, torch.nn.Linear) and ".transformer_blocks." in name and attention:
            out.append(("unet", name, m.in_features, m.out_features))
    for name, m in text.named_modules():
        if isinstance(m, torch.nn.Linear) and ".self_attn." in name:
            out.append(("text_encoder", name, m.in_features, m.out_features))
    return out


def xl_layers(config):
    """(prefix, module path, in, out) of kohya's SDXL LoRA layers, and the UNet's layers_per_block."""
    unet, _, texts, _ = random_weights.build(config, 0, "cuda" if torch.cuda.is_available() else None)
    out = []
    for name, m in unet.named_modules():
        in_transformer = ".transformer_blocks." in name or name.endswith((".proj_in", ".proj_out"))
        if isinstance(m, torch.nn.Linear) and ".attentions." in name and in_transformer:
            out.append(("unet", name, m.in_features, m.out_features))
    n_unet = len(out)
    for key, text in zip(("text_encoder", "text_encoder_2"), texts):
        for name, m in text.named_modules():
            if isinstance(m, torch.nn.Linear) and (".self_attn." in name or ".mlp." in name):
                out.append((key, name, m.in_features, m.out_features))
    print(f"SDXL LoRA layers: {n_unet} of the UNet, {len(out) - n_unet} of the text encoders", file=sys.stderr)
    return out, getattr(unet.config, "layers_per_block", 2)


def sgm_name(path, layers_per_block):
    """diffusers' path of a layer in an attention of the UNet -> its name in
    the original (SGM) UNet, "_"-spelled, as kohya's SDXL LoRAs name it:
    input block 1 + level * (layers_per_block + 1) + j, output block
    level * (layers_per_block + 1) + j, the attention at [1] of its block."""
    p = path.split(".")
    per_level = layers_per_block + 1
    if p[0] == "mid_block" and p[1:3] == ["attentions", "0"]:
        return "_".join(["middle_block", "1"] + p[3:])
    if p[0] in ("down_blocks", "up_blocks") and p[2] == "attentions":
        level, j = int(p[1]), int(p[3])
        head = ["input_blocks", str(1 + level * per_level + j)] if p[0] == "down_blocks" else \
            ["output_blocks", str(level * per_level + j)]
        return "_".join(head + ["1"] + p[4:])
    raise ValueError(f"{path}: not a layer of the UNet's attentions")


def make_lora(a):
    g = torch.Generator().manual_seed(a.seed)
    r, sd = 4, {}
    if a.config:
        layers, per_level = xl_layers(a.config)
        te = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
    else:
        layers, te = attention_layers(a.weights), {"unet": "lora_unet_", "text_encoder": "lora_te_"}
    for key, name, n_in, n_out in layers:
        # small enough to keep the picture, large enough to change it
        down = torch.randn(r, n_in, generator=g) / n_in ** 0.5
        up = torch.randn(n_out, r, generator=g) * 0.05
        if a.layout in ("kohya", "kohya-sgm"):
            module = sgm_name(name, per_level) if a.layout == "kohya-sgm" and key == "unet" else name.replace(".", "_")
            base = te[key] + module
            sd[base + ".lora_down.weight"], sd[base + ".lora_up.weight"] = down, up
            sd[base + ".alpha"] = torch.tensor(r / 2.0)
        else:
            sd[f"{key}.{name}.lora_A.weight"], sd[f"{key}.{name}.lora_B.weight"] = down, up
    safetensors_io.write(a.out, sd)
    n = len(sd) // (3 if a.layout.startswith("kohya") else 2)
    print(f"{a.out}: {a.layout} LoRA over {n} layers", file=sys.stderr)


def make_embedding(a):
    from transformers import CLIPTextModel
    text = CLIPTextModel.from_pretrained(a.weights, subfolder="text_encoder")
    table = text.get_input_embeddings().weight.detach()
    g = torch.Generator().manual_seed(a.seed)
    # the size of real token embeddings, so the encoder sees ordinary inputs
    v = torch.randn(a.vectors, table.shape[1], generator=g) * table.std()
    safetensors_io.write(a.out, {"emb_params": v})
    print(f"{a.out}: {a.vectors} vectors of {table.shape[1]}", file=sys.stderr)


def alias_text_model(te):
    """diffusers' encode_prompt(clip_skip=...) reaches the final layer norm
    through CLIPTextModel.text_model, which the GPU machine's transformers
    no longer has (the parts are the model's own attributes, as
    export_sd.clip_text_model reads them): the model stands in for it,
    as a plain attribute (not a submodule, which would make a cycle)."""
    if not hasattr(te, "text_model"):
        object.__setattr__(te, "text_model", te)


def reference(a):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    w = a.weights
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(w, subfolder="vae"), text_encoder=CLIPTextModel.from_pretrained(
            w, subfolder="text_encoder"), tokenizer=CLIPTokenizer(f"{w}/tokenizer/vocab.json",
                                                                  f"{w}/tokenizer/merges.txt", model_max_length=77),
        unet=UNet2DConditionModel.from_pretrained(w, subfolder="unet"),
        scheduler=DDIMScheduler.from_pretrained(w, subfolder="scheduler"), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    alias_text_model(pipe.text_encoder)
    if a.lora:
        try:
            import peft  # noqa: F401  (diffusers' LoRA loading needs it)
        except ImportError:
            print("* SKIPPED: diffusers' load_lora_weights needs peft on PYTHONPATH (its source: "
                  "github:huggingface/peft, src/peft)")
            return 3
        pipe.load_lora_weights(a.lora)
        pipe.fuse_lora(lora_scale=a.lora_scale)
        print(f"* diffusers: load_lora_weights({os.path.basename(a.lora)}) + fuse_lora(lora_scale={a.lora_scale})")
    if a.embedding:
        pipe.load_textual_inversion(a.embedding, token=a.token)
        print(f"* diffusers: load_textual_inversion({os.path.basename(a.embedding)}, token={a.token!r})")
    texts = dict(prompt=a.prompt, negative_prompt=a.negative)
    if a.clip_skip > 1:
        # diffusers' pipeline skips layers for the prompt only; A1111 (and
        # sdmorph) for the negative too: both encoded by encode_prompt here
        cs = a.clip_skip - 1
        pe = pipe.encode_prompt(a.prompt, "cuda", 1, False, clip_skip=cs)[0]
        ne = pipe.encode_prompt(a.negative, "cuda", 1, False, clip_skip=cs)[0]
        texts = dict(prompt_embeds=pe, negative_prompt_embeds=ne)
        print(f"* diffusers: encode_prompt(clip_skip={cs}) for the prompt and the negative "
              f"(A1111's and sdmorph's clip skip {a.clip_skip})")
    latents = torch.randn((1, 4, 64, 64), generator=torch.Generator().manual_seed(a.seed)).to("cuda")
    img = pipe(num_inference_steps=a.steps, guidance_scale=7.5, latents=latents, output_type="np",
               **texts).images[0]
    np.save(a.out, (img * 255).round().astype(np.uint8))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["make-lora", "make-embedding", "reference"])
    ap.add_argument("--weights", help="the SD 1.5 diffusers folder (make-lora without --config, the others)")
    ap.add_argument("--config", help="make-lora: SDXL's configs (random_weights.py), instead of --weights")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--layout", choices=["kohya", "kohya-sgm", "diffusers"], default="kohya",
                    help="kohya-sgm (SDXL, --config): kohya's names of the original UNet's blocks")
    ap.add_argument("--vectors", type=int, default=2)
    ap.add_argument("--prompt", default="")
    ap.add_argument("--negative", default="")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lora")
    ap.add_argument("--lora-scale", type=float, default=1.0)
    ap.add_argument("--embedding")
    ap.add_argument("--token")
    ap.add_argument("--clip-skip", type=int, default=1)
    a = ap.parse_args()
    if not a.weights and not (a.mode == "make-lora" and a.config):
        ap.error("--weights DIR is needed (make-lora: or --config DIR, SDXL's)")
    if a.layout == "kohya-sgm" and not a.config:
        ap.error("--layout kohya-sgm is SDXL's: give --config DIR")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        return {"make-lora": make_lora, "make-embedding": make_embedding, "reference": reference}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
