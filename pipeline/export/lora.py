"""LoRA files fused into a model's weights: W += scale · (alpha / rank) · up @ down.

SD 1.x/2.x (a UNet and a text encoder) and SDXL (a UNet and two text
encoders: CLIP ViT-L, then OpenCLIP bigG with its projection). Two layouts
are read, the ones model sites serve:
- kohya's (sd-scripts, A1111): "lora_unet_<module>.lora_down.weight",
  ".lora_up.weight", ".alpha", where <module> is the module path with "."
  written "_": diffusers' UNet path (kohya's SD 1.x/2.x LoRAs), or the
  original (SGM) UNet's, input_blocks/middle_block/output_blocks (kohya's
  SDXL LoRAs), mapped here to diffusers' (sgm_to_diffusers); "lora_te_"
  or "lora_te1_" for the (first) text encoder, "lora_te2_" for SDXL's
  second;
- diffusers' (PEFT): "unet.<module>.lora_A.weight" / ".lora_B.weight",
  "text_encoder.<module>...", "text_encoder_2.<module>..." (SDXL), with
  alpha from the file's lora_adapter_metadata (r, lora_alpha, rank_pattern,
  alpha_pattern, use_rslora) or ".alpha" keys, else alpha = rank (scale 1),
  as diffusers reads them.
A linear layer takes up @ down; a convolution (LoCon) up [out, r, 1, 1] @
down [r, in, kh, kw]. Anything else in the file (DoRA, biases, layers the
model does not have, an SDXL LoRA for an SD 1.x/2.x model, two entries for
one layer, shapes that are not the layer's) is refused by name: a LoRA half
applied is a different model.
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
    """module path -> Linear/Conv2d of a model (none for None)."""
    if model is None:
        return {}
    return {n: m for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}


# kohya's SDXL LoRAs name the layers of the original (SGM) UNet, which
# kohya's trainer builds; diffusers' UNet holds the same layers under other
# paths. The mapping follows diffusers' own reading of such files
# (loaders/lora_conversion_utils.py: _maybe_map_sgm_blocks_to_diffusers for
# the block numbers, _convert_unet_lora_key for the names inside a block),
# written here as one function of a name. Names are in kohya's spelling,
# "." as "_" ("input_blocks_4_1_transformer_blocks_0_attn1_to_q").
#
# input_blocks: 0 is conv_in; then per level of the down path its
#   layers_per_block (resnet, attention) pairs, [0] the resnet and [1] the
#   attention, then the downsampler ([0].op), so input block i is level
#   (i - 1) // (layers_per_block + 1), layer (i - 1) % (layers_per_block + 1);
# middle_block: 0 resnet, 1 attention, 2 resnet (no inner index);
# output_blocks: per level of the up path layers_per_block + 1 (resnet,
#   attention) pairs, the level's last one also holding the upsampler (its
#   "conv", after the attention where the level has one);
# in a resnet: in_layers.2 = conv1, emb_layers.1 = time_emb_proj,
#   out_layers.3 = conv2, skip_connection = conv_shortcut; an attention's
#   (proj_in, transformer_blocks.N.attn1/attn2/ff..., proj_out) are named alike.
_SGM_TOP = {"input_blocks_0_0": "conv_in", "out_2": "conv_out", "time_embed_0": "time_embedding_linear_1",
            "time_embed_2": "time_embedding_linear_2", "label_emb_0_0": "add_embedding_linear_1",
            "label_emb_0_2": "add_embedding_linear_2"}
_SGM_RESNET = {"in_layers_2": "conv1", "emb_layers_1": "time_emb_proj", "out_layers_3": "conv2",
               "skip_connection": "conv_shortcut"}
_SGM_MID = {0: ("resnets", 0), 1: ("attentions", 0), 2: ("resnets", 1)}


def sgm_to_diffusers(name, layers_per_block=2, up_attention=None):
    """kohya's name of an SGM UNet layer (without "lora_unet_") -> diffusers'
    module path in the same spelling ("_" for "."), or None where `name` is
    not one. up_attention: the up levels that have attentions, where known
    (the upsampler's place in its block depends on it)."""
    if name in _SGM_TOP:
        return _SGM_TOP[name]
    if not isinstance(layers_per_block, int):
        return None
    m = re.match(r"^middle_block_(\d+)_(.+)$", name)
    if m:
        if int(m.group(1)) not in _SGM_MID:
            return None
        part, k = _SGM_MID[int(m.group(1))]
        rest = _SGM_RESNET.get(m.group(2)) if part == "resnets" else m.group(2)
        return f"mid_block_{part}_{k}_{rest}" if rest else None
    m = re.match(r"^(input|output)_blocks_(\d+)_(\d+)_(.+)$", name)
    if not m:
        return None
    i, j, rest = int(m.group(2)), int(m.group(3)), m.group(4)
    per_level = layers_per_block + 1
    if m.group(1) == "input":
        if i == 0:
            return None
        level, k = divmod(i - 1, per_level)
        if k == layers_per_block:     # the level's downsampler
            return f"down_blocks_{level}_downsamplers_0_conv" if (j, rest) == (0, "op") else None
        prefix = f"down_blocks_{level}"
    else:
        level, k = divmod(i, per_level)
        if j > 0 and rest == "conv":  # the upsampler (an attention has no "conv" of its own)
            place = None if up_attention is None else 2 if level in up_attention else 1
            return f"up_blocks_{level}_upsamplers_0_conv" if k == layers_per_block and j == (place or j) else None
        prefix = f"up_blocks_{level}"
    if j == 0:
        rest = _SGM_RESNET.get(rest)
        return f"{prefix}_resnets_{k}_{rest}" if rest else None
    return f"{prefix}_attentions_{k}_{rest}" if j == 1 else None


def _pattern_value(patterns, name, default):
    """PEFT's rank_pattern/alpha_pattern lookup: a key matches a module path that ends with it."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def _shape_fits(up, down, shape):
    """Does up @ down make a weight of `shape` (a linear [out, in] or a conv [out, in, kh, kw])?"""
    if down.dim() < 2 or up.dim() < 2 or up.shape[0] != shape[0] or up[0].numel() != down.shape[0]:
        return False
    if len(shape) == 4:
        kernel = tuple(down.shape[2:]) if down.dim() == 4 else (1, 1)
        return down.dim() in (2, 4) and down.shape[1] == shape[1] and kernel == tuple(shape[2:])
    return down[0].numel() == shape[1]


def _delta(up, down, shape):
    up, down = up.float(), down.float()
    if len(shape) == 4:
        d = up.flatten(1) @ down.flatten(1)
        return d.reshape(shape[0], shape[1], *(down.shape[2:] if down.dim() == 4 else (1, 1)))
    return (up.flatten(1) @ down.flatten(1)).reshape(shape)


_KOHYA_PREFIXES = (("unet", "lora_unet_"), ("text_encoder", "lora_te_"), ("text_encoder", "lora_te1_"),
                   ("text_encoder_2", "lora_te2_"))


def _kohya(sd, path, models):
    """[(model key, module path, up, down, alpha / rank, file key)] and the
    keys read; models: {"unet": m, "text_encoder": m[, "text_encoder_2": m]}."""
    lookup = {}
    for key, prefix in _KOHYA_PREFIXES:
        for name in _layers(models.get(key)):
            lookup[prefix + name.replace(".", "_")] = (key, name)
    per_level = getattr(getattr(models["unet"], "config", None), "layers_per_block", 2)
    up_attention = {int(n.split(".")[1]) for n in _layers(models["unet"])
                    if re.match(r"up_blocks\.\d+\.attentions\.", n)}
    out, used = [], set()
    for k in sd:
        if not k.endswith(".lora_down.weight"):
            continue
        base = k[: -len(".lora_down.weight")]
        target = lookup.get(base)
        if target is None and base.startswith("lora_unet_"):
            mapped = sgm_to_diffusers(base[len("lora_unet_"):], per_level, up_attention)
            target = lookup.get("lora_unet_" + mapped) if mapped else None
            if mapped and target is None:
                raise CheckpointError(f"{path}: LoRA layer '{base}' (diffusers' {mapped}) is not a layer of this "
                                      "model (a LoRA for another model family?)")
        if target is None:
            raise CheckpointError(f"{path}: LoRA layer '{base}' is not a layer of this model "
                                  "(a LoRA for another model family?)")
        up_key, alpha_key = base + ".lora_up.weight", base + ".alpha"
        if up_key not in sd:
            raise CheckpointError(f"{path}: '{k}' has no '{up_key}'")
        down = sd[k]
        alpha = float(sd[alpha_key].item()) if alpha_key in sd else float(down.shape[0])
        out.append((*target, sd[up_key], down, alpha / down.shape[0], base))
        used.update((k, up_key, alpha_key))
    return out, used


def _diffusers(sd, path, models, meta):
    out, used = [], set()
    layers = {key: _layers(m) for key, m in models.items()}
    for k in sd:
        m = re.match(r"^(unet|text_encoder|text_encoder_2)\.(.+)\.lora_A(?:\.default)?\.weight$", k)
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
        out.append((key, name, sd[up_key], down, factor, f"{key}.{name}"))
        used.update((k, up_key, alpha_key))
    return out, used


def _read(sd, path, models):
    """The file's layers [(model key, module path, up, down, factor, file
    name)], each checked against its layer; refuses what is not read."""
    kohya = any(k.startswith(tuple(p for _, p in _KOHYA_PREFIXES)) for k in sd)
    if models.get("text_encoder_2") is None:
        second = "lora_te2_" if kohya else "text_encoder_2."
        if any(k.startswith(second) for k in sd):
            raise CheckpointError(f"{path} is an SDXL LoRA (it has {second} layers), and this model is not SDXL")
    layers, used = _kohya(sd, path, models) if kohya else _diffusers(sd, path, models, _metadata(path))
    rest = sorted(set(sd) - used)
    if rest:
        raise CheckpointError(f"{path}: {len(rest)} tensors are not LoRA layers read here (first: '{rest[0]}'; "
                              "DoRA and LoRA biases are not fused)")
    if not layers:
        raise CheckpointError(f"{path}: no LoRA layers found")
    modules = {key: _layers(m) for key, m in models.items()}
    seen = {}
    for key, name, up, down, _, label in layers:
        if (key, name) in seen:
            raise CheckpointError(f"{path}: LoRA layers '{seen[(key, name)]}' and '{label}' are the same layer "
                                  f"({key}.{name})")
        seen[(key, name)] = label
        shape = tuple(modules[key][name].weight.shape)
        if not _shape_fits(up, down, shape):
            raise CheckpointError(f"{path}: LoRA layer '{label}' (up {tuple(up.shape)}, down {tuple(down.shape)}) "
                                  f"does not fit {key}.{name}, a weight of {shape}")
    return layers, modules


def fuse(path, scale, unet, text_encoder, text_encoder_2=None):
    """Adds the LoRA at `path`, times `scale`, into the models' weights (in
    place; text_encoder_2: SDXL's second encoder). Returns the number of
    layers it changed. Nothing is changed where the file is refused."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such LoRA file")
    sd = load_state_dict(path)
    models = {"unet": unet, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2}
    layers, modules = _read(sd, path, models)
    with torch.no_grad():
        for key, name, up, down, factor, _ in layers:
            w = modules[key][name].weight
            w += (scale * factor * _delta(up, down, w.shape)).to(device=w.device, dtype=w.dtype)
    return len(layers)
