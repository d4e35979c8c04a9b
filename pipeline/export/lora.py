"""LoRA files fused into a model's weights: W += scale · (alpha / rank) · up @ down.

Two layouts are read, the ones model sites serve:
- kohya's (sd-scripts, A1111): "lora_unet_<module>.lora_down.weight",
  ".lora_up.weight", ".alpha", where <module> is the diffusers module path
  with "." written "_"; "lora_te_" (or "lora_te1_") for the text encoder;
- diffusers' (PEFT): "unet.<module>.lora_A.weight" / ".lora_B.weight",
  "text_encoder.<module>...", with alpha from the file's
  lora_adapter_metadata (r, lora_alpha, rank_pattern, alpha_pattern,
  use_rslora) or ".alpha" keys, else alpha = rank (scale 1), as diffusers
  reads them.
A linear layer takes up @ down; a convolution (LoCon) up [out, r, 1, 1] @
down [r, in, kh, kw]. Anything else in the file (DoRA, biases, SDXL's
second text encoder, layers the model does not have) is refused by name:
a LoRA half applied is a different model.
"""

import json
import math
import os
import re

import torch

from checkpoint import CheckpointError, load_state_dict


def parse_arg(text):
    """FILE[:SCALE] -> (path, scale); SCALE defaults to 1."""
    path, sep, scale = text.rpartition(":")
    if sep and path:
        try:
            return path, float(scale)
        except ValueError:
            pass
    return text, 1.0


def _metadata(path):
    if not path.endswith(".safetensors"):
        return {}
    try:
        from safetensors import safe_open
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:
        return {}
    raw = meta.get("lora_adapter_metadata")
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise CheckpointError(f"{path}: its lora_adapter_metadata is not JSON") from None


def _layers(model):
    """module path -> Linear/Conv2d of a model."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}


def _pattern_value(patterns, name, default):
    """PEFT's rank_pattern/alpha_pattern lookup: a key matches a module path that ends with it."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def _delta(up, down, shape):
    up, down = up.float(), down.float()
    if len(shape) == 4:
        d = up.flatten(1) @ down.flatten(1)
        return d.reshape(shape[0], shape[1], *(down.shape[2:] if down.dim() == 4 else (1, 1)))
    return (up.flatten(1) @ down.flatten(1)).reshape(shape)


def _kohya(sd, path, models):
    """[(model key, module path, up, down, alpha / rank)] and the keys read;
    models: {"unet": m, "text_encoder": m}."""
    lookup = {}
    for key, prefix in (("unet", "lora_unet_"), ("text_encoder", "lora_te_"), ("text_encoder", "lora_te1_")):
        for name in _layers(models[key]):
            lookup[prefix + name.replace(".", "_")] = (key, name)
    out, used = [], set()
    for k in sd:
        if not k.endswith(".lora_down.weight"):
            continue
        base = k[: -len(".lora_down.weight")]
        if base not in lookup:
            raise CheckpointError(f"{path}: LoRA layer '{base}' is not a layer of this model "
                                  "(a LoRA for another model family?)")
        up_key, alpha_key = base + ".lora_up.weight", base + ".alpha"
        if up_key not in sd:
            raise CheckpointError(f"{path}: '{k}' has no '{up_key}'")
        down = sd[k]
        alpha = float(sd[alpha_key].item()) if alpha_key in sd else float(down.shape[0])
        out.append((*lookup[base], sd[up_key], down, alpha / down.shape[0]))
        used.update((k, up_key, alpha_key))
    return out, used


def _diffusers(sd, path, models, meta):
    out, used = [], set()
    layers = {key: _layers(m) for key, m in models.items()}
    for k in sd:
        m = re.match(r"^(unet|text_encoder)\.(.+)\.lora_A(?:\.default)?\.weight$", k)
        if not m:
            continue
        key, name = m.group(1), m.group(2)
        if name not in layers[key]:
            raise CheckpointError(f"{path}: LoRA layer '{key}.{name}' is not a layer of this model")
        up_key = k.replace(".lora_A", ".lora_B")
        if up_key not in sd:
            raise CheckpointError(f"{path}: '{k}' has no '{up_key}'")
        down = sd[k]
        rank = down.shape[0]
        alpha_key = f"{key}.{name}.alpha"
        factor = 1.0    # no alpha anywhere: alpha = rank
        if alpha_key in sd:
            factor = float(sd[alpha_key].item()) / rank
        elif f"{key}.lora_alpha" in meta:
            r = _pattern_value(meta.get(f"{key}.rank_pattern"), name, meta.get(f"{key}.r", rank))
            alpha = _pattern_value(meta.get(f"{key}.alpha_pattern"), name, meta[f"{key}.lora_alpha"])
            if r != rank:
                raise CheckpointError(f"{path}: '{k}' has rank {rank}, its metadata says {r}")
            # PEFT's scaling: alpha / r, or alpha / sqrt(r) with rsLoRA
            factor = alpha / (math.sqrt(rank) if meta.get(f"{key}.use_rslora") else rank)
        out.append((key, name, sd[up_key], down, factor))
        used.update((k, up_key, alpha_key))
    return out, used


def fuse(path, scale, unet, text_encoder):
    """Adds the LoRA at `path`, times `scale`, into the models' weights (in
    place). Returns the number of layers it changed."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such LoRA file")
    sd = load_state_dict(path)
    models = {"unet": unet, "text_encoder": text_encoder}
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in sd):
        if any(k.startswith("lora_te2_") for k in sd):
            raise CheckpointError(f"{path} is an SDXL LoRA (it has lora_te2_ layers)")
        layers, used = _kohya(sd, path, models)
    else:
        layers, used = _diffusers(sd, path, models, _metadata(path))
    rest = sorted(set(sd) - used)
    if rest:
        raise CheckpointError(f"{path}: {len(rest)} tensors are not LoRA layers read here (first: '{rest[0]}'; "
                              "DoRA, LoRA biases and SDXL LoRAs are not fused)")
    if not layers:
        raise CheckpointError(f"{path}: no LoRA layers found")
    modules = {key: _layers(m) for key, m in models.items()}
    with torch.no_grad():
        for key, name, up, down, factor in layers:
            w = modules[key][name].weight
            w += (scale * factor * _delta(up, down, w.shape)).to(w.dtype)
    return len(layers)
